"""Build the backbones of the table: one builder function per family, and weight files.

`build_backbone(name, image_size, weights)` returns the headless ``keras.Model``
described in `resnet_tl.models.backbones` (its docstring states the contract).
A new family is a builder here plus its fixed fields in the table module.

Only ``keras``, ``keras.layers`` and ``keras.saving`` are used, so the module
runs under the TensorFlow and JAX backends alike.
"""

from __future__ import annotations

import warnings
from pathlib import Path

from resnet_tl.errors import UserError, one_line
from resnet_tl.kerasenv import keras_module
from resnet_tl.models import pretrained
from resnet_tl.models.backbones import BACKBONES, BackboneSpec, names, spec_of
from resnet_tl.models.fetch import imagenet_unavailable
from resnet_tl.models.weights import parse_weights

keras = keras_module()
from keras import layers  # noqa: E402


# ------------------------------------------------------------------ public API
def build_backbone(name: str, image_size: int, weights: str = "none") -> keras.Model:
    """Headless feature extractor: (B, image_size, image_size, 3) -> (B, h, w, C).

    weights: any ``model.weights`` value (`resnet_tl.models.weights`): "none"
    (random init, seeded by keras.utils.set_random_seed), "imagenet" (Keras's
    own hash-checked download; keras.applications families only), a Keras
    weights file, or a timm/torchvision checkpoint (read and checked before the
    backbone is built; the report of its tensors is shown once as a warning).
    """
    spec = spec_of(name)
    if image_size < spec.min_size:
        raise UserError(f"data.image_size: received {image_size} for backbone '{name}'; allowed: >= {spec.min_size}")
    w = parse_weights(weights)
    if w.kind == "imagenet":
        if not spec.imagenet:
            with_weights = ", ".join(names(lambda s: s.imagenet))
            raise UserError(
                f"model.weights: received 'imagenet' for backbone '{name}'; allowed: none or a weights file "
                f"(Keras ships ImageNet weights only for {with_weights})"
            )
        return _imagenet_backbone(spec, image_size)
    groups = None
    if w.torch_checkpoint:  # read and checked before minutes of building a large model
        groups, report = pretrained.backbone_tensors(weights, name)
    model = _FAMILY_BUILDERS[spec.family](spec, image_size)
    if groups is not None:
        pretrained.assign(model, groups)
        warnings.warn(report.summary(), stacklevel=2)
    elif w.kind == "keras_file":
        _load_weights_file(model, spec, w.path)
    return model


def reference_classifier(name: str, classes: int = 1000, image_size: int = 224) -> keras.Model:
    """Backbone + global average pooling + Dense(classes): the published layout, for parameter counts."""
    backbone = build_backbone(name, image_size)
    inputs = keras.Input((image_size, image_size, 3))
    x = layers.GlobalAveragePooling2D(name="avg_pool")(backbone(inputs))
    outputs = layers.Dense(classes, name="predictions")(x)
    return keras.Model(inputs, outputs, name=f"{name}_classifier")


# -------------------------------------------------------- keras.applications
def _keras_application(spec: BackboneSpec, image_size: int, weights: str | None = None) -> keras.Model:
    constructor = getattr(keras.applications, spec.keras_application)
    model = constructor(include_top=False, weights=weights, input_shape=(image_size, image_size, 3), name=spec.name)
    if spec.family == "keras_v2":
        _name_v2_shortcut_pools(model, spec)
    return model


def _name_v2_shortcut_pools(model: keras.Model, spec: BackboneSpec) -> None:
    # keras.applications leaves the 1x1 max-pool shortcut of the strided last
    # block of conv2..conv4 unnamed ("max_pooling2d_7"), which no stage could
    # claim. The pools have no weights, so renaming them changes nothing else;
    # layers are in topological order, so the k-th pool is conv{k+2}'s.
    pools = [
        layer for layer in model.layers
        if isinstance(layer, layers.MaxPooling2D) and not layer.name.startswith(("pool1_", "conv"))
    ]
    blocks = [f"conv{stage}_block{depth}" for stage, depth in zip(range(2, 5), spec.depths)]
    if len(pools) == len(blocks):
        for pool, block in zip(pools, blocks):
            pool.name = f"{block}_0_pool"


def _imagenet_backbone(spec: BackboneSpec, image_size: int) -> keras.Model:
    try:
        return _keras_application(spec, image_size, weights="imagenet")
    except Exception as exc:
        # keras.utils.get_file re-raises urllib errors as a bare Exception
        # ("URL fetch failure on <url>: ...") and a bad hash as ValueError.
        text = str(exc)
        offline = "URL fetch failure" in text or isinstance(exc, OSError) or isinstance(exc.__context__, OSError)
        if not (offline or "file hash does not match" in text):
            raise
        raise imagenet_unavailable(spec.name, one_line(exc)) from exc


