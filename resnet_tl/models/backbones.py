"""The backbone table: every ResNet variant as a row of data.

Variants are data (``BACKBONES``), families are functions (their builders are
in `resnet_tl.models.resnets`). Adding a variant of a known family is one row
here (and its published parameter count in the tests); the recipe schema,
``--help``, the errors and the stage names follow from the table.

Every backbone is a headless ``keras.Model`` named after its variant: float32
input of shape (image_size, image_size, 3), already preprocessed (see
``BackboneSpec``), and output the last feature map (B, h, w, C), channels last.
Layer names follow keras.applications (``conv1_conv``, ``conv4_block3_2_bn``,
...) for every family, so ``stage_of`` and one freezing schedule address every
backbone. This module imports no Keras: the recipe schema reads the table.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from resnet_tl.errors import UserError

Family = Literal["keras_v1", "keras_v2", "basic", "torch_v1.5", "cifar"]
Preprocessing = Literal["caffe", "tf", "torch"]


@dataclass(frozen=True)
class BackboneSpec:
    """One ResNet variant.

    preprocessing: what the model must do to 0..255 RGB pixels before the
      backbone. "caffe": RGB->BGR, then subtract the ImageNet mean
      (103.939, 116.779, 123.68); "tf": x / 127.5 - 1; "torch": x / 255, then
      (x - (0.485, 0.456, 0.406)) / (0.229, 0.224, 0.225).
    keras_application: the keras.applications constructor that builds it (and
      whose ImageNet weights Keras ships), or None for the families we build.
    torch_layout: its tensors map one to one onto a timm/torchvision ResNet
      checkpoint (`resnet_tl.models.pretrained`).
    bottleneck: 1x1-3x3-1x1 blocks (else two 3x3 convs).
    min_size: smallest input side (px) the backbone accepts.
    feature_channels: C of the output feature map.
    """

    name: str
    family: Family
    depths: tuple[int, ...]  # residual blocks per stage, conv2 first
    preprocessing: Preprocessing
    stages: tuple[str, ...]  # stem first, then conv2, conv3, ...
    keras_application: str | None
    torch_layout: bool
    bottleneck: bool
    min_size: int
    feature_channels: int

    @property
    def imagenet(self) -> bool:
        """Keras ships ImageNet weights for it (``model.weights: imagenet``)."""
        return self.keras_application is not None


_IMAGENET_STAGES = ("stem", "conv2", "conv3", "conv4", "conv5")
_CIFAR_STAGES = ("stem", "conv2", "conv3", "conv4")

# What a family fixes; a variant adds its name and depths. keras.applications
# refuses inputs below 32 px (total stride 32); the CIFAR nets have total
# stride 4, so 8 px still leaves a 2x2 feature map.
_FAMILY_FIELDS: dict[str, dict] = {
    "keras_v1": dict(preprocessing="caffe", stages=_IMAGENET_STAGES, torch_layout=False, bottleneck=True, min_size=32, feature_channels=2048),
    "keras_v2": dict(preprocessing="tf", stages=_IMAGENET_STAGES, torch_layout=False, bottleneck=True, min_size=32, feature_channels=2048),
    "basic": dict(preprocessing="torch", stages=_IMAGENET_STAGES, torch_layout=True, bottleneck=False, min_size=32, feature_channels=512),
    "torch_v1.5": dict(preprocessing="torch", stages=_IMAGENET_STAGES, torch_layout=True, bottleneck=True, min_size=32, feature_channels=2048),
    "cifar": dict(preprocessing="torch", stages=_CIFAR_STAGES, torch_layout=False, bottleneck=False, min_size=8, feature_channels=64),
}
_KERAS_FAMILIES = ("keras_v1", "keras_v2")


def _variant(name: str, family: Family, depths: tuple[int, ...]) -> BackboneSpec:
    # keras.applications names its constructors after the variant: resnet50v2 -> ResNet50V2.
    app = "ResNet" + name.removeprefix("resnet").upper() if family in _KERAS_FAMILIES else None
    return BackboneSpec(name=name, family=family, depths=depths, keras_application=app, **_FAMILY_FIELDS[family])


BACKBONES: dict[str, BackboneSpec] = {
    s.name: s
    for s in (
        # He et al. 2016, Table 1 (ImageNet).
        _variant("resnet18", "basic", (2, 2, 2, 2)),
        _variant("resnet34", "basic", (3, 4, 6, 3)),
        _variant("resnet50", "keras_v1", (3, 4, 6, 3)),
        _variant("resnet101", "keras_v1", (3, 4, 23, 3)),
        _variant("resnet152", "keras_v1", (3, 8, 36, 3)),
        _variant("resnet50v2", "keras_v2", (3, 4, 6, 3)),
        _variant("resnet101v2", "keras_v2", (3, 4, 23, 3)),
        _variant("resnet152v2", "keras_v2", (3, 8, 36, 3)),
        # torchvision/timm's bottleneck ResNets ("v1.5"): the stride sits on
        # the 3x3 conv, not on the first 1x1 as in keras.applications' v1.
        # Same parameter count, different function: weights do not transfer.
        _variant("resnet50v1.5", "torch_v1.5", (3, 4, 6, 3)),
        _variant("resnet101v1.5", "torch_v1.5", (3, 4, 23, 3)),
        _variant("resnet152v1.5", "torch_v1.5", (3, 8, 36, 3)),
        # He et al. 2016, section 4.2 (CIFAR-10): depth = 6n + 2. The paper's
        # table starts at n = 3; n = 1 (75k parameters) is the family's
        # smallest member, for microcontroller-sized models and fast tests.
        _variant("resnet8", "cifar", (1, 1, 1)),
        _variant("resnet20", "cifar", (3, 3, 3)),
        _variant("resnet32", "cifar", (5, 5, 5)),
        _variant("resnet44", "cifar", (7, 7, 7)),
        _variant("resnet56", "cifar", (9, 9, 9)),
        _variant("resnet110", "cifar", (18, 18, 18)),
    )
}


def stage_of(layer_name: str, spec: BackboneSpec) -> str:
    """The stage ("stem", "conv2", ...) a backbone layer belongs to."""
    if layer_name.startswith(("input", "conv1_", "pool1_")):
        return "stem"
    # ResNetV2 normalises the last stage's output after its final block.
    if spec.family == "keras_v2" and layer_name in ("post_bn", "post_relu"):
        return spec.stages[-1]
    match = re.match(r"(conv\d+)_", layer_name)
    if match and match.group(1) in spec.stages:
        return match.group(1)
    raise ValueError(f"layer '{layer_name}' belongs to no stage of {spec.name}; stages: {', '.join(spec.stages)}")


def spec_of(name: str) -> BackboneSpec:
    """The row of `name`; UserError naming the allowed backbones otherwise."""
    if name not in BACKBONES:
        raise UserError(f"model.backbone: received '{name}'; allowed: {', '.join(BACKBONES)}")
    return BACKBONES[name]


def names(where=None) -> list[str]:
    """Backbone names in table order, optionally only those whose spec satisfies `where`."""
    return [n for n, s in BACKBONES.items() if where is None or where(s)]
