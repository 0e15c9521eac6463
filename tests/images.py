"""Image files of every awkward kind, written on the fly. A plain module (not conftest) so tests
import it by a name no other folder's conftest shadows."""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import numpy as np
from PIL import Image


def save(img: Image.Image, path: Path, fmt: str | None = None, **kw) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path, fmt, **kw)
    return path


def noise(w: int, h: int, seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8))


def jpeg_bytes(img: Image.Image, **kw) -> bytes:
    b = io.BytesIO()
    img.save(b, "JPEG", **kw)
    return b.getvalue()


def exif_rotated_jpeg(path: Path) -> Path:
    """40x20 stored: left half blue, right half red; EXIF orientation 6 (rotate 90 clockwise)."""
    img = Image.new("RGB", (40, 20), (255, 0, 0))
    img.paste((0, 0, 255), (0, 0, 20, 20))
    exif = img.getexif()
    exif[0x0112] = 6
    return save(img, path, "JPEG", exif=exif.tobytes(), quality=95)


def unsupported_bmp(path: Path) -> Path:
    """A BMP header Pillow identifies but refuses (compression 4 = embedded JPEG)."""
    b = io.BytesIO()
    Image.new("RGB", (16, 16)).save(b, "BMP")
    data = bytearray(b.getvalue())
    data[30:34] = struct.pack("<I", 4)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(bytes(data))
    return path


# Expected outcome of every file in `messy_folder`: relative path -> "used" or a skip reason.
MESSY_EXPECTED = {
    "cat/good.jpg": "used",
    "cat/good.png": "used",
    "cat/bmp_named.jpg": "used",
    "cat/cmyk.jpg": "used",
    "cat/rgba.png": "used",
    "cat/exif6.jpg": "used",
    "cat/nested/deeper/inner.PNG": "used",
    "cat/truncated.jpg": "truncated",
    "cat/zero.jpg": "zero_bytes",
    "cat/odd.bmp": "unsupported_format",
    "dog/i16.png": "used",
    "dog/anim.gif": "used",
    "dog/palette.png": "used",
    "dog/gray.png": "used",
    "dog/big.JPEG": "used",
    "dog/onebit.bmp": "used",
    "dog/photo.webp": "used",
    "dog/icon.png": "too_small",
    "dog/text.jpg": "not_an_image",
    "bird/broken.png": "not_an_image",
}


