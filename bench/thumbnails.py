"""Thumbnails benchmark: both derivatives (200x200 centre crop + 800 fit-inside, JPEG q80
progressive, no EXIF) of a 12 MP JPEG with our Pillow pipeline vs pyvips producing the
same two outputs in the same run; and peak RSS for a 50 MP JPEG (each in a fresh child
process, so the figure is that work's own peak).

    .venv/bin/python bench/thumbnails.py [--rounds 15] [--write]

``--write`` replaces the ``## Thumbnails`` section of bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.results import write_section  # noqa: E402

HEADING = "## Thumbnails"


def make_photo(path: Path, width: int, height: int) -> None:
    """A photo-like JPEG: smooth gradients plus sensor-like noise (q90, 4:2:0), with EXIF."""
    from PIL import Image

    noise = Image.effect_noise((width, height), 40)
    channels = [
        Image.blend(Image.linear_gradient("L").resize((width, height)), noise, 0.25),
        Image.blend(Image.radial_gradient("L").resize((width, height)), noise, 0.2),
        Image.blend(Image.linear_gradient("L").rotate(90).resize((width, height)), noise, 0.3),
    ]
    image = Image.merge("RGB", channels)
    exif = Image.Exif()
    exif[0x0112] = 1
    image.save(path, format="JPEG", quality=90, exif=exif.tobytes())


def ours(path: str) -> tuple[int, int]:
    from processors.image.logic import make_thumbnails

    result = make_thumbnails(path, max_pixels=200_000_000)
    small, large = result.thumbnails
    return len(small.data), len(large.data)


def vips(path: str) -> tuple[int, int]:
    import pyvips

    small = pyvips.Image.thumbnail(path, 200, height=200, crop="centre")
    large = pyvips.Image.thumbnail(path, 800, height=800)
    opts = {"Q": 80, "interlace": True, "strip": True}
    return len(small.jpegsave_buffer(**opts)), len(large.jpegsave_buffer(**opts))


def child_rss(kind: str, path: str) -> int:
    """Peak RSS (bytes) of a fresh interpreter that imports the library then runs ``kind``
    once; ``kind=floor`` only imports both libraries."""
    code = (
        f"import sys; sys.path.insert(0, {str(ROOT)!r})\n"
        "import bench.thumbnails as b, pyvips, PIL.Image, processors.image.logic\n"
        f"kind = {kind!r}\n"
        f"if kind != 'floor': getattr(b, kind)({path!r})\n"
        "print(next(l.split()[1] for l in open('/proc/self/status') if l.startswith('VmHWM:')))\n"
    )
    env = {**os.environ, "VIPS_CONCURRENCY": os.environ.get("VIPS_CONCURRENCY", "1")}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env)
    # VmHWM, not ru_maxrss: Linux carries ru_maxrss over exec from the (big) parent
    return int(out.stdout.strip()) * 1024  # kB


def timed(fn: object, path: str, rounds: int) -> list[float]:
    samples = []
    for _ in range(rounds):
        start = time.perf_counter()
        fn(path)  # type: ignore[operator]
        samples.append(time.perf_counter() - start)
    return samples


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--write", action="store_true", help="update bench/RESULTS.md")
    args = parser.parse_args()
    os.environ.setdefault("VIPS_CONCURRENCY", "1")  # one core each, like Pillow (and a Lambda)

    with tempfile.TemporaryDirectory() as tmp:
        p12, p50 = Path(tmp) / "12mp.jpg", Path(tmp) / "50mp.jpg"
        make_photo(p12, 4000, 3000)
        make_photo(p50, 8660, 5774)
        ours(str(p12)), vips(str(p12))  # warm both (imports, caches)
        import pyvips

        ours_t, vips_t, vips_mt = [], [], []
        for _ in range(args.rounds):  # interleaved so drift hits all equally
            ours_t += timed(ours, str(p12), 1)
            pyvips.concurrency_set(1)
            vips_t += timed(vips, str(p12), 1)
            pyvips.concurrency_set(os.cpu_count() or 1)
            vips_mt += timed(vips, str(p12), 1)
        pyvips.concurrency_set(1)
        rss_floor = child_rss("floor", str(p50))
        rss_ours = child_rss("ours", str(p50))
        rss_vips = child_rss("vips", str(p50))
        sizes_ours, sizes_vips = ours(str(p12)), vips(str(p12))

    med_ours, med_vips = statistics.median(ours_t), statistics.median(vips_t)
    ratio = med_ours / med_vips
    mib = 1024 * 1024
    lines = [
        HEADING,
        "",
        f"Command: `.venv/bin/python bench/thumbnails.py --rounds {args.rounds} --write` "
        f"({platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}, "
        f"VIPS_CONCURRENCY={os.environ['VIPS_CONCURRENCY']}).",
        "",
        "Both derivatives (200x200 centre crop + 800 px fit-inside, JPEG q80 progressive, "
        "metadata stripped) from a 4000x3000 (12 MP) q90 JPEG file, median of "
        f"{args.rounds} interleaved rounds:",
        "",
        "| pipeline | median | min | output bytes (200 / 800) |",
        "|---|---|---|---|",
        f"| BuildPeer (Pillow draft mode, one decode) | {med_ours * 1000:.1f} ms | "
        f"{min(ours_t) * 1000:.1f} ms | {sizes_ours[0]} / {sizes_ours[1]} |",
        f"| pyvips `thumbnail` x2 (shrink-on-load; libvips from pyvips-binary) | {med_vips * 1000:.1f} ms | "
        f"{min(vips_t) * 1000:.1f} ms | {sizes_vips[0]} / {sizes_vips[1]} |",
        f"| pyvips, {os.cpu_count()} threads (for reference) | {statistics.median(vips_mt) * 1000:.1f} ms | "
        f"{min(vips_mt) * 1000:.1f} ms | same |",
        "",
        f"**Ratio BuildPeer / pyvips (one thread each, as in a Lambda): {ratio:.2f}x** (target ≤ 1.20x); "
        f"against pyvips on {os.cpu_count()} threads: {med_ours / statistics.median(vips_mt):.2f}x.",
        "",
        "Peak RSS of a fresh process making both thumbnails of an 8660x5774 (50 MP) JPEG "
        "(target < 300 MB; the seed's Lambda has 1,024 MB):",
        "",
        "| process | peak RSS |",
        "|---|---|",
        f"| floor: interpreter + Pillow + pyvips imported, no work | {rss_floor / mib:.0f} MiB |",
        f"| BuildPeer | {rss_ours / mib:.0f} MiB (+{(rss_ours - rss_floor) / mib:.0f} MiB over the floor) |",
        f"| pyvips | {rss_vips / mib:.0f} MiB (+{(rss_vips - rss_floor) / mib:.0f} MiB over the floor) |",
        "",
    ]
    section = "\n".join(lines)
    print(section)
    if args.write:
        write_section(HEADING, section)


if __name__ == "__main__":
    main()
