"""What a ``model.weights`` value means: the one place that reads the string.

    none                                 random initialisation (seeded by train.seed)
    imagenet                             Keras's own ImageNet download (keras.applications backbones)
    hf://<org>/<model>                   a timm/torchvision checkpoint on the Hugging Face Hub
    PATH.safetensors, PATH.pth, PATH.pt  a timm/torchvision checkpoint file
    any other PATH                       Keras weights: .weights.h5, a .keras model holding the backbone, legacy .h5

Checking that a file exists and fits is left to the loaders (`resnet_tl.models.resnets`,
`resnet_tl.models.pretrained`), which name the file in their errors.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

HF_PREFIX = "hf://"
CHECKPOINT_SUFFIXES = (".safetensors", ".pth", ".pt")
KERAS_SUFFIXES = (".weights.h5", ".keras", ".h5")

Kind = Literal["none", "imagenet", "hub", "checkpoint", "keras_file"]


@dataclass(frozen=True)
class Weights:
    """A parsed ``model.weights`` value. ref: the value as given."""

    kind: Kind
    ref: str

    @property
    def pretrained(self) -> bool:
        """Anything but random initialisation."""
        return self.kind != "none"

    @property
    def downloads(self) -> bool:
        """Fetched from the network on first use (Keras's ImageNet files, the Hugging Face Hub)."""
        return self.kind in ("imagenet", "hub")

    @property
    def torch_checkpoint(self) -> bool:
        """A timm/torchvision state dict (a file, or on the Hub), read by `resnet_tl.models.pretrained`."""
        return self.kind in ("hub", "checkpoint")

    @property
    def path(self) -> Path | None:
        """The local file, for the kinds that name one."""
        return Path(self.ref).expanduser() if self.kind in ("checkpoint", "keras_file") else None


def parse_weights(value: str) -> Weights:
    """The meaning of a ``model.weights`` string (see the module docstring)."""
    if value in ("none", "imagenet"):
        return Weights(value, value)
    if value.startswith(HF_PREFIX):
        return Weights("hub", value)
    if value.lower().endswith(CHECKPOINT_SUFFIXES):
        return Weights("checkpoint", value)
    return Weights("keras_file", value)


def absolute(value: str) -> str:
    """`value` with a local file that exists made absolute (against the current folder), as a run stores it."""
    path = parse_weights(value).path
    return str(path.resolve()) if path is not None and path.is_file() else value
