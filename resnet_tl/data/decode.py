"""Decode any image file Pillow reads into a square uint8 RGB array.

Training, `data check` and predict all go through `decode_pil`, so an image
that passes the scan is exactly what the model sees. Rules:

- EXIF orientation is applied; animated images use their first frame.
- Alpha is composited on WHITE (transparent icons and logos read as drawn on a
  page; Keras' own loader would expose whatever colour hides under alpha=0).
- 16-bit images are scaled to 8 bit (value / 257), never clipped.
- The whole image is resized to size x size ("squash", like Keras'
  `image_dataset_from_directory`). ``resize="antialias"`` (data.resize's
  default): Pillow's antialiased bilinear filter, after JPEG's DCT pre-shrink.
  ``resize="bilinear"``: what MediaPipe and most app pipelines do, i.e. OpenCV's
  ``warpPerspective`` bilinear mapping the image's corners onto the output's,
  no antialiasing, from the full-size decoded image; a model trained this way
  sees in training the pixels an app will feed it.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass
from pathlib import Path
from struct import error as struct_error  # Pillow leaks it on short headers

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

# Why a file was not used. Fixed so reports and tests can rely on it.
REASONS = (
    "zero_bytes",          # the file is empty
    "not_an_image",        # Pillow cannot identify the format
    "truncated",           # identified, but decoding fails partway (cut off or corrupt data)
    "unsupported_format",  # identified, but Pillow cannot decode or convert it to RGB
    "too_small",           # shorter side below data.min_size
    "too_large",           # more pixels than data.max_pixels / --max-pixels (read from the header, never decoded)
    "unreadable",          # the operating system refused to read it (permissions, I/O error)
)

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp"})

_BACKGROUND = (255, 255, 255)

# Pillow's own DecompressionBombWarning threshold (1 GiB / 4 bytes / 3), 9459 x 9459 px:
# a decode of that many RGB pixels holds ~270 MB per decode thread. Pillow refuses
# twice that in Image.open, so a larger cap cannot be honoured.
DEFAULT_MAX_PIXELS = 1024 * 1024 * 1024 // 4 // 3
PILLOW_MAX_PIXELS = 2 * DEFAULT_MAX_PIXELS

# data.resize values; the recipe schema lists them from here.
RESIZES = ("antialias", "bilinear")


class DecodeError(Exception):
    """A file that cannot become an image; `reason` is one of REASONS."""

    def __init__(self, reason: str, detail: str = ""):
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True)
class Decoded:
    """One decoded image: `pixels` uint8 (size, size, 3); width/height after EXIF rotation (px)."""

    pixels: np.ndarray
    width: int
    height: int
    mode: str
    format: str


def decode_image(path: str | Path, image_size: int, max_pixels: int | None = DEFAULT_MAX_PIXELS,
                 resize: str = "antialias") -> np.ndarray:
    """Decode a file -> uint8 (image_size, image_size, 3). Raises DecodeError.

    max_pixels: width x height above which the file is refused as "too_large"
    from its header alone, before any pixel is decoded (a decompression bomb:
    a 160 KB PNG can hold 13000 x 13000 px). None: no cap of ours.
    resize: one of RESIZES (data.resize), how the image is brought to image_size.
    """
    return decode_file(path, image_size, max_pixels, resize).pixels


def decode_bytes(data: bytes, image_size: int, max_pixels: int | None = DEFAULT_MAX_PIXELS,
                 resize: str = "antialias") -> np.ndarray:
    """Decode encoded bytes (e.g. an upload) -> uint8 (image_size, image_size, 3). Raises DecodeError."""
    return _decode(data, image_size, max_pixels, resize).pixels


def decode_file(path: str | Path, image_size: int, max_pixels: int | None = DEFAULT_MAX_PIXELS,
                resize: str = "antialias") -> Decoded:
    """Decode a file with its facts (size, mode, format). Raises DecodeError."""
    return _decode(read_bytes(path), image_size, max_pixels, resize)


def decode_with_facts(data: bytes, image_size: int, max_pixels: int | None = DEFAULT_MAX_PIXELS,
                      resize: str = "antialias") -> Decoded:
    """Like `decode_bytes`, keeping width/height/mode/format for scan statistics."""
    return _decode(data, image_size, max_pixels, resize)


def check_pixels(width: int, height: int, max_pixels: int | None, key: str = "data.max_pixels") -> None:
    """Raise DecodeError("too_large") when width x height (px) is above `max_pixels` (None: no cap)."""
    if max_pixels is not None and width * height > max_pixels:
        raise DecodeError("too_large", f"{width}x{height} px = {width * height:,} pixels; {key} is {max_pixels:,}")


def read_bytes(path: str | Path) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as e:
        raise DecodeError("unreadable", e.strerror or str(e)) from None


def probe_header(data: bytes) -> tuple[int, int, str, str]:
    """(width, height, mode, format) from the header only, size after EXIF rotation (px).

    Cheap (no pixel decoding); a file that passes may still fail `decode_*`.
    Raises DecodeError.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        with _open(data) as img:
            w, h = img.size
            # Pillow's PNG getexif() decodes every pixel to look for an eXIf chunk after the image
            # data: a header probe (and the pixel cap, checked on its result) must not pay that.
            late_exif_only = img.format == "PNG" and "exif" not in img.info
            rotated = not late_exif_only and _orientation(img) in (5, 6, 7, 8)
            return (h, w, img.mode, img.format or "?") if rotated else (w, h, img.mode, img.format or "?")


