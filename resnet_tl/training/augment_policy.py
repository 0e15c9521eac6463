"""RandAugment and TrivialAugment with keras.ops, per image, inside the compiled step.

Keras 3's `keras.layers.RandAugment` is not used: it holds RandomRotation,
RandomShear and RandomTranslation sublayers (``supports_jit = False``, so the
training model would lose XLA), it picks the same ops for the whole batch, and
it computes all eleven ops for every slot.

The ops and their strength at magnitude 10 follow timm's `rand_augment_ops`
(PIL semantics; `ImageEnhance` factors are 1 +- 0.9 * level):

    identity, autocontrast           no strength
    brightness, color, contrast,     factor 1 + 0.9 * level (random sign)
    sharpness
    posterize                        keep 8 - round(4 * level) bits (4 at level 1)
    solarize                         invert pixels >= 256 * (1 - level)
    rotate                           +-30 degrees * level
    shear_x, shear_y                 +-0.3 * level (about the centre)
    translate_x, translate_y         +-45% of the side * level

level = magnitude / 10. randaugment: `num_ops` ops per image, drawn uniformly
with repetition, all at `level`. trivialaugment: one op per image, at a level
drawn uniformly in [0, magnitude / 10] per image. Equalize and invert are left
out (equalize needs a per-image histogram). The geometric ops are composed
into the layer's one resampling matrix, so they act before the colour ops.
"""

from __future__ import annotations

import math

from resnet_tl.kerasenv import keras_module
from resnet_tl.training.augment_geometry import about_center

keras = keras_module()
ops = keras.ops

OPS = ("identity", "autocontrast", "brightness", "color", "contrast", "sharpness", "posterize", "solarize",
       "rotate", "shear_x", "shear_y", "translate_x", "translate_y")
MAX_ROTATE = math.radians(30.0)
MAX_SHEAR = 0.3
MAX_TRANSLATE = 0.45  # fraction of the side
MAX_ENHANCE = 0.9  # ImageEnhance factor 1 +- this
MAX_POSTERIZE = 4  # bits removed
# L = R * 299/1000 + G * 587/1000 + B * 114/1000: PIL's grey, which ImageEnhance blends with.
GREY = (0.299, 0.587, 0.114)


def op_index(name: str) -> int:
    return OPS.index(name)


def sample(n, cfg, uniform, seed_generator) -> dict:
    """policy_ops (n, k) int32 indices into OPS; policy_levels (n, k) float32 in [-1, 1]."""
    k, level = cfg.policy_ops, cfg.policy_level
    chosen = keras.random.randint((n, k), 0, len(OPS), seed=seed_generator)
    strength = level * ops.ones((n, k)) if cfg.policy == "randaugment" else uniform(n, 0.0, level, (k,))
    sign = ops.where(uniform(n, 0.0, 1.0, (k,)) < 0.5, -1.0, 1.0)
    return {"policy_ops": chosen, "policy_levels": strength * sign}


def _slot(p: dict, j: int):
    return p["policy_ops"][:, j], p["policy_levels"][:, j]


def matrix(p: dict, h: int, w: int):
    """(B, 3, 3) output->input matrix of the geometric ops chosen, slot 0 first (leftmost)."""
    m = None
    for j in range(p["policy_ops"].shape[1]):
        op, lvl = _slot(p, j)

        def on(name, value, op=op):
            return ops.where(op == op_index(name), value, 0.0)

        angle = on("rotate", lvl * MAX_ROTATE)
        cos, sin = ops.cos(angle), ops.sin(angle)
        shx, shy = on("shear_x", lvl * MAX_SHEAR), on("shear_y", lvl * MAX_SHEAR)
        # At most one of rotate / shear is non-zero per slot, so the product is that op alone.
        a, b = cos + shx * sin, -sin + shx * cos
        c, d = sin + shy * cos, cos - shy * sin
        dx, dy = on("translate_x", lvl * MAX_TRANSLATE * w), on("translate_y", lvl * MAX_TRANSLATE * h)
        f = about_center(a, b, c, d, h, w, dx, dy)
        m = f if m is None else ops.matmul(m, f)
    return m


def grey(x):
    """(B, H, W, 3) -> (B, H, W, 1), PIL's 'L' conversion."""
    return x[..., 0:1] * GREY[0] + x[..., 1:2] * GREY[1] + x[..., 2:3] * GREY[2]


def blend(degenerate, x, factor):
    """PIL ImageEnhance: degenerate + factor * (x - degenerate), clipped to 0..255."""
    return ops.clip(degenerate + factor * (x - degenerate), 0.0, 255.0)


def smooth(x):
    """PIL's ImageFilter.SMOOTH ([[1,1,1],[1,5,1],[1,1,1]] / 13), border pixels kept as PIL does."""
    h, w = x.shape[1], x.shape[2]
    acc = 4.0 * x[:, 1:h - 1, 1:w - 1]
    for dy in range(3):
        for dx in range(3):
            acc = acc + x[:, dy:dy + h - 2, dx:dx + w - 2]
    inner = acc / 13.0
    return x + ops.pad(inner - x[:, 1:h - 1, 1:w - 1], ((0, 0), (1, 1), (1, 1), (0, 0)))


def apply_color(name: str, x, level):
    """One colour op on (B, H, W, 3) at signed `level` (B, 1, 1, 1) in [-1, 1]."""
    factor = 1.0 + MAX_ENHANCE * level
    strength = ops.abs(level)
    if name == "autocontrast":
        lo, hi = ops.min(x, axis=(1, 2), keepdims=True), ops.max(x, axis=(1, 2), keepdims=True)
        spread = hi - lo
        return ops.where(spread > 0, ops.clip((x - lo) * (255.0 / ops.maximum(spread, 1e-6)), 0.0, 255.0), x)
    if name == "brightness":
        return blend(ops.zeros_like(x), x, factor)
    if name == "color":
        return blend(grey(x), x, factor)
    if name == "contrast":
        return blend(ops.round(ops.mean(grey(x), axis=(1, 2, 3), keepdims=True)), x, factor)
    if name == "sharpness":
        return blend(smooth(x), x, factor)
    if name == "posterize":
        step = 2.0 ** ops.round(MAX_POSTERIZE * strength)
        return ops.floor(x / step) * step
    if name == "solarize":
        return ops.where(x >= 256.0 * (1.0 - strength), 255.0 - x, x)
    raise ValueError(f"not a colour op: {name}")


COLOR_OPS = ("autocontrast", "brightness", "color", "contrast", "sharpness", "posterize", "solarize")


def colors(x, p: dict):
    """The colour ops chosen per image and slot, in slot order; (B, H, W, 3) -> same."""
    for j in range(p["policy_ops"].shape[1]):
        op, lvl = _slot(p, j)
        op = ops.reshape(op, (-1, 1, 1, 1))
        lvl = ops.reshape(lvl, (-1, 1, 1, 1))
        for name in COLOR_OPS:
            x = ops.where(op == op_index(name), apply_color(name, x, lvl), x)
    return x
