"""The classifier: raw RGB pixels -> backbone preprocessing -> backbone -> head.

Preprocessing lives inside the model so exported models need none outside:
every model resnet-tl writes takes float pixels 0..255, shape (B, S, S, 3),
and returns class probabilities (B, classes) in float32.

Layer layout of the classifier (names are what schedules and export rely on)::

    image -> preprocess -> <backbone name> -> head_pool -> head
"""

from __future__ import annotations

from typing import Iterable

from resnet_tl.kerasenv import keras_module

keras = keras_module()
from keras import layers, ops  # noqa: E402

from resnet_tl.models.backbones import BACKBONES, stage_of  # noqa: E402
from resnet_tl.models.resnets import build_backbone  # noqa: E402
from resnet_tl.recipe import HeadConfig, ModelConfig  # noqa: E402

IMAGENET_MEAN_RGB = (0.485, 0.456, 0.406)
IMAGENET_STD_RGB = (0.229, 0.224, 0.225)
CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)


def preprocess(x, mode: str):
    """A backbone's own input normalisation of pixels 0..255 (B, H, W, 3) RGB, in built-in Keras parts only.

    modes: ``caffe`` (Keras ResNet v1: RGB->BGR, minus ImageNet mean),
    ``tf`` (ResNet v2: to -1..1), ``torch`` (to 0..1, minus mean, over std).
    Built-in layers and ops (no class of ours), so a saved classifier loads with
    plain ``keras.saving.load_model`` where resnet_tl is not installed. The
    constants are constructor arguments, not weights: weight lists stay as they
    were with the legacy `resnet_tl.models.saving.Preprocess`. Computes in float32 whatever the global policy.
    """
    if mode == "tf":
        scale, offset = 1.0 / 127.5, -1.0
    elif mode == "caffe":
        x = ops.flip(x, axis=-1)  # saved as keras' own Flip op, loads in safe mode
        scale, offset = 1.0, [-m for m in CAFFE_MEAN_BGR]
    elif mode == "torch":  # (x/255 - mean) / std, per channel
        scale = [1.0 / (255.0 * s) for s in IMAGENET_STD_RGB]
        offset = [-m / s for m, s in zip(IMAGENET_MEAN_RGB, IMAGENET_STD_RGB)]
    else:
        raise ValueError(f"preprocess mode: received {mode!r}; allowed: caffe, tf, torch")
    # Rescaling, not Normalization: its constants are made inside the graph, where
    # Normalization's are captured tensors that tf2onnx turns into extra model inputs.
    return layers.Rescaling(scale, offset=offset, dtype="float32", name="preprocess")(x)


def build_head(num_features: int, num_classes: int, cfg: HeadConfig) -> "keras.Model":
    """Pooled features (B, num_features) -> probabilities (B, num_classes), float32 out.

    A model of its own so a head-only phase can train it on cached features.
    """
    inputs = keras.Input((num_features,), name="features")
    x = inputs
    for i, units in enumerate(cfg.hidden):
        if cfg.dropout:
            x = layers.Dropout(cfg.dropout, name=f"head_dropout{i}")(x)
        x = layers.Dense(units, activation="relu", name=f"head_dense{i}")(x)
    if cfg.dropout:
        x = layers.Dropout(cfg.dropout, name="head_dropout")(x)
    x = layers.Dense(num_classes, name="head_logits")(x)
    # Softmax in float32: under mixed precision float16 probabilities underflow.
    outputs = layers.Activation("softmax", dtype="float32", name="head_probs")(x)
    return keras.Model(inputs, outputs, name="head")


def build_classifier(cfg: ModelConfig, num_classes: int, image_size: int) -> "keras.Model":
    """Pixels (B, S, S, 3) float 0..255 -> class probabilities (B, num_classes)."""
    spec = BACKBONES[cfg.backbone]
    backbone = build_backbone(cfg.backbone, image_size, cfg.weights)
    inputs = keras.Input((image_size, image_size, 3), name="image")
    x = preprocess(inputs, spec.preprocessing)
    x = backbone(x)
    pool = layers.GlobalAveragePooling2D if cfg.head.pooling == "avg" else layers.GlobalMaxPooling2D
    x = pool(name="head_pool")(x)
    head = build_head(int(x.shape[-1]), num_classes, cfg.head)
    return keras.Model(inputs, head(x), name="classifier")


def backbone_of(classifier: "keras.Model") -> "keras.Model":
    """The backbone sub-model of a classifier from `build_classifier` (or a file it saved).

    Found by structure, not by name: the one nested model that is not the head.
    """
    nested = [layer for layer in classifier.layers if isinstance(layer, keras.Model) and layer.name != "head"]
    if len(nested) != 1:
        raise ValueError(f"model '{classifier.name}': expected one backbone sub-model; found {[m.name for m in nested]}")
    return nested[0]


def head_of(classifier: "keras.Model") -> "keras.Model":
    """The head sub-model: pooled features (B, C) -> probabilities (B, classes)."""
    return classifier.get_layer("head")


def parts(classifier: "keras.Model") -> tuple["keras.Model", "keras.Model"]:
    """(backbone, head) of a classifier built by `build_classifier`."""
    return backbone_of(classifier), head_of(classifier)


def feature_extractor(classifier: "keras.Model") -> "keras.Model":
    """Pixels (B, S, S, 3) -> pooled features (B, C): the classifier minus its head."""
    pooled = classifier.get_layer("head_pool").output
    return keras.Model(classifier.input, pooled, name="features")


def stage_layers(classifier: "keras.Model") -> Iterable[tuple[object, str]]:
    """(layer, stage) for every leaf layer of the classifier; the head is stage 'head'."""
    backbone, head = parts(classifier)
    spec = BACKBONES[backbone.name]
    for layer in backbone.layers:
        yield layer, stage_of(layer.name, spec)
    for layer in head.layers:
        yield layer, "head"