def write_messy_folder(root: Path) -> Path:
    """Class folders cat/, dog/ (every awkward kind of file) and bird/ (no usable image) under `root`."""
    cat, dog = root / "cat", root / "dog"
    save(noise(32, 24, 1), cat / "good.jpg", "JPEG")
    save(noise(24, 32, 2), cat / "good.png")
    save(noise(20, 20, 3), cat / "bmp_named.jpg", "BMP")
    save(Image.new("CMYK", (24, 24), (0, 255, 255, 0)), cat / "cmyk.jpg", "JPEG")
    save(Image.new("RGBA", (16, 16), (255, 0, 0, 0)), cat / "rgba.png")
    exif_rotated_jpeg(cat / "exif6.jpg")
    save(noise(16, 16, 4), cat / "nested" / "deeper" / "inner.PNG")
    full = jpeg_bytes(noise(200, 200, 5), quality=90)
    (cat / "truncated.jpg").write_bytes(full[: len(full) // 2])
    (cat / "zero.jpg").write_bytes(b"")
    unsupported_bmp(cat / "odd.bmp")
    (cat / ".DS_Store").write_bytes(b"\0\0\0\1Bud1")
    (cat / "notes.txt").write_text("labelled by hand\n")

    save(Image.fromarray(np.full((16, 16), 32768, np.uint16)), dog / "i16.png")
    frames = [Image.new("RGB", (16, 16), c) for c in [(0, 255, 0), (255, 0, 0)]]
    frames[0].save(dog / "anim.gif", save_all=True, append_images=frames[1:], duration=100, loop=0)
    save(Image.new("RGB", (16, 16), (0, 0, 255)).convert("P"), dog / "palette.png")
    save(Image.new("L", (16, 16), 100), dog / "gray.png")
    save(noise(2000, 1500, 6), dog / "big.JPEG", "JPEG", quality=70)
    save(Image.new("1", (16, 16), 1), dog / "onebit.bmp")
    save(noise(16, 16, 7), dog / "photo.webp", "WEBP")
    save(Image.new("RGB", (1, 1), (9, 9, 9)), dog / "icon.png")
    (dog / "text.jpg").write_text("not really a jpeg")
    save(noise(16, 16, 8), dog / ".thumbs" / "t.png")  # hidden folder: ignored, counted
    (root / "bird").mkdir()
    (root / "bird" / "broken.png").write_bytes(b"\x89PNG garbage")
    return root


def make_class_folder(root: Path, counts: dict[str, int], size: int = 12, seed: int = 0) -> Path:
    """root/<class>/<i>.png with distinct noise images."""
    for ci, (cls, n) in enumerate(counts.items()):
        for i in range(n):
            save(noise(size, size, seed * 100_000 + ci * 1000 + i), root / cls / f"{i:03d}.png")
    return root


def bomb_png(width: int, height: int, rows_per_block: int = 200) -> bytes:
    """A black 8-bit greyscale PNG of width x height px, written without holding its pixels.

    13000 x 13000 px compress to ~160 KB and decode to 169 MB per copy: a
    decompression bomb. Built from one compressed block of rows repeated: a
    full flush resets the compressor, so each copy compresses to the same bytes.
    """
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    block = (b"\x00" * (width + 1)) * rows_per_block  # each row: filter type 0, then its pixels
    comp = zlib.compressobj(9, zlib.DEFLATED, -15)
    packed = comp.compress(block) + comp.flush(zlib.Z_FULL_FLUSH)
    n, rest = divmod(height, rows_per_block)
    tail = block[: rest * (width + 1)]
    adler = 1
    for _ in range(n):
        adler = zlib.adler32(block, adler)
    adler = zlib.adler32(tail, adler)
    stream = b"\x78\xda" + packed * n + comp.compress(tail) + comp.flush() + struct.pack(">I", adler)
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", stream) + chunk(b"IEND", b"")


PHOTO_CLASSES = ("circle", "square", "stripes")


def photo(cls: str, w: int, h: int, rng: np.random.Generator) -> Image.Image:
    """A real-size photo-like RGB image of a shape class: a lit, textured background (a fine woven
    pattern of period 2-3 px, which aliases when shrunk without antialiasing) and sensor noise."""
    from PIL import ImageDraw

    bg, fg = rng.integers(0, 256, (2, 3))
    while abs(int(bg.mean()) - int(fg.mean())) < 70:
        bg, fg = rng.integers(0, 256, (2, 3))
    img = Image.new("RGB", (w, h), tuple(int(v) for v in bg))
    d = ImageDraw.Draw(img)
    r = rng.uniform(0.22, 0.34) * min(w, h)
    cx, cy = rng.uniform(r, w - r), rng.uniform(r, h - r)
    fill = tuple(int(v) for v in fg)
    if cls == "circle":
        d.ellipse([cx - r, cy - r, cx + r, cy + r], fill=fill)
    elif cls == "square":
        d.rectangle([cx - r * 0.8, cy - r * 0.8, cx + r * 0.8, cy + r * 0.8], fill=fill)
    else:
        for k in range(4):
            x0 = cx - r + k * r / 2
            d.rectangle([x0, cy - r, x0 + r / 4, cy + r], fill=fill)
    a = np.asarray(img, np.float32)
    yy, xx = np.mgrid[0:h, 0:w]
    period = int(rng.integers(2, 4))
    a += np.where((xx // period + yy // period) % 2 == 0, 28.0, -28.0)[..., None]  # the weave
    a += (rng.uniform(-40, 40) * (xx / w - 0.5))[..., None]  # lighting
    a += rng.normal(0, 4, a.shape)
    return Image.fromarray(np.clip(np.round(a), 0, 255).astype(np.uint8))


def photo_folder(root: Path, per_class: int, w: int = 256, h: int = 192, seed: int = 0, quality: int = 90) -> Path:
    """root/<class>/<i>.jpg: `per_class` real-size JPEG photos of each of PHOTO_CLASSES."""
    for ci, cls in enumerate(PHOTO_CLASSES):
        (root / cls).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            photo(cls, w, h, np.random.default_rng([seed, ci, i])).save(root / cls / f"{i:03d}.jpg", quality=quality)
    return root
