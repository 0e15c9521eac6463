"""Saved Keras models: the one loader, the float32 copy converters need, and the legacy layer old runs hold.

`load_keras_model(path)` reads any ``.keras`` file resnet-tl wrote, in safe
mode (no code runs from the file), uncompiled; runs written before the
portable `preprocess` hold the custom `Preprocess` layer registered here.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np

from resnet_tl.errors import UserError, one_line
from resnet_tl.kerasenv import keras_module

keras = keras_module()
from keras import layers, ops  # noqa: E402

from resnet_tl.models.classifier import CAFFE_MEAN_BGR, IMAGENET_MEAN_RGB, IMAGENET_STD_RGB  # noqa: E402


def load_keras_model(path: str | Path):
    """A .keras file as a Keras model: safe mode (no code runs from the file), not compiled.

    A file that is not one is a UserError naming it and what is wrong (Keras
    itself says "File not found" of a file that exists but is no zip archive).
    """
    p = Path(path)
    if not p.is_file():
        raise UserError(f"model '{p}': no such file")
    if not zipfile.is_zipfile(p):
        raise UserError(f"model '{p}': not a Keras archive (a .keras file is a zip archive; this one is corrupt, "
                        "truncated or another format)")
    try:
        return keras.saving.load_model(str(p), safe_mode=True, compile=False)
    except Exception as e:  # noqa: BLE001 - whatever the file holds, the user gets one line
        if "safe_mode" in str(e):
            raise UserError(f"model '{p}': refused by Keras safe mode: it holds code that would run when loaded "
                            f"({one_line(e, 160)}); allowed: a model of built-in layers, as resnet-tl saves") from None
        raise UserError(f"model '{p}': not a loadable Keras model ({type(e).__name__}: {one_line(e, 200)})") from None


def float32_copy(model):
    """`model` itself when every layer computes in float32; else a copy of it (same config, same
    weights) under the float32 policy: the TFLite, ONNX and OpenVINO converters need float32 compute."""
    if all(layer.dtype_policy.compute_dtype == "float32" for layer in _leaf_layers(model)):
        return model
    config = _as_float32(keras.saving.serialize_keras_object(model))
    copy = keras.saving.deserialize_keras_object(config)
    copy.set_weights([np.asarray(w, np.float32) for w in model.get_weights()])
    return copy


def _as_float32(node):
    # Every layer's dtype policy is serialised as a DTypePolicy object; mixed ones become float32.
    if isinstance(node, dict):
        if node.get("class_name") in ("DTypePolicy", "FloatDTypePolicy") and isinstance(node.get("config"), dict):
            return {**node, "config": {**node["config"], "name": "float32"}}
        return {k: _as_float32(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_as_float32(v) for v in node]
    return node


def _leaf_layers(model):
    for layer in model.layers:
        yield from (_leaf_layers(layer) if hasattr(layer, "layers") and layer.layers else [layer])


@keras.saving.register_keras_serializable(package="resnet_tl")
class Preprocess(layers.Layer):
    """The custom layer run folders written before the portable `preprocess` hold; kept so they still load.

    New models use `preprocess` (built-in layers only).

    modes: ``caffe`` (Keras ResNet v1: RGB->BGR, minus ImageNet mean),
    ``tf`` (ResNet v2: to -1..1), ``torch`` (to 0..1, minus mean, over std).
    Computes in float32 whatever the global precision policy.
    """

    def __init__(self, mode: str, **kwargs):
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)
        if mode not in ("caffe", "tf", "torch"):
            raise ValueError(f"Preprocess mode: received {mode!r}; allowed: caffe, tf, torch")
        self.mode = mode

    def call(self, x):
        x = ops.cast(x, "float32")
        if self.mode == "tf":
            return x / 127.5 - 1.0
        if self.mode == "caffe":
            x = ops.flip(x, axis=-1)
            return x - ops.convert_to_tensor(CAFFE_MEAN_BGR, dtype="float32")
        mean = ops.convert_to_tensor(IMAGENET_MEAN_RGB, dtype="float32") * 255.0
        std = ops.convert_to_tensor(IMAGENET_STD_RGB, dtype="float32") * 255.0
        return (x - mean) / std

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "mode": self.mode}
