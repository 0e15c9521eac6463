"""On-device augmentation, used by the training model only.

Exported and saved models never contain it: the trainer wraps the classifier
as ``augment -> classifier`` for fitting and saves the classifier. Mixup and
CutMix change the labels too, so they run where the labels are, in the batch
loader (resnet_tl.data.batches), on uint8-derived batches.

The layer itself (`augment_layer.Augmenter`) is written with keras.ops so the
training step stays jit-compiled (XLA) under every backend; this module only
decides whether one is needed, so the recipe planner can ask without Keras.
"""

from __future__ import annotations

from resnet_tl.recipe import AugmentConfig


def is_identity(cfg: AugmentConfig) -> bool:
    """True when the recipe asks for no image augmentation (mixup/cutmix aside)."""
    return (cfg.flip == "none" and cfg.policy == "none"
            and not any((cfg.rotation, cfg.zoom, cfg.crop, cfg.contrast, cfg.brightness, cfg.erasing)))


def build_augmenter(cfg: AugmentConfig, image_size: int, seed: int):
    """A layer: pixels (B, S, S, 3) float 0..255 -> augmented pixels, same shape and range.

    Returns None when the recipe asks for nothing. Its only variable is the
    state of its random-seed generator, which the checkpoint carries.
    """
    if is_identity(cfg):
        return None
    from resnet_tl.training.augment_layer import Augmenter

    return Augmenter(cfg, image_size, seed, name="augment")
