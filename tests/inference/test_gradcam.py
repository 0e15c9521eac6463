"""Grad-CAM against a reference written here from the paper with TensorFlow's own autodiff on a
plain keras.applications ResNet50, and the same maps under JAX."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
from helpers import ROOT

from resnet_tl.kerasenv import keras_module

keras = keras_module()


def _classifier(backbone: str, size: int, classes: int = 3, seed: int = 0):
    from resnet_tl.models.classifier import build_classifier
    from resnet_tl.recipe import build_recipe

    keras.utils.set_random_seed(seed)
    cfg = build_recipe({"model": {"backbone": backbone, "head": {"hidden": [8]}}}).model
    return build_classifier(cfg, classes, size)


def _reference_gradcam(x: np.ndarray, classifier, class_index: np.ndarray) -> np.ndarray:
    """Selvaraju et al. (2017), eq. 1-2, on keras.applications.ResNet50 with the classifier's weights copied in."""
    import tensorflow as tf

    from resnet_tl.models.classifier import backbone_of

    size = x.shape[1]
    plain = keras.applications.ResNet50(weights=None, include_top=False, input_shape=(size, size, 3))
    plain.set_weights(backbone_of(classifier).get_weights())
    (w0, b0), (w1, b1) = (classifier.get_layer("head").get_layer(n).get_weights() for n in ("head_dense0", "head_logits"))
    a = plain(keras.applications.resnet50.preprocess_input(x.copy()))  # the last conv stage, (N, h, w, 2048)
    with tf.GradientTape() as tape:
        tape.watch(a)
        hidden = tf.nn.relu(tf.reduce_mean(a, axis=(1, 2)) @ w0 + b0)
        logits = hidden @ w1 + b1
        score = tf.reduce_sum(tf.gather(logits, class_index, axis=1, batch_dims=1))
    alpha = tf.reduce_mean(tape.gradient(score, a), axis=(1, 2))
    cam = tf.nn.relu(tf.einsum("nhwc,nc->nhw", a, alpha))
    cam = cam / tf.reduce_max(cam, axis=(1, 2), keepdims=True)
    return tf.image.resize(cam[..., None], (size, size), method="bilinear")[..., 0].numpy()


def test_gradcam_matches_a_reference_taken_with_tensorflows_autodiff_on_a_plain_keras_resnet50():
    from resnet_tl.inference.gradcam import GradCam, explain

    clf = _classifier("resnet50", 96)
    x = np.random.default_rng(0).uniform(0, 255, (2, 96, 96, 3)).astype("float32")
    maps, probs = GradCam(clf)(x)
    assert maps.shape == (2, 96, 96) and maps.dtype == np.float32
    np.testing.assert_allclose(probs, clf.predict_on_batch(x), atol=1e-5)
    ref = _reference_gradcam(x, clf, probs.argmax(axis=1))
    assert np.abs(maps - ref).max() <= 1e-4
    assert maps.max() > 0.99 and maps.min() >= 0.0 and len(np.unique(maps.round(3))) > 10  # a map, not a constant
    other = (probs.argmax(axis=1) + 1) % 3
    np.testing.assert_allclose(explain(clf, x, class_index=other), _reference_gradcam(x, clf, other), atol=1e-4)


@pytest.mark.slow
def test_gradcam_is_the_same_under_jax(tmp_path):
    from resnet_tl.inference.gradcam import explain

    clf = _classifier("resnet8", 16, seed=1)
    clf.save(tmp_path / "m.keras")
    x = np.random.default_rng(1).uniform(0, 255, (3, 16, 16, 3)).astype("float32")
    np.save(tmp_path / "x.npy", x)
    code = ("import numpy as np, keras, sys; from resnet_tl.inference.gradcam import explain; "
            "m = keras.saving.load_model(sys.argv[1]); assert keras.backend.backend() == 'jax'; "
            "np.save(sys.argv[3], explain(m, np.load(sys.argv[2]), class_index=[0, 1, 2]))")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "KERAS_BACKEND": "jax", "TF_CPP_MIN_LOG_LEVEL": "3"}
    proc = subprocess.run([sys.executable, "-c", code, str(tmp_path / "m.keras"), str(tmp_path / "x.npy"), str(tmp_path / "h.npy")],
                          check=False, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    np.testing.assert_allclose(np.load(tmp_path / "h.npy"), explain(clf, x, class_index=[0, 1, 2]), atol=1e-4)


@pytest.mark.parametrize("backbone", ["resnet18", "resnet50v2", "resnet8"])
def test_the_target_layer_comes_from_the_backbone_table(backbone):
    from resnet_tl.inference.gradcam import target_layer
    from resnet_tl.models.backbones import BACKBONES, stage_of
    from resnet_tl.models.classifier import backbone_of

    clf = _classifier(backbone, 32)
    layer = target_layer(clf)
    spec = BACKBONES[backbone]
    assert stage_of(layer.name, spec) == spec.stages[-1] and layer is backbone_of(clf).layers[-1]