# ------------------------------------------------- basic-block ResNets (ours)
def _torchvision_resnet(spec: BackboneSpec, image_size: int) -> keras.Model:
    """ResNet-18/34 and v1.5 ResNet-50/101/152, torchvision layout: 7x7/2 conv, 3x3/2 max-pool, 4 stages."""
    inputs = keras.Input((image_size, image_size, 3))
    # Explicit symmetric padding, as in torchvision and keras.applications
    # ("same" pads strided convs on the bottom/right only).
    x = layers.ZeroPadding2D(3, name="conv1_pad")(inputs)
    x = _conv(64, 7, 2, "conv1_conv")(x)
    x = _batchnorm("conv1_bn")(x)
    x = layers.Activation("relu", name="conv1_relu")(x)
    x = layers.ZeroPadding2D(1, name="pool1_pad")(x)
    x = layers.MaxPooling2D(3, strides=2, name="pool1_pool")(x)
    block = _bottleneck_block if spec.family == "torch_v1.5" else _basic_block
    x = _stages(x, spec.depths, filters=(64, 128, 256, 512), block=block)
    return keras.Model(inputs, x, name=spec.name)


def _cifar_resnet(spec: BackboneSpec, image_size: int) -> keras.Model:
    """CIFAR ResNet-6n+2 (paper section 4.2): 3x3 conv 16, stages of 16/32/64 filters,
    parameter-free shortcuts (option A), hence the paper's Table 6 counts."""
    inputs = keras.Input((image_size, image_size, 3))
    x = _conv(16, 3, 1, "conv1_conv", padding="same")(inputs)
    x = _batchnorm("conv1_bn")(x)
    x = layers.Activation("relu", name="conv1_relu")(x)
    x = _stages(x, spec.depths, filters=(16, 32, 64), block=_cifar_block)
    return keras.Model(inputs, x, name=spec.name)


def _stages(x, depths: tuple[int, ...], filters: tuple[int, ...], block=None):
    # The first stage keeps the resolution (the stem already downsampled);
    # every later one halves it in its first block.
    for index, (blocks, width) in enumerate(zip(depths, filters)):
        stage = f"conv{index + 2}"
        for index_in_stage in range(1, blocks + 1):
            stride = 2 if index > 0 and index_in_stage == 1 else 1
            x = (block or _basic_block)(x, width, stride, name=f"{stage}_block{index_in_stage}")
    return x


def _cifar_block(x, filters: int, stride: int, name: str):
    return _basic_block(x, filters, stride, name, shortcut=_zero_pad_shortcut)


def _basic_block(x, filters: int, stride: int, name: str, shortcut=None):
    """Two 3x3 convs + shortcut; `shortcut(x, filters, stride, name)` where the shape changes
    (default: the 1x1 projection, option B)."""
    shortcut = shortcut or _projection_shortcut
    residual = shortcut(x, filters, stride, name) if stride != 1 or x.shape[-1] != filters else x
    if stride == 1:
        x = _conv(filters, 3, 1, f"{name}_1_conv", padding="same")(x)
    else:
        x = layers.ZeroPadding2D(1, name=f"{name}_1_pad")(x)
        x = _conv(filters, 3, stride, f"{name}_1_conv")(x)
    x = _batchnorm(f"{name}_1_bn")(x)
    x = layers.Activation("relu", name=f"{name}_1_relu")(x)
    x = _conv(filters, 3, 1, f"{name}_2_conv", padding="same")(x)
    x = _batchnorm(f"{name}_2_bn")(x)
    x = layers.Add(name=f"{name}_add")([residual, x])
    return layers.Activation("relu", name=f"{name}_out")(x)


def _bottleneck_block(x, width: int, stride: int, name: str):
    """v1.5 bottleneck (torchvision): 1x1 width, 3x3 width with the stride, 1x1 4*width; projection shortcut where the shape changes."""
    filters = 4 * width
    if stride != 1 or x.shape[-1] != filters:
        shortcut = _conv(filters, 1, stride, f"{name}_0_conv")(x)
        shortcut = _batchnorm(f"{name}_0_bn")(shortcut)
    else:
        shortcut = x
    x = _conv(width, 1, 1, f"{name}_1_conv")(x)
    x = _batchnorm(f"{name}_1_bn")(x)
    x = layers.Activation("relu", name=f"{name}_1_relu")(x)
    if stride == 1:
        x = _conv(width, 3, 1, f"{name}_2_conv", padding="same")(x)
    else:
        x = layers.ZeroPadding2D(1, name=f"{name}_2_pad")(x)
        x = _conv(width, 3, stride, f"{name}_2_conv")(x)
    x = _batchnorm(f"{name}_2_bn")(x)
    x = layers.Activation("relu", name=f"{name}_2_relu")(x)
    x = _conv(filters, 1, 1, f"{name}_3_conv")(x)
    x = _batchnorm(f"{name}_3_bn")(x)
    x = layers.Add(name=f"{name}_add")([shortcut, x])
    return layers.Activation("relu", name=f"{name}_out")(x)


def _projection_shortcut(x, filters: int, stride: int, name: str):
    """Option B (torchvision, ImageNet): 1x1 conv + BatchNorm."""
    x = _conv(filters, 1, stride, f"{name}_0_conv")(x)
    return _batchnorm(f"{name}_0_bn")(x)


