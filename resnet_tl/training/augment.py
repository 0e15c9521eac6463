"""On-device augmentation as Keras layers, used by the training model only.

Exported and saved models never contain these layers: the trainer wraps the
classifier as ``augment -> classifier`` for fitting and saves the classifier.
Mixup and CutMix change the labels too, so they run where the labels are, in
the batch loader (resnet_tl.data.batches), on uint8-derived batches.
"""

from __future__ import annotations

import math

from resnet_tl.recipe import AugmentConfig

_FLIP_MODES = {"horizontal": "horizontal", "vertical": "vertical", "both": "horizontal_and_vertical"}


def is_identity(cfg: AugmentConfig) -> bool:
    """True when the recipe asks for no image augmentation (mixup/cutmix aside)."""
    return cfg.flip == "none" and not any((cfg.rotation, cfg.zoom, cfg.crop, cfg.contrast, cfg.brightness))


def build_augmenter(cfg: AugmentConfig, image_size: int, seed: int):
    """Pixels (B, S, S, 3) float 0..255 -> augmented pixels, same shape and range.

    Returns None when the recipe asks for nothing. ``crop`` is a random resized
    crop: a square of at least `crop` of the area, at a random place, resized
    back to S x S (zoom in by up to 1/sqrt(crop), then a random shift).
    """
    if is_identity(cfg):
        return None
    import keras
    from keras import layers

    steps = []
    if cfg.flip != "none":
        steps.append(layers.RandomFlip(_FLIP_MODES[cfg.flip], seed=seed))
    if cfg.rotation:
        steps.append(layers.RandomRotation(cfg.rotation, fill_mode="reflect", seed=seed + 1))
    if cfg.zoom:
        steps.append(layers.RandomZoom((-cfg.zoom, cfg.zoom), fill_mode="reflect", seed=seed + 2))
    if cfg.crop:
        side = 1.0 - math.sqrt(cfg.crop)
        steps.append(layers.RandomZoom((-side, 0.0), fill_mode="reflect", seed=seed + 3))
        steps.append(layers.RandomTranslation(side / 2, side / 2, fill_mode="reflect", seed=seed + 4))
    if cfg.contrast:
        steps.append(layers.RandomContrast(cfg.contrast, value_range=(0, 255), seed=seed + 5))
    if cfg.brightness:
        steps.append(layers.RandomBrightness(cfg.brightness, value_range=(0, 255), seed=seed + 6))
    return keras.Sequential([keras.Input((image_size, image_size, 3)), *steps], name="augment")
