"""Test files made on the fly: photos with EXIF, scanned and text PDFs, EICAR."""

from __future__ import annotations

import io
from fractions import Fraction

from PIL import Image, ImageDraw, ImageFont

# The EICAR anti-virus test file (harmless by definition; every scanner flags it).
EICAR = b"X5O!P%@AP[4\\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*"

# Upright: 1200 wide x 1800 tall, red band at the top, blue below. Stored sideways
# (orientation 6: "rotate 90° clockwise to display"), as a phone held upright writes it.
UPRIGHT_SIZE = (1200, 1800)
GPS_LAT_DMS = ((12, 1), (2, 1), (469464, 10000))  # 12° 2' 46.9464" S  (Lima)
GPS_LON_DMS = ((77, 1), (2, 1), (34698, 1000))  # 77° 2' 34.698" W
GPS_LAT = -(12 + 2 / 60 + float(Fraction(469464, 10000)) / 3600)
GPS_LON = -(77 + 2 / 60 + float(Fraction(34698, 1000)) / 3600)
CAPTURED = "2024:05:01 10:30:00"


def upright_photo() -> Image.Image:
    im = Image.new("RGB", UPRIGHT_SIZE, (20, 40, 200))
    ImageDraw.Draw(im).rectangle((0, 0, UPRIGHT_SIZE[0], UPRIGHT_SIZE[1] // 6), fill=(220, 20, 20))
    return im


def rotated_jpeg_with_gps() -> bytes:
    stored = upright_photo().transpose(Image.Transpose.ROTATE_90)  # exif_transpose(6) undoes this
    exif = Image.Exif()
    exif[0x0112] = 6
    exif[0x010F] = "BuildPeer Test Camera"
    exif[0x8825] = {
        1: "S",
        2: tuple(Fraction(*v) for v in GPS_LAT_DMS),
        3: "W",
        4: tuple(Fraction(*v) for v in GPS_LON_DMS),
    }
    exif[0x8769] = {0x9003: CAPTURED, 0x9011: "-05:00"}
    out = io.BytesIO()
    stored.save(out, format="JPEG", quality=90, exif=exif.tobytes())
    return out.getvalue()


def png_bytes() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (64, 64), (0, 128, 0)).save(out, format="PNG")
    return out.getvalue()


def corrupt_jpeg() -> bytes:
    """A real JPEG header with its entropy-coded data cut off (a dropped connection)."""
    out = io.BytesIO()
    upright_photo().save(out, format="JPEG", quality=90)
    data = out.getvalue()
    return data[: len(data) // 3]


SCANNED_WORDS = ("hormigón", "estructura", "inspección", "columnas")
SCANNED_LINES = (
    "Informe de inspección de obra",
    "El hormigón de las columnas",
    "cumple con la estructura prevista",
)


def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    for path in ("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf", "DejaVuSans.ttf"):
        try:
            return ImageFont.truetype(path, size)
        except OSError:
            continue
    return ImageFont.load_default(size=size)


def scanned_spanish_pdf() -> bytes:
    """An image-only PDF (a scan): Spanish text rendered to pixels, no text layer."""
    page = Image.new("L", (1700, 2200), 255)
    draw = ImageDraw.Draw(page)
    font = _font(64)
    for i, line in enumerate(SCANNED_LINES):
        draw.text((120, 200 + i * 140), line, fill=0, font=font)
    out = io.BytesIO()
    page.save(out, format="PDF", resolution=200.0)
    return out.getvalue()


TEXT_LAYER_SENTENCE = "Acta de entrega del proyecto Torre Norte"


def text_layer_pdf(sentence: str = TEXT_LAYER_SENTENCE, *, password_protected: bool = False) -> bytes:
    """A minimal hand-written PDF 1.4 with one line of Helvetica text. ``password_protected``
    adds a Standard security handler whose user-password check fails for the empty
    password, as a PDF locked with a password does."""
    stream = f"BT /F1 24 Tf 72 700 Td ({sentence}) Tj ET".encode("latin-1")
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R "
        b"/Resources << /Font << /F1 5 0 R >> >> >>",
        b"<< /Length " + str(len(stream)).encode() + b" >>\nstream\n" + stream + b"\nendstream",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    trailer_extra = b""
    if password_protected:
        objects.append(
            b"<< /Filter /Standard /V 1 /R 2 /O <" + b"11" * 32 + b"> /U <" + b"22" * 32 + b"> /P -4 >>"
        )
        trailer_extra = b" /Encrypt 6 0 R /ID [<" + b"33" * 16 + b"> <" + b"33" * 16 + b">]"
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += f"{number} 0 obj\n".encode() + body + b"\nendobj\n"
    xref = len(out)
    out += f"xref\n0 {len(objects) + 1}\n0000000000 65535 f \n".encode()
    for offset in offsets:
        out += f"{offset:010d} 00000 n \n".encode()
    out += f"trailer\n<< /Size {len(objects) + 1} /Root 1 0 R".encode() + trailer_extra
    out += f" >>\nstartxref\n{xref}\n%%EOF\n".encode()
    return bytes(out)


DOCX_TYPE = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"


def nested_docx(depth: int = 24) -> bytes:
    """A Word document (a ZIP with [Content_Types].xml and word/document.xml) carrying an
    attachment that is a ZIP in a ZIP ... ``depth`` levels deep: past clamd's MaxRecursion."""
    import zipfile

    inner = b"lo que hay al fondo"
    for level in range(depth):
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as z:
            z.writestr(f"nivel-{level}.zip" if level else "fondo.txt", inner)
        inner = buffer.getvalue()
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("[Content_Types].xml", '<?xml version="1.0"?><Types/>')
        z.writestr("word/document.xml", '<?xml version="1.0"?><w:document/>')
        z.writestr("word/embeddings/adjunto.zip", inner)
    return buffer.getvalue()


def noisy_scanned_pdf(pages: int = 3, side: int = 2400) -> bytes:
    """A PDF without a text layer whose pages are dense random noise: Tesseract works long on
    every page (the OCR limit test)."""
    import random

    rng = random.Random(12)
    images = []
    for _ in range(pages):
        im = Image.frombytes("L", (side, side), rng.randbytes(side * side)).point(
            lambda v: 255 if v > 128 else 0
        )
        images.append(im.convert("RGB"))
    out = io.BytesIO()
    images[0].save(out, format="PDF", save_all=True, append_images=images[1:], resolution=300.0)
    return out.getvalue()


_PDF_PAD = bytes.fromhex("28BF4E5E4E758A4164004E56FFFA01082E2E00B6D0683E802F0CA9FE6453697A")


def _rc4(key: bytes, data: bytes) -> bytes:
    s = list(range(256))
    j = 0
    for i in range(256):
        j = (j + s[i] + key[i % len(key)]) % 256
        s[i], s[j] = s[j], s[i]
    i = j = 0
    out = bytearray()
    for byte in data:
        i = (i + 1) % 256
        j = (j + s[i]) % 256
        s[i], s[j] = s[j], s[i]
        out.append(byte ^ s[(s[i] + s[j]) % 256])
    return bytes(out)


RESTRICTED_SENTENCE = "Acta con restricciones de impresion"


def restricted_pdf() -> bytes:
    """A PDF encrypted with an owner password only (printing and editing restricted, the
    user password empty): any reader opens it, as many contractors' PDFs are. Standard
    security handler R2, RC4 40-bit (PDF 1.4, algorithms 3.1-3.4)."""
    import hashlib
    import struct

    def pad(password: bytes) -> bytes:
        return (password + _PDF_PAD)[:32]

    permissions, file_id = -44, b"\x33" * 16
    owner = _rc4(hashlib.md5(pad(b"owner-secret")).digest()[:5], pad(b""))
    key = hashlib.md5(pad(b"") + owner + struct.pack("<i", permissions) + file_id).digest()[:5]
    user = _rc4(key, _PDF_PAD)
    stream = f"BT /F1 24 Tf 72 700 Td ({RESTRICTED_SENTENCE}) Tj ET".encode("latin-1")
    encrypted = _rc4(hashlib.md5(key + struct.pack("<i", 4)[:3] + b"\0\0").digest()[:10], stream)
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R "
        b"/Resources << /Font << /F1 5 0 R >> >> >>",
        b"<< /Length " + str(len(encrypted)).encode() + b" >>\nstream\n" + encrypted + b"\nendstream",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
        b"<< /Filter /Standard /V 1 /R 2 /O <"
        + owner.hex().encode()
        + b"> /U <"
        + user.hex().encode()
        + b"> /P "
        + str(permissions).encode()
        + b" >>",
    ]
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += f"{number} 0 obj\n".encode() + body + b"\nendobj\n"
    xref = len(out)
    out += f"xref\n0 {len(objects) + 1}\n0000000000 65535 f \n".encode()
    for offset in offsets:
        out += f"{offset:010d} 00000 n \n".encode()
    out += (
        f"trailer\n<< /Size {len(objects) + 1} /Root 1 0 R /Encrypt 6 0 R "
        f"/ID [<{file_id.hex()}> <{file_id.hex()}>] >>\nstartxref\n{xref}\n%%EOF\n"
    ).encode()
    return bytes(out)
