"""Digest templates: autoescaping, empty and crowded digests, very long names, locales."""

from __future__ import annotations

import uuid
from datetime import date

import pytest

from subscribers.digest.message import build_email
from subscribers.digest.query import DigestData, Failure, ProjectDay, Recipient, Thumbnail
from subscribers.digest.render import render

DAY = date(2026, 3, 9)
XSS = "<script>alert(1)</script>.jpg"


def _recipient(locale: str = "es", tenant: str = "Constructora Norte") -> Recipient:
    return Recipient(
        uuid.uuid4(), uuid.uuid4(), "ana@example.com", "investor", "America/Mexico_City", locale, tenant
    )


def _render(data: DigestData) -> tuple[str, str, str]:
    urls = {
        th.upload_id: f"https://s3.example/{th.upload_id}?X-Amz-Signature=a&b=1" for th in data.thumbnails
    }
    out = render(
        data,
        thumbnail_urls=urls,
        unsubscribe_url="https://bp.example/api/v1/unsubscribe?token=t.k",
        public_url="https://bp.example",
    )
    return out.subject, out.html, out.text


def test_script_file_name_is_escaped_everywhere_in_html() -> None:
    project = ProjectDay(uuid.uuid4(), '<b>Obra</b> & "Hijos"', image=2, ready=1, quarantined=1)
    ready, bad = uuid.uuid4(), uuid.uuid4()
    data = DigestData(
        _recipient(tenant="<img src=x onerror=alert(2)>"),
        DAY,
        [project],
        thumbnails=[Thumbnail(ready, XSS, project.name, "k")],
        failures=[Failure(bad, XSS, project.name, "quarantined", "infected")],
    )
    _subject, html, text = _render(data)
    assert "<script>" not in html and "alert(1)</script>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;.jpg" in html
    assert "<b>Obra</b>" not in html and "&lt;b&gt;Obra&lt;/b&gt; &amp; &#34;Hijos&#34;" in html
    assert "<img src=x" not in html and "&lt;img src=x onerror=alert(2)&gt;" in html
    assert f'src="https://s3.example/{ready}?X-Amz-Signature=a&amp;b=1"' in html  # URLs escaped too
    assert XSS in text  # plain text is not HTML: shown as is


def test_empty_project_and_empty_day() -> None:
    idle = ProjectDay(uuid.uuid4(), "Obra Vacía")
    subject, html, text = _render(DigestData(_recipient(), DAY, [idle]))
    assert subject == "Resumen del 9 mar: sin actividad"
    assert "No hubo actividad en tus proyectos ese día." in html and "Sin actividad" in html
    assert "- Obra Vacía: Sin actividad" in text
    subject, html, text = _render(DigestData(_recipient("en"), DAY, []))  # a user with no projects
    assert "There was no activity" in text


def test_many_projects_are_listed_active_first_then_capped() -> None:
    projects = [ProjectDay(uuid.uuid4(), f"Obra {i:03d}") for i in range(70)]
    projects[42].image, projects[42].ready = 5, 5
    projects[7].document, projects[7].failed = 2, 2
    data = DigestData(_recipient("pt-BR"), DAY, projects)
    subject, html, text = _render(data)
    assert subject == "Resumo de 9 de mar.: 7 arquivos em 2 projetos"
    lines = [line for line in text.splitlines() if line.startswith("- Obra")]
    assert len(lines) == 50
    assert lines[0].startswith("- Obra 042: 5") and lines[1].startswith("- Obra 007: 2")
    assert "e mais 20 projetos" in text and "e mais 20 projetos" in html


def test_very_long_names_are_shortened_keeping_the_extension() -> None:
    long_project = "Edificio " + "muy " * 60 + "alto"
    long_file = "plano-" + "x" * 400 + ".pdf"
    project = ProjectDay(uuid.uuid4(), long_project, document=1, failed=1)
    data = DigestData(
        _recipient("en"),
        DAY,
        [project],
        failures=[Failure(uuid.uuid4(), long_file, long_project, "failed", "corrupt")],
    )
    _subject, html, text = _render(data)
    assert long_file not in text and long_file not in html
    assert "…" in text and ".pdf" in text
    assert all(len(line) < 400 for line in text.splitlines())
    assert "word-break:break-word" in html  # the table cells wrap whatever remains


@pytest.mark.parametrize(
    ("locale", "heading", "unsubscribe"),
    [
        ("es", "Resumen diario", "Dejar de recibir el resumen"),
        ("pt-BR", "Resumo diário", "Deixar de receber o resumo"),
        ("en", "Daily digest", "Stop receiving these digests"),
    ],
)
def test_locales_and_mime_structure(locale: str, heading: str, unsubscribe: str) -> None:
    project = ProjectDay(uuid.uuid4(), "Obra", image=1, ready=1)
    data = DigestData(_recipient(locale), DAY, [project])
    urls: dict[uuid.UUID, str] = {}
    rendered = render(
        data,
        thumbnail_urls=urls,
        unsubscribe_url="https://bp.example/u?token=a.b",
        public_url="https://bp.example",
    )
    assert heading in rendered.html and heading in rendered.text
    assert unsubscribe in rendered.html and unsubscribe in rendered.text
    message = build_email(
        rendered,
        from_address="BuildPeer <no-reply@buildpeer.example>",
        to_address="ana@example.com",
        unsubscribe_url="https://bp.example/u?token=a.b",
    )
    assert [p.get_content_type() for p in message.iter_parts()] == ["text/plain", "text/html"]
    assert message["List-Unsubscribe"] == "<https://bp.example/u?token=a.b>"
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert message["Content-Language"] == locale
