"""The digest's words in each locale, and dates written the local way."""

from __future__ import annotations

from datetime import date

STRINGS: dict[str, dict[str, str]] = {
    "es": {
        "subject": "Resumen del {date}: {uploads} archivos en {projects} proyectos",
        "subject_empty": "Resumen del {date}: sin actividad",
        "heading": "Resumen diario",
        "intro": "Esto pasó en tus proyectos el {date}.",
        "empty": "No hubo actividad en tus proyectos ese día.",
        "uploads": "Archivos subidos",
        "images": "Imágenes",
        "documents": "Documentos",
        "others": "Otros",
        "ready": "Listos",
        "failed": "Con error",
        "quarantined": "En cuarentena",
        "in_progress": "En proceso",
        "projects": "Proyectos",
        "project": "Proyecto",
        "no_activity": "Sin actividad",
        "more_projects": "y {n} proyectos más",
        "thumbnails": "Fotos del día",
        "failures": "Archivos con problemas",
        "more_failures": "y {n} más",
        "status_failed": "error",
        "status_quarantined": "cuarentena",
        "open_app": "Abrir BuildPeer",
        "footer": "Recibes este correo porque sigues proyectos de {tenant} en BuildPeer.",
        "unsubscribe": "Dejar de recibir el resumen diario",
        "preferences": "Preferencias",
        "unsub_title": "Resumen diario de BuildPeer",
        "unsub_confirm": "¿Dejar de recibir el resumen diario en {email}?",
        "unsub_button": "Sí, darme de baja",
        "unsub_done": "Listo: {email} ya no recibirá el resumen diario. "
        "Puedes reactivarlo en tus preferencias.",
        "unsub_invalid": "Este enlace no es válido.",
    },
    "pt-BR": {
        "subject": "Resumo de {date}: {uploads} arquivos em {projects} projetos",
        "subject_empty": "Resumo de {date}: sem atividade",
        "heading": "Resumo diário",
        "intro": "Isto aconteceu nos seus projetos em {date}.",
        "empty": "Não houve atividade nos seus projetos nesse dia.",
        "uploads": "Arquivos enviados",
        "images": "Imagens",
        "documents": "Documentos",
        "others": "Outros",
        "ready": "Prontos",
        "failed": "Com erro",
        "quarantined": "Em quarentena",
        "in_progress": "Em processamento",
        "projects": "Projetos",
        "project": "Projeto",
        "no_activity": "Sem atividade",
        "more_projects": "e mais {n} projetos",
        "thumbnails": "Fotos do dia",
        "failures": "Arquivos com problemas",
        "more_failures": "e mais {n}",
        "status_failed": "erro",
        "status_quarantined": "quarentena",
        "open_app": "Abrir o BuildPeer",
        "footer": "Você recebe este e-mail porque acompanha projetos de {tenant} no BuildPeer.",
        "unsubscribe": "Deixar de receber o resumo diário",
        "preferences": "Preferências",
        "unsub_title": "Resumo diário do BuildPeer",
        "unsub_confirm": "Deixar de receber o resumo diário em {email}?",
        "unsub_button": "Sim, cancelar inscrição",
        "unsub_done": "Pronto: {email} não receberá mais o resumo diário. "
        "Você pode reativá-lo nas preferências.",
        "unsub_invalid": "Este link não é válido.",
    },
    "en": {
        "subject": "Digest for {date}: {uploads} files in {projects} projects",
        "subject_empty": "Digest for {date}: no activity",
        "heading": "Daily digest",
        "intro": "Here is what happened on your projects on {date}.",
        "empty": "There was no activity on your projects that day.",
        "uploads": "Files uploaded",
        "images": "Images",
        "documents": "Documents",
        "others": "Other",
        "ready": "Ready",
        "failed": "Failed",
        "quarantined": "Quarantined",
        "in_progress": "In progress",
        "projects": "Projects",
        "project": "Project",
        "no_activity": "No activity",
        "more_projects": "and {n} more projects",
        "thumbnails": "Photos of the day",
        "failures": "Files with problems",
        "more_failures": "and {n} more",
        "status_failed": "failed",
        "status_quarantined": "quarantined",
        "open_app": "Open BuildPeer",
        "footer": "You receive this email because you follow {tenant} projects on BuildPeer.",
        "unsubscribe": "Stop receiving the daily digest",
        "preferences": "Preferences",
        "unsub_title": "BuildPeer daily digest",
        "unsub_confirm": "Stop sending the daily digest to {email}?",
        "unsub_button": "Yes, unsubscribe",
        "unsub_done": "Done: {email} will no longer receive the daily digest. "
        "You can turn it back on in your preferences.",
        "unsub_invalid": "This link is not valid.",
    },
}

_MONTHS = {
    "es": [
        "enero",
        "febrero",
        "marzo",
        "abril",
        "mayo",
        "junio",
        "julio",
        "agosto",
        "septiembre",
        "octubre",
        "noviembre",
        "diciembre",
    ],
    "pt-BR": [
        "janeiro",
        "fevereiro",
        "março",
        "abril",
        "maio",
        "junho",
        "julho",
        "agosto",
        "setembro",
        "outubro",
        "novembro",
        "dezembro",
    ],
    "en": [
        "January",
        "February",
        "March",
        "April",
        "May",
        "June",
        "July",
        "August",
        "September",
        "October",
        "November",
        "December",
    ],
}
_WEEKDAYS = {
    "es": ["lunes", "martes", "miércoles", "jueves", "viernes", "sábado", "domingo"],
    "pt-BR": [
        "segunda-feira",
        "terça-feira",
        "quarta-feira",
        "quinta-feira",
        "sexta-feira",
        "sábado",
        "domingo",
    ],
    "en": ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"],
}


def long_date(day: date, locale: str) -> str:
    weekday, month = _WEEKDAYS[locale][day.weekday()], _MONTHS[locale][day.month - 1]
    if locale == "en":
        return f"{weekday}, {month} {day.day}, {day.year}"
    return f"{weekday} {day.day} de {month} de {day.year}"


def short_date(day: date, locale: str) -> str:
    if locale == "en":
        return f"{_MONTHS['en'][day.month - 1][:3]} {day.day}"
    return f"{day.day:02d}/{day.month:02d}"
