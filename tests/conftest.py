"""Shared fixtures: tiny image files of every awkward kind, written on the fly, and one trained
run that every test needing a finished run shares (trained once per session)."""

from __future__ import annotations

import io
import struct
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from resnet_tl.kerasenv import quiet_tensorflow

# no_skips_in_ci: under CI=true a skip is a failure. pytester: to test that plugin.
pytest_plugins = ["no_skips_in_ci", "pytester"]

quiet_tensorflow()


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


@pytest.fixture
def messy_folder(tmp_path: Path) -> Path:
    """Class folders cat/, dog/ (every awkward kind of file) and bird/ (no usable image)."""
    root = tmp_path / "messy"
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


@pytest.fixture(scope="session")
def shared_data(tmp_path_factory) -> Path:
    """The bars task as a folder with train/ val/ test/ (hbar, vbar; 16 px PNGs)."""
    from helpers import bars_folder

    root = tmp_path_factory.mktemp("shared") / "bars"
    for split, n, seed in (("train", 40, 0), ("val", 16, 1), ("test", 12, 2)):
        bars_folder(root / split, n_per_class=n, seed=seed)
    return root


@pytest.fixture(scope="session")
def shared_run(shared_data, tmp_path_factory) -> Path:
    """A finished run on `shared_data`: CIFAR ResNet-20 at 16 px, a head phase then everything.

    Read-only for the tests that use it: copy it (shutil.copytree) before writing into it.
    """
    from helpers import tiny_recipe

    from resnet_tl.training.train import train

    base = tmp_path_factory.mktemp("shared_run")
    recipe = tiny_recipe(
        [{"name": "head", "epochs": 1, "train": "head", "lr": 1e-2},
         {"name": "all", "epochs": 4, "train": "all", "lr": 3e-3, "batchnorm": "train"}],
        data={"dir": str(shared_data), "cache_dir": str(base / "cache")},
    )
    return train(recipe, out=base / "runs", name="run").run_dir