def _open(data: bytes) -> Image.Image:
    if not data:
        raise DecodeError("zero_bytes")
    try:
        return Image.open(io.BytesIO(data))
    except UnidentifiedImageError:
        raise DecodeError("not_an_image", "Pillow cannot identify the format") from None
    except Image.DecompressionBombError as e:
        raise DecodeError("too_large", str(e)) from None
    except (OSError, SyntaxError, ValueError, EOFError, struct_error) as e:
        # A plugin recognised the file, then gave up on its header.
        raise DecodeError(_load_failure(e), f"header: {e}") from None


def _orientation(img: Image.Image) -> int:
    try:
        return int(img.getexif().get(0x0112, 1))
    except Exception:  # malformed EXIF must not cost the user an image
        return 1


def _decode(data: bytes, image_size: int, max_pixels: int | None, resize: str = "antialias") -> Decoded:
    if resize not in RESIZES:
        raise ValueError(f"resize: received {resize!r}; allowed: {', '.join(RESIZES)}")
    with warnings.catch_warnings():
        # Large images raise DecompressionBombWarning; our own cap (max_pixels) decides instead.
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        with _open(data) as img:
            # Image.open read the header only: refuse a bomb before load() allocates its pixels.
            check_pixels(*img.size, max_pixels)
            fmt, mode = img.format or "?", img.mode
            rgb, (width, height) = _load_rgb(img, image_size, draft=resize == "antialias")
    pixels = _resize(rgb, image_size) if resize == "antialias" else _check_shape(bilinear_resize(np.asarray(rgb), image_size), image_size)
    return Decoded(pixels, width, height, mode, fmt)


