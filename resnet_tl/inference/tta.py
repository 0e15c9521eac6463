"""Test-time augmentation: average a model's probabilities over a few views of each image.

Views of a uint8 image (S, S, 3), all at the model's size S: the image as
decoded, its horizontal mirror, and three crops of CROP x S (centre, top-left,
bottom-right) resized back to S. The mirror is used only for a model trained
with a horizontal flip (`views_for`): a model that never saw mirrored images
(text, arrows, left vs right classes) may read a mirror as another class.
Crops are taken from the decoded S x S image so that `predict` (files) and
`evaluate` (the decode cache) see the same views. Costs one model call per
view and image. Pure numpy and Pillow.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
from PIL import Image

VIEWS = ("full", "flip", "crop_center", "crop_top_left", "crop_bottom_right")
CROP = 0.875  # the usual eval crop fraction (224 of 256)


def views_for(flip: str | None) -> tuple[str, ...]:
    """The views for a model trained with data.augment.flip `flip` (None: unknown, e.g. a bare model file).

    The mirror only when training flipped horizontally ("horizontal" or "both").
    """
    return VIEWS if flip in ("horizontal", "both") else tuple(v for v in VIEWS if v != "flip")


def views(x: np.ndarray, names: tuple[str, ...] = VIEWS) -> np.ndarray:
    """uint8 (B, S, S, 3) -> uint8 (len(names), B, S, S, 3), the views `names` (of VIEWS) in that order."""
    unknown = [n for n in names if n not in VIEWS]
    if unknown:
        raise ValueError(f"views: received {unknown}; allowed: {', '.join(VIEWS)}")
    x = np.asarray(x, dtype=np.uint8)
    s = x.shape[1]
    c = max(1, int(round(s * CROP)))
    off = (s - c) // 2
    corners = {"crop_center": (off, off), "crop_top_left": (0, 0), "crop_bottom_right": (s - c, s - c)}
    out = np.empty((len(names), *x.shape), np.uint8)
    for v, name in enumerate(names):
        if name == "full":
            out[v] = x
        elif name == "flip":
            out[v] = x[:, :, ::-1]
        else:
            top, left = corners[name]
            for i, img in enumerate(x):
                crop = Image.fromarray(img[top:top + c, left:left + c])
                out[v, i] = np.asarray(crop.resize((s, s), Image.Resampling.BILINEAR))
    return out


def predict_tta(predict: Callable[[np.ndarray], np.ndarray], x: np.ndarray, names: tuple[str, ...]) -> np.ndarray:
    """Mean probabilities (B, C) float32 over the views `names` (see `views_for`);
    `predict`: uint8 (N, S, S, 3) -> (N, C)."""
    x = np.asarray(x)
    if len(x) == 0:
        return np.asarray(predict(x), np.float32)
    v = views(x, names)
    probs = np.asarray(predict(v.reshape(-1, *x.shape[1:])), np.float32)
    return probs.reshape(len(names), len(x), -1).mean(axis=0)
