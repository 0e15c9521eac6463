"""The augmentation layer: every recipe augmentation written with keras.ops.

Keras's RandomRotation, RandomZoom, RandomTranslation and RandomCrop set
``supports_jit = False``, and one such layer makes Keras drop XLA for the whole
training model (46x slower under JAX on a GPU, issue 23). This layer uses only
keras.ops and keras.random, so the training step stays compiled.

Per image it draws its parameters from one `SeedGenerator` (whose state is the
layer's only variable, so a checkpoint carries it), then:

1. geometry as ONE resampling: flip, rotation, zoom, random resized crop and the
   policy's geometric ops are composed into one 3x3 matrix (output pixel ->
   input pixel) for `keras.ops.image.affine_transform`, bilinear, reflect fill
   (d c b a | a b c d | d c b a). Flips alone are exact reversals, no resampling.
2. contrast, then brightness, then the policy's colour ops (augment_policy);
3. random erasing.

Meaning of the recipe keys (as the Keras layers they replace):
- rotation r: angle uniform in +-r full turns (RandomRotation(r));
- zoom z: scale uniform in [1 - z, 1 + z] about the centre (RandomZoom((-z, z)));
  < 1 zooms in;
- crop c: a square of side s = uniform(sqrt(c), 1) of the image side (area >= c),
  at a uniform place inside the image, resized back to S x S;
- contrast c: (x - per-channel mean) * uniform(1 - c, 1 + c) + mean (RandomContrast);
- brightness b: + uniform(-b, b) * 255 (RandomBrightness), both clipped to 0..255;
- erasing p: with probability p, one rectangle of 2-33% of the area, aspect
  ratio log-uniform in [0.3, 3.3], filled with one random colour (timm's
  RandomErasing, mode 'rand').
"""

from __future__ import annotations

import math

from resnet_tl.kerasenv import keras_module
from resnet_tl.recipe import AugmentConfig
from resnet_tl.training import augment_policy
from resnet_tl.training.augment_geometry import flip_matrix, rotation_matrix, scale_matrix, warp

keras = keras_module()
ops = keras.ops

ERASE_AREA = (0.02, 1 / 3)  # fraction of the image (timm's RandomErasing defaults)
ERASE_RATIO = (0.3, 1 / 0.3)  # height / width


