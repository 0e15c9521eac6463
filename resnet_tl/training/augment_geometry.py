"""Affine matrices for augmentation, as keras.ops: (B, 3, 3), mapping an output pixel
(x, y, 1) to the input pixel it samples (the convention of keras.ops.image.affine_transform),
so that composing steps is a matrix product with the first step leftmost."""

from __future__ import annotations

from resnet_tl.kerasenv import keras_module

keras = keras_module()
ops = keras.ops


def affine(a, b, tx, c, d, ty):
    """(B, 3, 3) matrices [[a, b, tx], [c, d, ty], [0, 0, 1]] from (B,) entries;
    they map an output pixel (x, y, 1) to the input pixel it samples."""
    zeros, ones = ops.zeros_like(a), ops.ones_like(a)
    rows = [ops.stack(r, axis=-1) for r in ((a, b, tx), (c, d, ty), (zeros, zeros, ones))]
    return ops.stack(rows, axis=1)


def about_center(a, b, c, d, height: int, width: int, dx=0.0, dy=0.0):
    """input = [[a, b], [c, d]] (p - centre) + centre + (dx, dy), in pixels."""
    cx, cy = (width - 1) / 2.0, (height - 1) / 2.0
    return affine(a, b, cx + dx - (a * cx + b * cy), c, d, cy + dy - (c * cx + d * cy))


def flip_matrix(flip_h, flip_v, height: int, width: int):
    """Mirror where flip_h / flip_v (B,) are 1: x -> W-1-x, y -> H-1-y."""
    sh, sv = 1.0 - 2.0 * flip_h, 1.0 - 2.0 * flip_v
    zeros = ops.zeros_like(flip_h)
    return affine(sh, zeros, flip_h * (width - 1), zeros, sv, flip_v * (height - 1))


def rotation_matrix(angle, height: int, width: int):
    """Rotation by `angle` (B,) radians about the centre, as keras.layers.RandomRotation."""
    cos, sin = ops.cos(angle), ops.sin(angle)
    return about_center(cos, -sin, sin, cos, height, width)


def scale_matrix(scale, height: int, width: int, dx=0.0, dy=0.0):
    """Sample a (scale * size) square about the centre shifted by (dx, dy) px; scale < 1 zooms in."""
    zeros = ops.zeros_like(scale)
    return about_center(scale, zeros, zeros, scale, height, width, dx, dy)


def reflect(index, size: int):
    """Integer pixel indices folded into 0..size-1 the half-sample-symmetric way
    (d c b a | a b c d | d c b a): scipy.ndimage's and Keras's 'reflect'."""
    period = 2 * size
    m = index - period * ops.floor_divide(index, period)  # index mod 2*size, also for negatives
    return ops.where(m >= size, period - 1 - m, m)


def warp(images, matrices):
    """Resample (B, H, W, C) float images through (B, 3, 3) output->input matrices,
    bilinear, reflect fill.

    Written with gathers rather than keras.ops.image.affine_transform: under
    TensorFlow that op is ImageProjectiveTransformV3, which has no XLA kernel
    (the reason Keras's RandomRotation & co. set supports_jit = False).
    """
    h, w, c = images.shape[1], images.shape[2], images.shape[3]
    ys, xs = ops.meshgrid(ops.arange(h, dtype="float32"), ops.arange(w, dtype="float32"), indexing="ij")
    grid = ops.stack([ops.reshape(xs, (-1,)), ops.reshape(ys, (-1,)), ops.ones((h * w,))], axis=0)  # (3, HW)
    src = ops.matmul(ops.cast(matrices[:, :2, :], "float32"), grid)  # (B, 2, HW): input x, y of each output pixel
    x, y = src[:, 0, :], src[:, 1, :]
    x0, y0 = ops.floor(x), ops.floor(y)
    wx, wy = (x - x0)[..., None], (y - y0)[..., None]
    x0, y0 = ops.cast(x0, "int32"), ops.cast(y0, "int32")
    xa, xb = reflect(x0, w), reflect(x0 + 1, w)
    ya, yb = reflect(y0, h), reflect(y0 + 1, h)
    batch = ops.shape(images)[0]
    base = ops.reshape(ops.arange(batch, dtype="int32") * (h * w), (-1, 1))
    flat = ops.reshape(images, (-1, c))

    def at(yy, xx):
        return ops.take(flat, base + yy * w + xx, axis=0)  # (B, HW, C)

    top = at(ya, xa) * (1.0 - wx) + at(ya, xb) * wx
    bottom = at(yb, xa) * (1.0 - wx) + at(yb, xb) * wx
    return ops.reshape(top * (1.0 - wy) + bottom * wy, (-1, h, w, c))
