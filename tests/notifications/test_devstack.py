"""The dev emulators record what they receive on disk, as `buildpeer dev` users expect."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

from devstack.fcm_emulator import FcmEmulator, check_message
from devstack.smtp_sink import SmtpSink
from subscribers.digest.senders import SmtpSender
from subscribers.push.fcm import FcmClient
from subscribers.push.messages import PushMessage


async def test_fcm_emulator_records_messages_as_json(tmp_path: Path) -> None:
    emulator = FcmEmulator(tmp_path / "push", project_id="dev-project").start()
    client = FcmClient(str(emulator.credentials_path), endpoint=emulator.url)
    try:
        await client.start()
        result = await client.send(
            PushMessage(token="dev-token", title="Hola", body="Mundo", data={"k": "v"})
        )
        assert result.outcome == "sent" and result.name and result.name.startswith("projects/dev-project/")
    finally:
        await client.close()
        emulator.stop()
    [recorded] = [p for p in (tmp_path / "push").glob("*.json") if p.name != "service-account.json"]
    assert json.loads(recorded.read_text())["notification"] == {"title": "Hola", "body": "Mundo"}


def test_fcm_message_shape_checks() -> None:
    assert check_message({"token": "t", "data": {"n": 1}}) == "message.data: values must be strings"
    assert check_message({"token": "t", "topic": "x"}) == "message: exactly one of token, topic, condition"
    assert check_message({"token": "t", "android": {"ttl": "10"}}) is not None
    assert check_message({"token": "t", "android": {"priority": "HIGH", "ttl": "60s"}}) is None


async def test_smtp_sink_keeps_eml_files(tmp_path: Path) -> None:
    from email.message import EmailMessage

    sink = SmtpSink(tmp_path / "mail").start()
    try:
        message = EmailMessage()
        message["From"], message["To"], message["Subject"] = "a@example.com", "b@example.com", "hola"
        message["Message-ID"] = f"<{uuid.uuid4()}@example.com>"
        message.set_content("cuerpo")
        await SmtpSender(sink.url).send(message)
    finally:
        sink.stop()
    [eml] = list((tmp_path / "mail").glob("*.eml"))
    assert b"Subject: hola" in eml.read_bytes()
    assert sink.mails_to("b@example.com")[0].parsed()["Subject"] == "hola"
