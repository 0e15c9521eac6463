"""The trainer's input path: uint8 pixels to the device, cast there, identical results."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np

from helpers import ROOT

from resnet_tl.training.batches import keras_batches


def _pixels(n=24, size=16, seed=0):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (n, size, size, 3), dtype=np.uint8), rng.integers(0, 3, n).astype(np.int32)


def test_pixels_stay_uint8_unless_mixup_blends_them_and_features_stay_float():
    x, y = _pixels()
    xb, yb = keras_batches(x, y, 3, 8, 0, True)[0]
    assert xb.dtype == np.uint8 and yb.shape == (8, 3)
    assert keras_batches(x, y, 3, 8, 0, True, mix={"mixup": 0.2})[0][0].dtype == np.float32
    assert keras_batches(x, y, 3, 8, 0, True, mix={"cutmix": 1.0})[0][0].dtype == np.uint8  # pastes, no blend
    feats = np.random.default_rng(1).random((24, 5)).astype(np.float32)
    assert keras_batches(feats, y, 3, 8, 0, True)[0][0].dtype == np.float32


def test_training_model_gives_the_same_outputs_and_gradients_for_uint8_and_float32_batches():
    """Keras casts a uint8 batch to the model's float32 input on the device: the
    reference is the float32 batch the trainer sent before."""
    import keras

    from resnet_tl.models.classifier import build_classifier
    from resnet_tl.recipe import ModelConfig

    x, _ = _pixels(4)
    keras.utils.set_random_seed(0)
    model = build_classifier(ModelConfig(backbone="resnet8", weights="none"), 3, 16)
    np.testing.assert_array_equal(np.asarray(model(x, training=True)), np.asarray(model(x.astype(np.float32), training=True)))
    y = np.eye(3, dtype=np.float32)[[0, 1, 2, 0]]
    model.compile("sgd", keras.losses.CategoricalCrossentropy())
    assert model.test_on_batch(x, y) == model.test_on_batch(x.astype(np.float32), y)


def test_uint8_prefetched_batches_train_under_jax_without_tensorflow():
    code = """
import sys, numpy as np, keras
from resnet_tl.training.batches import keras_batches
rng = np.random.default_rng(0)
x = rng.integers(0, 256, (40, 8, 8, 3), dtype=np.uint8)
y = (x.mean(axis=(1, 2, 3)) > 127).astype(np.int32)
ds = keras_batches(x, y, 2, 8, 0, True)
assert ds[0][0].dtype == np.uint8
model = keras.Sequential([keras.Input((8, 8, 3)), keras.layers.Rescaling(1 / 255), keras.layers.Flatten(), keras.layers.Dense(2, activation="softmax")])
model.compile("adam", keras.losses.CategoricalCrossentropy(), jit_compile=True)
h = model.fit(ds, epochs=2, verbose=0)
assert len(h.history["loss"]) == 2 and np.isfinite(h.history["loss"]).all()
assert "tensorflow" not in sys.modules, "tensorflow was imported"
"""
    env = {**os.environ, "KERAS_BACKEND": "jax", "PYTHONPATH": str(ROOT)}
    res = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert res.returncode == 0, res.stderr[-2000:]
