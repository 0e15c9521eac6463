"""Grad-CAM (Selvaraju et al. 2017) for the classifiers resnet-tl saves, under TensorFlow and JAX.

    heatmaps = explain(classifier, pixels)           # uint8/float (N, S, S, 3) 0..255 -> (N, S, S) in [0, 1]

The target layer is the output of the backbone's last stage (``spec.stages[-1]`` of the
backbone table), the feature map A (N, h, w, C) the head pools. The class score is the
head's logit (before the softmax, as the paper does: probabilities saturate). Its gradient
flows through the pooling and the head only, so the backbone runs once, as a compiled
forward pass, and Grad-CAM costs little more than a prediction:

    alpha_c = mean over (h, w) of d logit_c / d A        (N, C)
    map     = relu(sum_c alpha_c * A_c) / max            (N, h, w), bilinearly resized to S x S
"""

from __future__ import annotations

import numpy as np

from resnet_tl.kerasenv import keras_module
from resnet_tl.models.backbones import BACKBONES, stage_of
from resnet_tl.models.batched import predict_batched
from resnet_tl.models.classifier import backbone_of, head_of

keras = keras_module()
from keras import ops


def target_layer(classifier: keras.Model):
    """The backbone layer whose output Grad-CAM weighs: the last layer of the last stage in the table."""
    backbone = backbone_of(classifier)
    spec = BACKBONES[backbone.name]
    last = spec.stages[-1]
    for layer in reversed(backbone.layers):
        if not layer.name.startswith("input") and stage_of(layer.name, spec) == last:
            return layer
    raise ValueError(f"backbone '{backbone.name}' has no layer of its last stage {last}")


class GradCam:
    """Grad-CAM of one classifier, its sub-models built once (reuse it over many batches)."""

    def __init__(self, classifier: keras.Model):
        self.classifier = classifier
        backbone = backbone_of(classifier)
        layer = target_layer(classifier)
        if layer.output is not backbone.output:  # the table and the builder disagree: say so, never guess
            raise ValueError(f"backbone '{backbone.name}': last-stage layer {layer.name} is not its output")
        # The backbone's output inside the classifier graph is what the head pools: pixels -> A.
        self.pool = classifier.get_layer("head_pool")
        self.features = keras.Model(classifier.input, self.pool.input, name="gradcam_features")
        head = head_of(classifier)
        self.logits = keras.Model(head.input, head.get_layer("head_logits").output, name="gradcam_logits")
        self.probs = head
        self.size = int(classifier.input.shape[1])

        def score(a, onehot):
            # Sum over the batch: image i's logit depends on its own map only (no batch statistics in the head).
            return ops.sum(self.logits(self.pool(a), training=False) * onehot)

        self.grad = compiled_gradient(score)

    def __call__(self, images, class_index=None, batch_size: int = 32) -> tuple[np.ndarray, np.ndarray]:
        """(heatmaps (N, S, S) float32 in [0, 1], probabilities (N, classes) float32).

        class_index: None (each image's predicted class), an int (that class for every
        image) or a sequence of N ints.
        """
        fmap = predict_batched(self.features, images, batch_size)  # (N, h, w, C) float32
        # The head is small: one eager call, not a compiled function traced for one more shape.
        probs = np.asarray(ops.convert_to_numpy(self.probs(self.pool(fmap), training=False)), dtype="float32")
        if class_index is None:
            classes = probs.argmax(axis=1) if len(fmap) else np.zeros(0, int)
        else:
            classes = np.broadcast_to(np.asarray(class_index, dtype=np.int64), (len(fmap),))
        maps = [self.maps(fmap[i:i + batch_size], classes[i:i + batch_size]) for i in range(0, len(fmap), batch_size)]
        low = np.concatenate(maps) if maps else np.zeros((0, *fmap.shape[1:3]), "float32")
        return upsample(low, self.size), probs

    def maps(self, fmap: np.ndarray, classes: np.ndarray) -> np.ndarray:
        """Grad-CAM at feature-map resolution (n, h, w) float32 in [0, 1] for feature maps (n, h, w, C)."""
        onehot = np.eye(int(self.logits.output.shape[-1]), dtype="float32")[classes]
        grads = np.asarray(self.grad(fmap, onehot), dtype="float32")
        alpha = grads.mean(axis=(1, 2))  # (n, C)
        cam = np.maximum(np.einsum("nhwc,nc->nhw", fmap, alpha), 0.0)
        peak = cam.max(axis=(1, 2), keepdims=True)
        return np.where(peak > 0, cam / np.where(peak > 0, peak, 1.0), 0.0).astype("float32")


def explain(model: keras.Model, images, class_index=None, batch_size: int = 32) -> np.ndarray:
    """Grad-CAM heatmaps (N, S, S) float32 in [0, 1] of a classifier from `build_classifier` (or its .keras file).

    images: pixels 0..255, (N, S, S, 3), S the model's input size.
    class_index: None (the predicted class), an int, or N ints.
    """
    return GradCam(model)(images, class_index, batch_size)[0]


def upsample(maps: np.ndarray, size: int) -> np.ndarray:
    """(N, h, w) -> (N, size, size) by bilinear resizing (half-pixel centres), clipped to [0, 1]."""
    if not len(maps):
        return np.zeros((0, size, size), "float32")
    big = ops.image.resize(maps[..., None], (size, size), interpolation="bilinear", antialias=False)
    return np.clip(np.asarray(ops.convert_to_numpy(big))[..., 0], 0.0, 1.0).astype("float32")


def compiled_gradient(fn):
    """(x, c) -> d fn(x, c) / d x for a scalar function, with the backend's own autodiff, compiled
    once (tf.function, jax.jit; eager under torch): an eager tape per batch costs more than the
    forward pass of a small backbone."""
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        @tf.function(reduce_retracing=True)
        def grad(x, c):
            with tf.GradientTape() as tape:
                tape.watch(x)
                y = fn(x, c)
            return tape.gradient(y, x)

        return lambda x, c: grad(tf.convert_to_tensor(x), tf.convert_to_tensor(c)).numpy()
    if backend == "jax":
        import jax

        grad = jax.jit(jax.grad(fn))
        return lambda x, c: np.asarray(grad(x, c))
    if backend == "torch":
        import torch

        def grad(x, c):
            xt = torch.tensor(x, requires_grad=True)
            (g,) = torch.autograd.grad(fn(xt, torch.tensor(c)), xt)
            return g.detach().cpu().numpy()

        return grad
    raise ValueError(f"Grad-CAM: Keras backend {backend!r}; allowed: tensorflow, jax, torch")