def _zero_pad_shortcut(x, filters: int, stride: int, name: str):
    """Option A (He et al. 2016, CIFAR): identity, subsampled by `stride`, new channels zero. No parameters.

    Built from stock Keras layers only, so saved models load without resnet-tl:
    a 1x1 max-pool with a stride takes every stride-th pixel, and the channel
    axis is padded as the width axis of a (h*w, C, 1) view, half the new
    channels on each side (as the reference implementations do).
    """
    h, w, c = x.shape[1:]
    if stride != 1:
        x = layers.MaxPooling2D(1, strides=stride, name=f"{name}_0_pool")(x)
        h, w = x.shape[1:3]
    extra = filters - c
    x = layers.Reshape((h * w, c, 1), name=f"{name}_0_flat")(x)
    x = layers.ZeroPadding2D(((0, 0), (extra // 2, extra - extra // 2)), name=f"{name}_0_pad")(x)
    return layers.Reshape((h, w, filters), name=f"{name}_0_unflat")(x)


def _conv(filters: int, size: int, stride: int, name: str, padding: str = "valid") -> layers.Conv2D:
    # No bias: the BatchNorm after every conv has its own offset (torchvision).
    return layers.Conv2D(
        filters, size, strides=stride, padding=padding, use_bias=False, kernel_initializer="he_normal", name=name
    )


def _batchnorm(name: str) -> layers.BatchNormalization:
    # torchvision's defaults: eps 1e-5, running-stat momentum 0.1 (Keras 0.9).
    return layers.BatchNormalization(epsilon=1e-5, momentum=0.9, name=name)


_FAMILY_BUILDERS = {
    "keras_v1": _keras_application,
    "keras_v2": _keras_application,
    "basic": _torchvision_resnet,
    "torch_v1.5": _torchvision_resnet,
    "cifar": _cifar_resnet,
}


# ------------------------------------------------------------- weight files
def _load_weights_file(model: keras.Model, spec: BackboneSpec, path: Path) -> None:
    """Fill ``model`` from a .weights.h5, a .keras or a legacy .h5 file; UserError if it does not fit."""
    if not path.is_file():
        raise UserError(f"model.weights: no such file: '{path}'; allowed: none, imagenet or a weights file")
    if not path.name.endswith((".weights.h5", ".keras", ".h5")):
        raise UserError(f"model.weights: received '{path}'; allowed: a .weights.h5, .keras or .h5 file")
    # A failed load makes Keras warn once per layer before it raises; the
    # UserError says it all, so warnings are shown only after a success.
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            if _holds_whole_model(path):
                _copy_from_saved_model(model, spec, path)
            else:
                # By topology: what backbone.save_weights and Keras's own
                # *_notop.h5 files hold. (by_name would leave unmatched
                # layers silently random, so it is not used.)
                model.load_weights(path)
        except UserError:
            raise
        except (ValueError, KeyError, TypeError, OSError) as exc:
            raise UserError(
                f"model.weights: could not load '{path}' into backbone '{spec.name}': {one_line(exc)}"
            ) from exc
    for w in caught:
        warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)


def _holds_whole_model(path: Path) -> bool:
    if path.name.endswith(".keras"):
        return True
    if path.name.endswith(".weights.h5"):
        return False
    import h5py  # a Keras dependency; only legacy .h5 files need it

    with h5py.File(path, "r") as f:
        return "model_config" in f.attrs  # written by model.save("x.h5")


def _copy_from_saved_model(model: keras.Model, spec: BackboneSpec, path: Path) -> None:
    saved = keras.saving.load_model(path, compile=False, safe_mode=True)
    source = _find_layer(saved, spec.name)
    if source is None:
        held = [name for name in BACKBONES if _find_layer(saved, name) is not None]
        what = f"backbone '{held[0]}'" if held else f"model '{saved.name}' with no known backbone inside"
        raise UserError(
            f"model.weights: '{path}' holds {what}, not backbone '{spec.name}'; "
            f"allowed: a saved '{spec.name}' backbone or a model that contains one"
        )
    theirs, ours = source.weights, model.weights
    # Shapes alone could match by accident; layer/variable names make it certain.
    if [(_short_path(v), tuple(v.shape)) for v in theirs] != [(_short_path(v), tuple(v.shape)) for v in ours]:
        raise UserError(
            f"model.weights: '{path}' holds a '{spec.name}' whose variables differ from backbone '{spec.name}' "
            f"({len(theirs)} vs {len(ours)} variables)"
        )
    model.set_weights(source.get_weights())


def _find_layer(model: keras.Model, name: str):
    """``model`` itself or a (nested) layer of it named ``name``; None if absent."""
    if model.name == name:
        return model
    for layer in getattr(model, "layers", []):
        found = _find_layer(layer, name)
        if found is not None:
            return found
    return None


def _short_path(variable) -> str:
    # "resnet18/conv1_conv/kernel" and "conv1_conv/kernel" name the same variable.
    return "/".join(variable.path.split("/")[-2:])

