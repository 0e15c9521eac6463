"""Two small image sets that need no download, written as train/ val/ test/ folders of PNGs.

digits:   scikit-learn's 8x8 handwritten digits (1,797 images, 10 classes), upscaled
          (bicubic) to SIZE px, gray in three channels; 1,120 train, 280 val (1,400 in
          all, as the issue's held-out set) and the other 397 for test.
textures: 8 classes, one per scikit-image sample picture (brick, grass, gravel, moon,
          coins, camera, cell, text), in gray: random square crops of 40..96 px resized
          to SIZE px. Train and val crops come from the left 75% of each picture, test
          crops from the right 25%, so no test pixel was seen in training.

    python benchmarks/recipe_data.py OUT [--size 32]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image

TEXTURES = ("brick", "grass", "gravel", "moon", "coins", "camera", "cell", "text")


def _save(root: Path, split: str, cls: str, i: int, gray: np.ndarray) -> None:
    d = root / split / cls
    d.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.repeat(gray[..., None], 3, axis=2)).save(d / f"{i:04d}.png")


def digits_folder(root: Path, size: int = 32, seed: int = 0, n_trainval: int = 1400) -> Path:
    """scikit-learn digits as root/{train,val,test}/<digit>/*.png: the first n_trainval of a seeded
    order split 80/20 into train and val (1120/280 by default), the last 397 for test."""
    from sklearn.datasets import load_digits

    root = Path(root)
    if (root / "test").is_dir():
        return root
    d = load_digits()
    order = np.random.default_rng(seed).permutation(len(d.target))
    for rank, i in enumerate(order):
        split = "train" if rank < int(n_trainval * 0.8) else "val" if rank < n_trainval else "test" if rank >= 1400 else None
        if split is None:
            continue
        img8 = (d.images[i] * (255.0 / 16.0)).astype(np.uint8)
        big = np.asarray(Image.fromarray(img8).resize((size, size), Image.BICUBIC))
        _save(root, split, str(d.target[i]), rank, big)
    return root


def textures_folder(root: Path, size: int = 32, per_class: int = 150, seed: int = 0) -> Path:
    """Crops of scikit-image pictures as root/{train,val,test}/<picture>/*.png.

    Per class: `per_class` train+val crops (80/20) from the left 75%, per_class // 3 test crops from the right 25%.
    """
    import skimage.data

    root = Path(root)
    if (root / "test").is_dir():
        return root
    rng = np.random.default_rng(seed)
    for cls in TEXTURES:
        pic = np.asarray(getattr(skimage.data, cls)())
        if pic.ndim == 3:
            pic = (pic[..., :3] @ np.array([0.299, 0.587, 0.114])).astype(np.uint8)
        h, w = pic.shape
        cut = int(w * 0.75)
        for split, n, (x0, x1) in (("trainval", per_class, (0, cut)), ("test", per_class // 3, (cut, w))):
            for i in range(n):
                side = int(rng.integers(40, min(97, h, x1 - x0)))
                y = int(rng.integers(0, h - side + 1))
                x = int(rng.integers(x0, x1 - side + 1))
                crop = np.asarray(Image.fromarray(pic[y:y + side, x:x + side]).resize((size, size), Image.BILINEAR))
                where = split if split == "test" else ("train" if i < int(n * 0.8) else "val")
                _save(root, where, cls, i, crop)
    return root


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--size", type=int, default=32)
    a = ap.parse_args()
    print(digits_folder(Path(a.out) / "digits", a.size), textures_folder(Path(a.out) / "textures", a.size))
