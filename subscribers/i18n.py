"""Locales of notifications (es default, pt-BR, en) and the words every channel shares."""

from __future__ import annotations

from core.settings import LOCALES
from core.status import ReasonCode

DEFAULT_LOCALE = "es"

_ALIASES = {"es": "es", "pt": "pt-BR", "pt-br": "pt-BR", "en": "en"}


def normalize_locale(value: str | None) -> str | None:
    """``pt_BR``, ``pt-br``, ``en-US``, ``es-MX`` → a supported locale, or None when unknown."""
    if not value:
        return None
    raw = value.strip().replace("_", "-")
    if raw in LOCALES:
        return raw
    lowered = raw.lower()
    if lowered in _ALIASES:
        return _ALIASES[lowered]
    return _ALIASES.get(lowered.split("-", 1)[0])


def pick_locale(*candidates: str | None) -> str:
    """The first supported locale among ``candidates`` (device > user > tenant), else Spanish."""
    for candidate in candidates:
        found = normalize_locale(candidate)
        if found:
            return found
    return DEFAULT_LOCALE


_REASONS: dict[str, dict[str, str]] = {
    "es": {
        ReasonCode.ABORTED: "la subida se canceló",
        ReasonCode.EXPIRED: "la subida quedó incompleta y expiró",
        ReasonCode.INFECTED: "se detectó malware",
        ReasonCode.TYPE_MISMATCH: "el contenido no coincide con el tipo declarado",
        ReasonCode.TYPE_NOT_ALLOWED: "tipo de archivo no permitido",
        ReasonCode.TOO_LARGE: "el archivo es demasiado grande",
        ReasonCode.CORRUPT: "el archivo está dañado",
        ReasonCode.DECOMPRESSION_BOMB: "la imagen es demasiado grande para procesarla",
        ReasonCode.ENCRYPTED: "el documento está cifrado",
        ReasonCode.PROCESSING_FAILED: "falló el procesamiento",
        ReasonCode.PROCESSING_TIMEOUT: "el procesamiento tardó demasiado",
        "": "error desconocido",
    },
    "pt-BR": {
        ReasonCode.ABORTED: "o envio foi cancelado",
        ReasonCode.EXPIRED: "o envio ficou incompleto e expirou",
        ReasonCode.INFECTED: "foi detectado malware",
        ReasonCode.TYPE_MISMATCH: "o conteúdo não corresponde ao tipo declarado",
        ReasonCode.TYPE_NOT_ALLOWED: "tipo de arquivo não permitido",
        ReasonCode.TOO_LARGE: "o arquivo é grande demais",
        ReasonCode.CORRUPT: "o arquivo está corrompido",
        ReasonCode.DECOMPRESSION_BOMB: "a imagem é grande demais para processar",
        ReasonCode.ENCRYPTED: "o documento está criptografado",
        ReasonCode.PROCESSING_FAILED: "o processamento falhou",
        ReasonCode.PROCESSING_TIMEOUT: "o processamento demorou demais",
        "": "erro desconhecido",
    },
    "en": {
        ReasonCode.ABORTED: "the upload was cancelled",
        ReasonCode.EXPIRED: "the upload was left incomplete and expired",
        ReasonCode.INFECTED: "malware was detected",
        ReasonCode.TYPE_MISMATCH: "the content does not match the declared type",
        ReasonCode.TYPE_NOT_ALLOWED: "file type not allowed",
        ReasonCode.TOO_LARGE: "the file is too large",
        ReasonCode.CORRUPT: "the file is corrupt",
        ReasonCode.DECOMPRESSION_BOMB: "the image is too large to process",
        ReasonCode.ENCRYPTED: "the document is encrypted",
        ReasonCode.PROCESSING_FAILED: "processing failed",
        ReasonCode.PROCESSING_TIMEOUT: "processing took too long",
        "": "unknown error",
    },
}


def reason_text(reason_code: str | None, locale: str) -> str:
    table = _REASONS[pick_locale(locale)]
    return table.get(reason_code or "", table[""])
