"""Generate data/sample/: 4 shape classes of 64x64 images, byte-identical on every run.

    python data/make_sample.py [--out data/sample] [--per-class 150] [--seed 0]

Classes: circle, square, triangle, stripes. Colour, position, size, stripe
angle and background (gradient + noise) vary, so a small CNN has to learn shape,
not colour. Every image is drawn from its own seed (seed, class, index), so
one image never depends on another. One in three is PNG, the rest JPEG.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

CLASSES = ("circle", "square", "triangle", "stripes")
SIZE = 64
SUPER = 4  # draw at 4x and downsample: antialiased edges


def _colours(rng: np.random.Generator) -> tuple[tuple[int, int, int], tuple[int, int, int]]:
    """Background and foreground colours at least 90 apart in luminance."""
    while True:
        bg, fg = rng.integers(0, 256, (2, 3))
        lum = lambda c: 0.299 * c[0] + 0.587 * c[1] + 0.114 * c[2]  # noqa: E731
        if abs(lum(bg) - lum(fg)) >= 90:
            return tuple(int(v) for v in bg), tuple(int(v) for v in fg)


def _polygon(cx: float, cy: float, r: float, sides: int, angle: float) -> list[tuple[float, float]]:
    return [(cx + r * math.cos(angle + 2 * math.pi * k / sides), cy + r * math.sin(angle + 2 * math.pi * k / sides))
            for k in range(sides)]


def draw(cls: str, rng: np.random.Generator) -> Image.Image:
    """One 64x64 RGB image of `cls`."""
    bg, fg = _colours(rng)
    s = SIZE * SUPER
    img = Image.new("RGB", (s, s), bg)
    d = ImageDraw.Draw(img)
    r = rng.uniform(17, 27) * SUPER  # circumradius
    cx, cy = rng.uniform(r, s - r, 2)
    # Squares and triangles stand upright: with a few hundred images a ResNet
    # trained from scratch on a CPU learns upright shapes in a minute or two,
    # while arbitrary rotations need far more data or epochs.
    angle = rng.uniform(0, 2 * math.pi) if cls == "stripes" else {"square": math.pi / 4, "triangle": -math.pi / 2}.get(cls, 0.0)
    if cls == "circle":
        r *= 0.85
        d.ellipse([cx - r, cy - r, cx + r, cy + r], fill=fg)
    elif cls == "square":
        d.polygon(_polygon(cx, cy, r, 4, angle), fill=fg)
    elif cls == "triangle":
        d.polygon(_polygon(cx, cy, r, 3, angle), fill=fg)
    else:  # stripes: 3-5 parallel bars inside a disc-sized patch
        n = int(rng.integers(3, 6))
        width = 2 * r / (2 * n - 1)
        dx, dy = math.cos(angle), math.sin(angle)
        for k in range(n):
            off = -r + width * (2 * k + 0.5)
            mx, my = cx + dx * off, cy + dy * off
            half = r * 0.9
            p1 = (mx - dy * half, my + dx * half)
            p2 = (mx + dy * half, my - dx * half)
            d.line([p1, p2], fill=fg, width=max(1, int(width)))
    img = img.resize((SIZE, SIZE), Image.Resampling.LANCZOS)
    a = np.asarray(img, dtype=np.float32)
    yy, xx = np.mgrid[0:SIZE, 0:SIZE] / SIZE
    gx, gy = rng.uniform(-25, 25, 2)
    a += (gx * (xx - 0.5) + gy * (yy - 0.5))[..., None]  # a lighting gradient
    a += rng.normal(0, rng.uniform(2, 6), a.shape)  # sensor noise
    return Image.fromarray(np.clip(np.round(a), 0, 255).astype(np.uint8))


def generate(out: Path, per_class: int = 150, seed: int = 0) -> list[Path]:
    """Write out/<class>/<class>_<i>.{jpg,png}; returns the paths written."""
    written = []
    for ci, cls in enumerate(CLASSES):
        folder = out / cls
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            img = draw(cls, np.random.default_rng([seed, ci, i]))
            if i % 3 == 0:
                path = folder / f"{cls}_{i:03d}.png"
                img.save(path, "PNG", optimize=True)
            else:
                path = folder / f"{cls}_{i:03d}.jpg"
                img.save(path, "JPEG", quality=85)
            written.append(path)
    return written


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "sample")
    ap.add_argument("--per-class", type=int, default=150)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    paths = generate(args.out, args.per_class, args.seed)
    total = sum(p.stat().st_size for p in paths)
    print(f"{len(paths)} images, {total / 1e6:.2f} MB in {args.out}")


if __name__ == "__main__":
    main()
