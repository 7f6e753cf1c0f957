"""Image thumbnails and photo facts, from one decode.

JPEGs are decoded with Pillow's draft mode (libjpeg DCT scaling) at the smallest scale
that still covers 800x800, so a 50 MP photo never exists in memory at full size. EXIF
orientation is applied; the derivatives carry no EXIF. GPS and capture time come from
the source's EXIF.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import IO, Any

import pillow_heif
from PIL import Image, ImageOps, UnidentifiedImageError

from core.status import ReasonCode
from processors.common.outcome import Rejected

pillow_heif.register_heif_opener()

SMALL, LARGE = 200, 800
QUALITY = 80
_ORIENTATION = 0x0112
_EXIF_IFD, _GPS_IFD = 0x8769, 0x8825
_DATETIME, _DATETIME_ORIGINAL, _OFFSET_ORIGINAL = 0x0132, 0x9003, 0x9011
_FORMATS = {"JPEG", "PNG", "WEBP", "HEIF", "MPO"}
# Memory at the peak of one image, per source pixel: an RGBA PNG decoded whole, its RGB
# flattening and the copy the 800 px thumbnail is made from (JPEGs decode in draft mode, far
# less). Measured by tests/pipeline/test_image_memory.py; BUILDPEER_IMAGE_MAX_PIXELS must fit
# the image function's memory with it (see :func:`pixel_budget`).
PEAK_BYTES_PER_PIXEL = 14
RUNTIME_BASELINE_MB = 200  # the interpreter, Pillow, boto3, the database pool


def pixel_budget(memory_mb: int) -> int:
    """The largest image (width x height) one invocation with ``memory_mb`` can decode."""
    return (memory_mb - RUNTIME_BASELINE_MB) * 1024 * 1024 // PEAK_BYTES_PER_PIXEL


@dataclass(frozen=True, slots=True)
class Thumbnail:
    name: str  # thumb-200.jpg | thumb-800.jpg
    data: bytes
    width: int
    height: int


@dataclass(frozen=True, slots=True)
class ImageResult:
    thumbnails: tuple[Thumbnail, ...]
    width: int  # upright size of the source
    height: int
    format: str
    gps: tuple[float, float] | None
    captured_at: str | None


def make_thumbnails(source: str | Path | IO[bytes], *, max_pixels: int) -> ImageResult:
    """Both thumbnails and the photo's facts. Raises :class:`Rejected` for files that are
    not a supported image, are corrupt, or exceed ``max_pixels``."""
    try:
        with Image.open(source) as im:
            if im.format not in _FORMATS:
                raise Rejected(ReasonCode.CORRUPT, f"{im.format} is not a supported image format")
            width, height = im.size
            if width * height > max_pixels:
                raise Rejected(
                    ReasonCode.DECOMPRESSION_BOMB,
                    f"{width}x{height} pixels exceeds the limit of {max_pixels}",
                )
            exif = im.getexif()
            gps = _gps(exif)
            captured_at = _captured_at(exif)
            orientation = exif.get(_ORIENTATION, 1)
            if im.format in ("JPEG", "MPO"):
                im.draft("RGB", (LARGE, LARGE))
            im.load()
            upright = _upright(im, orientation)
            fmt = str(im.format)
    except Image.DecompressionBombError as exc:
        raise Rejected(ReasonCode.DECOMPRESSION_BOMB, str(exc)) from exc
    except UnidentifiedImageError as exc:
        raise Rejected(ReasonCode.CORRUPT, "not a readable image") from exc
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise Rejected(ReasonCode.CORRUPT, f"corrupt image: {exc}") from exc

    rgb = _to_rgb(upright)
    large = rgb.copy()
    large.thumbnail((LARGE, LARGE), Image.Resampling.LANCZOS)
    # the small crop comes from the 800 px one when that still has plenty of pixels
    small_source = large if min(large.size) >= 2 * SMALL else rgb
    small = ImageOps.fit(small_source, (SMALL, SMALL), Image.Resampling.LANCZOS, centering=(0.5, 0.5))
    if orientation in (5, 6, 7, 8):
        width, height = height, width
    return ImageResult(
        thumbnails=(
            Thumbnail("thumb-200.jpg", _jpeg(small), *small.size),
            Thumbnail("thumb-800.jpg", _jpeg(large), *large.size),
        ),
        width=width,
        height=height,
        format=fmt,
        gps=gps,
        captured_at=captured_at,
    )


def _upright(im: Image.Image, orientation: Any) -> Image.Image:
    method = {
        2: Image.Transpose.FLIP_LEFT_RIGHT,
        3: Image.Transpose.ROTATE_180,
        4: Image.Transpose.FLIP_TOP_BOTTOM,
        5: Image.Transpose.TRANSPOSE,
        6: Image.Transpose.ROTATE_270,
        7: Image.Transpose.TRANSVERSE,
        8: Image.Transpose.ROTATE_90,
    }.get(orientation if isinstance(orientation, int) else 1)
    return im.transpose(method) if method is not None else im


def _to_rgb(im: Image.Image) -> Image.Image:
    if im.mode == "RGB":
        return im
    if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
        rgba = im if im.mode == "RGBA" else im.convert("RGBA")  # no second full-size copy
        background = Image.new("RGB", rgba.size, (255, 255, 255))
        background.paste(rgba, mask=rgba.getchannel("A"))
        return background
    if im.mode.startswith("I;16") or im.mode in ("I", "F"):
        return ImageOps.autocontrast(im.convert("I").point(lambda v: v / 256).convert("L")).convert("RGB")
    return im.convert("RGB")


def _jpeg(im: Image.Image) -> bytes:
    out = io.BytesIO()
    im.save(out, format="JPEG", quality=QUALITY, progressive=True, optimize=False)
    return out.getvalue()


def _rational(value: Any) -> float:
    if isinstance(value, tuple) and len(value) == 2:
        num, den = value
        return float(num) / float(den) if den else 0.0
    return float(value)


def _dms(value: Any) -> float:
    if not isinstance(value, tuple | list) or len(value) != 3:
        raise ValueError("GPS coordinate is not degrees/minutes/seconds")
    deg, minutes, seconds = (_rational(v) for v in value)
    return deg + minutes / 60 + seconds / 3600


def _gps(exif: Image.Exif) -> tuple[float, float] | None:
    """(latitude, longitude) in decimal degrees, or None when absent or nonsense."""
    try:
        gps = exif.get_ifd(_GPS_IFD)
        if not gps or 2 not in gps or 4 not in gps:
            return None
        lat, lon = _dms(gps[2]), _dms(gps[4])
        if str(gps.get(1, "N")).upper().startswith("S"):
            lat = -lat
        if str(gps.get(3, "E")).upper().startswith("W"):
            lon = -lon
    except (ValueError, TypeError, ZeroDivisionError, KeyError):
        return None
    if not (-90 <= lat <= 90 and -180 <= lon <= 180):
        return None
    return lat, lon


def _captured_at(exif: Image.Exif) -> str | None:
    """Capture time as ISO 8601, with the EXIF UTC offset when the camera wrote one."""
    sub = exif.get_ifd(_EXIF_IFD)
    raw = sub.get(_DATETIME_ORIGINAL) or exif.get(_DATETIME)
    if not isinstance(raw, str):
        return None
    try:
        moment = datetime.strptime(raw.strip("\x00 "), "%Y:%m:%d %H:%M:%S")
    except ValueError:
        return None
    offset = sub.get(_OFFSET_ORIGINAL)
    if isinstance(offset, str):
        try:
            return datetime.fromisoformat(moment.isoformat() + offset.strip("\x00 ")).isoformat()
        except ValueError:
            pass
    return moment.isoformat()
