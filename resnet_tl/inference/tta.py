"""Test-time augmentation: average a model's probabilities over a few views of each image.

Views of a uint8 image (S, S, 3), all at the model's size S: the image as
decoded, its horizontal mirror, and three crops of CROP x S (centre, top-left,
bottom-right) resized back to S. Crops are taken from the decoded S x S image
so that `predict` (files) and `evaluate` (the decode cache) see the same
views. Costs len(VIEWS) model calls per image. Pure numpy and Pillow.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
from PIL import Image

VIEWS = ("full", "flip", "crop_center", "crop_top_left", "crop_bottom_right")
CROP = 0.875  # the usual eval crop fraction (224 of 256)


def views(x: np.ndarray) -> np.ndarray:
    """uint8 (B, S, S, 3) -> uint8 (len(VIEWS), B, S, S, 3)."""
    x = np.asarray(x, dtype=np.uint8)
    s = x.shape[1]
    c = max(1, int(round(s * CROP)))
    off = (s - c) // 2
    corners = [(off, off), (0, 0), (s - c, s - c)]
    out = np.empty((len(VIEWS), *x.shape), np.uint8)
    out[0] = x
    out[1] = x[:, :, ::-1]
    for v, (top, left) in enumerate(corners, start=2):
        for i, img in enumerate(x):
            crop = Image.fromarray(img[top:top + c, left:left + c])
            out[v, i] = np.asarray(crop.resize((s, s), Image.Resampling.BILINEAR))
    return out


def predict_tta(predict: Callable[[np.ndarray], np.ndarray], x: np.ndarray) -> np.ndarray:
    """Mean probabilities (B, C) float32 over the views; `predict`: uint8 (N, S, S, 3) -> (N, C)."""
    x = np.asarray(x)
    if len(x) == 0:
        return np.asarray(predict(x), np.float32)
    v = views(x)
    probs = np.asarray(predict(v.reshape(-1, *x.shape[1:])), np.float32)
    return probs.reshape(len(VIEWS), len(x), -1).mean(axis=0)