def bilinear_resize(rgb: np.ndarray, image_size: int) -> np.ndarray:
    """uint8 (H, W, 3) -> uint8 (image_size, image_size, 3) as OpenCV's warpPerspective(INTER_LINEAR,
    BORDER_REPLICATE) does under the transform that maps the corners (0, 0), (W, H) onto (0, 0), (S, S):
    MediaPipe's whole-image preprocessing. Output pixel x samples source x * W / S, no antialiasing."""
    h, w = rgb.shape[:2]
    if (h, w) == (image_size, image_size):
        return np.ascontiguousarray(rgb[..., :3])

    def axis(n_src: int):
        pos = np.arange(image_size, dtype=np.float64) * (n_src / image_size)
        lo = np.floor(pos).astype(np.int64)
        frac = (pos - lo).astype(np.float32)
        return np.clip(lo, 0, n_src - 1), np.clip(lo + 1, 0, n_src - 1), frac

    y0, y1, fy = axis(h)
    x0, x1, fx = axis(w)
    rgb = rgb[..., :3]

    def at(ys, xs):  # gather first: only image_size**2 pixels ever become float
        return rgb[ys][:, xs].astype(np.float32)

    top = at(y0, x0) * (1 - fx)[None, :, None] + at(y0, x1) * fx[None, :, None]
    bottom = at(y1, x0) * (1 - fx)[None, :, None] + at(y1, x1) * fx[None, :, None]
    out = top * (1 - fy)[:, None, None] + bottom * fy[:, None, None]
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def _load_rgb(img: Image.Image, image_size: int, draft: bool = True) -> tuple[Image.Image, tuple[int, int]]:
    """Load the first frame, apply EXIF orientation, convert to RGB; also the oriented full size (px).
    draft: let JPEG decode at a reduced scale (an antialiasing shrink of its own)."""
    oriented = img.size
    orientation = _orientation(img)
    if orientation in (5, 6, 7, 8):
        oriented = img.size[::-1]
    if img.format == "JPEG" and draft:
        # Decode at 1/2, 1/4 or 1/8 scale when the target is that much smaller: 2-8x faster.
        img.draft(None, (image_size, image_size))
    try:
        img.load()
    except Image.DecompressionBombError as e:
        raise DecodeError("too_large", str(e)) from None
    except (OSError, SyntaxError, ValueError, EOFError, IndexError, struct_error) as e:
        raise DecodeError(_load_failure(e), str(e)) from None
    try:
        if orientation != 1:
            img = ImageOps.exif_transpose(img)
        rgb = _to_rgb(img)
    except DecodeError:
        raise
    except Exception as e:  # Pillow raises ValueError/NotImplementedError/KeyError for unknown conversions
        raise DecodeError("unsupported_format", f"cannot convert mode {img.mode} to RGB ({e})") from None
    return rgb, oriented


def _load_failure(e: Exception) -> str:
    """Pillow signals "valid but not supported" only in its messages (e.g. BMP compression 4)."""
    msg = str(e).lower()
    if any(k in msg for k in ("unsupported", "not supported", "not available", "unknown", "not implemented")):
        return "unsupported_format"
    return "truncated"


def _to_rgb(img: Image.Image) -> Image.Image:
    mode = img.mode
    if mode == "RGB":
        return img
    if mode in ("I;16", "I;16L", "I;16B", "I;16N", "I"):
        # 16-bit PNGs (Pillow opens them as I;16 or I): full range is 0..65535.
        a = np.asarray(img, dtype=np.float64)
        a = np.clip(a, 0, 65535) / 257.0
        return Image.fromarray(np.round(a).astype(np.uint8), "L").convert("RGB")
    if mode == "F":
        a = np.asarray(img, dtype=np.float64)
        a = np.nan_to_num(a)
        scale = 255.0 if a.size and a.max() <= 1.0 else 1.0  # float images are 0..1 or 0..255
        return Image.fromarray(np.round(np.clip(a * scale, 0, 255)).astype(np.uint8), "L").convert("RGB")
    if mode == "P":
        mode_with_alpha = "RGBA" if "transparency" in img.info else "RGB"
        img = img.convert(mode_with_alpha)
    elif mode in ("LA", "PA", "La", "RGBa", "RGBA", "RGBX"):
        img = img.convert("RGBA") if mode != "RGBX" else img.convert("RGB")
    elif mode == "1":
        img = img.convert("L")
    if img.mode == "RGBA":
        background = Image.new("RGB", img.size, _BACKGROUND)
        background.paste(img, mask=img.getchannel("A"))
        return background
    return img.convert("RGB")


def _resize(img: Image.Image, image_size: int) -> np.ndarray:
    if img.size != (image_size, image_size):
        # reducing_gap: integer pre-shrink for big photos, then an exact antialiased resize.
        img = img.resize((image_size, image_size), Image.Resampling.BILINEAR, reducing_gap=3.0)
    return _check_shape(np.asarray(img, dtype=np.uint8), image_size)


def _check_shape(out: np.ndarray, image_size: int) -> np.ndarray:
    if out.shape != (image_size, image_size, 3):
        raise DecodeError("unsupported_format", f"decoded to shape {out.shape}")
    return np.ascontiguousarray(out)