# ------------------------------------------------------------------ layer
class Augmenter(keras.layers.Layer):
    """Pixels (B, H, W, 3) 0..255 -> augmented float32 pixels; identity unless training.

    `sample(n)` draws the parameters, `transform(images, params)` applies them:
    tests call `transform` with fixed parameters.
    """

    def __init__(self, cfg: AugmentConfig, image_size: int, seed: int, **kwargs):
        # float32 whatever the global policy: pixel coordinates in float16 are off by pixels.
        super().__init__(dtype="float32", **kwargs)
        self.cfg, self.image_size = cfg, image_size
        self.seed_generator = keras.random.SeedGenerator(seed)
        self.geometric = bool(cfg.rotation or cfg.zoom or cfg.crop or cfg.policy != "none")

    def compute_output_shape(self, input_shape):
        return input_shape

    def call(self, images, training=None):
        if not training:
            return images
        return self.transform(images, self.sample(ops.shape(images)[0]))

    # ------------------------------------------------------------ sampling
    def _uniform(self, n, low, high, extra=()):
        return keras.random.uniform((n, *extra), low, high, seed=self.seed_generator)

    def sample(self, n) -> dict:
        """Per-image parameters for a batch of `n`: a dict of (n,) float32 tensors (see `transform`)."""
        cfg, p = self.cfg, {}
        if cfg.flip in ("horizontal", "both"):
            p["flip_h"] = ops.cast(self._uniform(n, 0.0, 1.0) < 0.5, "float32")
        if cfg.flip in ("vertical", "both"):
            p["flip_v"] = ops.cast(self._uniform(n, 0.0, 1.0) < 0.5, "float32")
        if cfg.rotation:
            p["angle"] = self._uniform(n, -cfg.rotation, cfg.rotation) * (2 * math.pi)
        if cfg.zoom:
            p["zoom"] = self._uniform(n, 1.0 - cfg.zoom, 1.0 + cfg.zoom)
        if cfg.crop:
            p["crop_scale"] = self._uniform(n, math.sqrt(cfg.crop), 1.0)
            p["crop_x"], p["crop_y"] = self._uniform(n, -1.0, 1.0), self._uniform(n, -1.0, 1.0)
        if cfg.contrast:
            p["contrast"] = self._uniform(n, 1.0 - cfg.contrast, 1.0 + cfg.contrast)
        if cfg.brightness:
            p["brightness"] = self._uniform(n, -cfg.brightness, cfg.brightness) * 255.0
        if cfg.policy != "none":
            p.update(augment_policy.sample(n, cfg, self._uniform, self.seed_generator))
        if cfg.erasing:
            p["erase"] = ops.cast(self._uniform(n, 0.0, 1.0) < cfg.erasing, "float32")
            p["erase_area"] = self._uniform(n, *ERASE_AREA)
            p["erase_ratio"] = ops.exp(self._uniform(n, math.log(ERASE_RATIO[0]), math.log(ERASE_RATIO[1])))
            p["erase_x"], p["erase_y"] = self._uniform(n, 0.0, 1.0), self._uniform(n, 0.0, 1.0)
            p["erase_color"] = self._uniform(n, 0.0, 255.0, (3,))
        return p

    # ----------------------------------------------------------- applying
    def transform(self, images, p: dict):
        """Apply parameters `p` (keys as `sample` makes them; a missing key = that step off).

        flip_h, flip_v: 0/1; angle: radians; zoom: scale (< 1 zooms in);
        crop_scale: side fraction, crop_x, crop_y: -1..1 of the free room;
        contrast: factor; brightness: added pixels; policy and erasing: see
        augment_policy.sample and `erase`.
        """
        x = ops.cast(images, "float32")
        h, w = x.shape[1], x.shape[2]
        if self.geometric:
            x = warp(x, self.matrix(p, h, w))
        else:
            if "flip_h" in p:
                x = ops.where(ops.reshape(p["flip_h"], (-1, 1, 1, 1)) > 0, ops.flip(x, axis=2), x)
            if "flip_v" in p:
                x = ops.where(ops.reshape(p["flip_v"], (-1, 1, 1, 1)) > 0, ops.flip(x, axis=1), x)
        if "contrast" in p:
            mean = ops.mean(x, axis=(1, 2), keepdims=True)
            x = ops.clip((x - mean) * ops.reshape(p["contrast"], (-1, 1, 1, 1)) + mean, 0.0, 255.0)
        if "brightness" in p:
            x = ops.clip(x + ops.reshape(p["brightness"], (-1, 1, 1, 1)), 0.0, 255.0)
        if "policy_ops" in p:
            x = augment_policy.colors(x, p)
        if "erase" in p:
            x = erase(x, p)
        return x

    def matrix(self, p: dict, h: int, w: int):
        """The one (B, 3, 3) output->input matrix of all geometric steps, in recipe order
        (flip, rotation, zoom, crop, then the policy): the first step is the leftmost factor."""
        factors = []
        if "flip_h" in p or "flip_v" in p:
            ref = p.get("flip_h", p.get("flip_v"))
            factors.append(flip_matrix(p.get("flip_h", ops.zeros_like(ref)), p.get("flip_v", ops.zeros_like(ref)), h, w))
        if "angle" in p:
            factors.append(rotation_matrix(p["angle"], h, w))
        if "zoom" in p:
            factors.append(scale_matrix(p["zoom"], h, w))
        if "crop_scale" in p:
            s = p["crop_scale"]
            # Shifts that keep the sampled square inside the image.
            room_x, room_y = (1.0 - s) * (w - 1) / 2.0, (1.0 - s) * (h - 1) / 2.0
            factors.append(scale_matrix(s, h, w, p["crop_x"] * room_x, p["crop_y"] * room_y))
        if "policy_ops" in p:
            factors.append(augment_policy.matrix(p, h, w))
        m = factors[0]
        for f in factors[1:]:
            m = ops.matmul(m, f)
        return m


def erase(x, p: dict):
    """Fill one rectangle per selected image with its colour; (B, H, W, 3) -> same."""
    h, w = x.shape[1], x.shape[2]
    area = p["erase_area"] * (h * w)
    eh = ops.minimum(ops.sqrt(area * p["erase_ratio"]), float(h))
    ew = ops.minimum(ops.sqrt(area / p["erase_ratio"]), float(w))
    y0, x0 = p["erase_y"] * (h - eh), p["erase_x"] * (w - ew)
    rows = ops.reshape(ops.arange(h, dtype="float32"), (1, h, 1, 1))
    cols = ops.reshape(ops.arange(w, dtype="float32"), (1, 1, w, 1))

    def col(v):
        return ops.reshape(v, (-1, 1, 1, 1))

    inside = ((rows >= col(y0)) & (rows < col(y0 + eh)) & (cols >= col(x0)) & (cols < col(x0 + ew))
              & (col(p["erase"]) > 0))
    return ops.where(inside, ops.reshape(p["erase_color"], (-1, 1, 1, 3)), x)
