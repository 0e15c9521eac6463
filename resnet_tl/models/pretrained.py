"""Pretrained weights from timm / torchvision ResNet checkpoints.

A checkpoint is a ``.safetensors`` file (read with the ``safetensors`` numpy
API, no torch needed), a ``.pth``/``.pt`` file (read by ``torch.load(...,
weights_only=True)`` when torch is installed; never unpickled otherwise) or an
``hf://<org>/<model>`` reference (``model.safetensors`` of that Hugging Face
repository, fetched by ``huggingface_hub`` into its own cache).

timm and torchvision name the tensors of a plain ResNet the same way; each
maps onto one Keras layer of our backbones (``backbones.py``)::

    conv1.weight                          conv1_conv       (O, I, kh, kw) -> (kh, kw, I, O)
    bn1.{weight,bias,running_mean,running_var}
                                          conv1_bn         gamma, beta, moving_mean, moving_variance
    layer{L}.{i}.conv{k}.weight           conv{L+1}_block{i+1}_{k}_conv
    layer{L}.{i}.bn{k}.*                  conv{L+1}_block{i+1}_{k}_bn
    layer{L}.{i}.downsample.0.weight      conv{L+1}_block{i+1}_0_conv
    layer{L}.{i}.downsample.1.*           conv{L+1}_block{i+1}_0_bn
    fc.weight, fc.bias                    head_logits      (C, F) -> (F, C); only when the classes are kept
    *.num_batches_tracked                 not used (BatchNorm bookkeeping)

Every tensor is loaded or listed, with its reason, in the `LoadReport`; a
tensor we cannot place (an SE module, a deep stem) is an error, because
ignoring it would give a different network.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from resnet_tl.errors import UserError, one_line
from resnet_tl.models.backbones import BACKBONES, names
from resnet_tl.models.fetch import fetch_hf
from resnet_tl.models.weights import CHECKPOINT_SUFFIXES, HF_PREFIX

_BN_FIELDS = ("weight", "bias", "running_mean", "running_var")  # Keras order: gamma, beta, mean, variance


@dataclass
class LoadReport:
    """What happened to every tensor of a checkpoint."""

    source: str
    file: str
    backbone: str
    classes: int | None  # the checkpoint's classifier outputs; None without fc
    loaded: list[str] = field(default_factory=list)
    not_used: dict[str, str] = field(default_factory=dict)  # tensor -> reason

    def by_reason(self) -> dict[str, list[str]]:
        """{reason: tensor names} of the tensors not used."""
        out: dict[str, list[str]] = {}
        for name, reason in self.not_used.items():
            out.setdefault(reason, []).append(name)
        return out

    def to_dict(self) -> dict:
        return {"source": self.source, "file": self.file, "backbone": self.backbone, "classes": self.classes,
                "tensors_loaded": len(self.loaded), "not_used": self.by_reason()}

    def summary(self) -> str:
        """One line: counts, and the unused tensors grouped by reason."""
        parts = [f"{len(names)} not used ({reason}: {_short_list(names)})" for reason, names in self.by_reason().items()]
        return (f"model.weights: {len(self.loaded)} tensors of '{self.source}' loaded into '{self.backbone}'"
                + ("; " + "; ".join(parts) if parts else ""))


# ----------------------------------------------------------------- reading
def read_checkpoint(ref: str) -> tuple[dict[str, np.ndarray], Path]:
    """{tensor name: array} of a checkpoint reference, and the local file it came from."""
    path = fetch_hf(ref) if ref.startswith(HF_PREFIX) else Path(ref).expanduser()
    if not path.is_file():
        raise UserError(f"model.weights: no such file: '{path}'; allowed: none, imagenet, a weights file or a checkpoint")
    suffix = path.suffix.lower()
    if suffix == ".safetensors":
        tensors = _read_safetensors(path)
    elif suffix in (".pth", ".pt"):
        tensors = _read_torch(path)
    else:
        raise UserError(f"model.weights: received '{path}'; allowed checkpoints: {', '.join(CHECKPOINT_SUFFIXES)}")
    if not tensors:
        raise UserError(f"model.weights: '{path}' holds no tensors")
    return tensors, path


def _read_safetensors(path: Path) -> dict[str, np.ndarray]:
    try:
        from safetensors.numpy import load_file
    except ImportError:  # a declared dependency; only a broken install lacks it
        raise UserError("model.weights: reading .safetensors needs the safetensors package: pip install safetensors") from None
    try:
        return dict(load_file(str(path)))
    except Exception as exc:  # safetensors raises its own SafetensorError (and TypeError for bf16)
        raise UserError(f"model.weights: '{path}' is not a readable float safetensors file ({one_line(exc, 200)})") from None


def _read_torch(path: Path) -> dict[str, np.ndarray]:
    try:
        import torch
    except ImportError:
        raise UserError(
            f"model.weights: '{path}' is a PyTorch pickle, read only with torch installed (pip install torch); "
            f"or convert it once where torch is: python -c \"import torch, safetensors.torch as s; "
            f"s.save_file(torch.load('{path.name}', weights_only=True), '{path.stem}.safetensors')\""
        ) from None
    try:
        # weights_only: tensors and plain containers only, never arbitrary code.
        obj = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:
        raise UserError(f"model.weights: torch could not read '{path}' with weights_only=True ({one_line(exc, 200)})") from None
    for key in ("state_dict", "model", "model_state_dict"):  # training-script wrappers
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
    if not isinstance(obj, dict):
        raise UserError(f"model.weights: '{path}' holds a {type(obj).__name__}, not a state dict of tensors")
    out = {}
    for name, t in obj.items():
        if hasattr(t, "detach"):
            t = t.detach().cpu()
            out[name] = (t.float() if t.is_floating_point() else t).numpy()
    return out


# ---------------------------------------------------------- architecture
def infer_backbone(tensors: dict[str, np.ndarray]) -> str:
    """Our backbone name for a timm/torchvision ResNet state dict, from its tensor names and block counts."""
    if "conv1.0.weight" in tensors or "conv1.weight" not in tensors and any(k.startswith("stem.") for k in tensors):
        raise UserError("model.weights: the checkpoint has a deep stem (timm's resnet*d / *c / *s variants); "
                        "allowed: plain ResNets (torchvision layout: conv1, bn1, layer1..layer4, fc)")
    if "conv1.weight" not in tensors or "layer1.0.conv1.weight" not in tensors:
        first = ", ".join(list(tensors)[:3])
        raise UserError(f"model.weights: the checkpoint is not a torchvision/timm ResNet (no conv1.weight / layer1.0.conv1.weight; "
                        f"first tensors: {first})")
    depths = []
    for stage in range(1, 5):
        blocks = {int(m.group(1)) for k in tensors if (m := re.match(rf"layer{stage}\.(\d+)\.", k))}
        depths.append(max(blocks) + 1 if blocks else 0)
    bottleneck = "layer1.0.conv3.weight" in tensors
    for name, spec in BACKBONES.items():
        if spec.torch_layout and spec.bottleneck == bottleneck and spec.depths == tuple(depths):
            return name
    kind = "bottleneck" if bottleneck else "basic"
    known = ", ".join(names(lambda s: s.torch_layout))
    raise UserError(f"model.weights: the checkpoint is a {kind}-block ResNet with blocks per stage "
                    f"{'-'.join(map(str, depths))}; allowed: {known}")


def check_backbone(inferred: str, wanted: str, source: str, option: str = "model.backbone") -> None:
    """UserError when the checkpoint's architecture is not the backbone asked for.

    option: how the user chose the backbone: the recipe key (`train`) or "--backbone" (`weights convert`).
    """
    if inferred == wanted:
        return
    hint = ""
    if wanted in ("resnet50", "resnet101", "resnet152") and inferred == wanted + "v1.5":
        hint = (f" (torchvision and timm build v1.5: the stride on the 3x3 conv; '{wanted}' is keras.applications' v1 "
                f"with the stride on the first 1x1 conv, so these weights do not fit it)")
    fix = f"--set model.backbone={inferred}" if option == "model.backbone" else f"{option} {inferred} (or leave it out: inferred)"
    raise UserError(f"{option}: received '{wanted}', but '{source}' holds a '{inferred}'{hint}; allowed: {fix}")


def expected_tensors(backbone: str, classes: int | None = None) -> dict[str, tuple[int, ...]]:
    """{torch tensor name: torch shape} of `backbone` in torchvision's layout (fc only when `classes`)."""
    spec = BACKBONES[backbone]
    if not spec.torch_layout:
        raise UserError(f"model.backbone: received '{backbone}' for a timm/torchvision checkpoint; allowed: "
                        + ", ".join(names(lambda s: s.torch_layout)))
    out: dict[str, tuple[int, ...]] = {}

    def conv(name, o, i, k):
        out[f"{name}.weight"] = (o, i, k, k)

    def bn(name, c):
        for f in _BN_FIELDS:
            out[f"{name}.{f}"] = (c,)
        out[f"{name}.num_batches_tracked"] = ()

    conv("conv1", 64, 3, 7)
    bn("bn1", 64)
    bottleneck = spec.bottleneck
    channels = 64
    for stage, (blocks, width) in enumerate(zip(spec.depths, (64, 128, 256, 512)), start=1):
        planes = 4 * width if bottleneck else width
        for b in range(blocks):
            p = f"layer{stage}.{b}"
            stride = 2 if stage > 1 and b == 0 else 1
            if bottleneck:
                conv(f"{p}.conv1", width, channels, 1); bn(f"{p}.bn1", width)
                conv(f"{p}.conv2", width, width, 3); bn(f"{p}.bn2", width)
                conv(f"{p}.conv3", planes, width, 1); bn(f"{p}.bn3", planes)
            else:
                conv(f"{p}.conv1", width, channels, 3); bn(f"{p}.bn1", width)
                conv(f"{p}.conv2", width, width, 3); bn(f"{p}.bn2", width)
            if stride != 1 or channels != planes:
                conv(f"{p}.downsample.0", planes, channels, 1); bn(f"{p}.downsample.1", planes)
            channels = planes
    if classes:
        out["fc.weight"] = (classes, channels)
        out["fc.bias"] = (classes,)
    return out


def keras_layer_of(tensor: str) -> str | None:
    """Our Keras layer name for a torch tensor name (None for fc and unknown names)."""
    if tensor.startswith(("conv1.", "bn1.")):
        return "conv1_conv" if tensor.startswith("conv1.") else "conv1_bn"
    m = re.match(r"layer(\d)\.(\d+)\.(conv|bn)(\d)\.", tensor)
    if m:
        stage, block, kind, k = m.groups()
        return f"conv{int(stage) + 1}_block{int(block) + 1}_{k}_{kind}"
    m = re.match(r"layer(\d)\.(\d+)\.downsample\.([01])\.", tensor)
    if m:
        stage, block, part = m.groups()
        return f"conv{int(stage) + 1}_block{int(block) + 1}_0_{'conv' if part == '0' else 'bn'}"
    return None


# ----------------------------------------------------------------- loading
def map_tensors(tensors: dict[str, np.ndarray], backbone: str, source: str, keep_classifier: bool) -> tuple[dict, LoadReport]:
    """Check every tensor against `backbone` and group them per Keras layer.

    Returns ({keras layer name: [arrays in Keras order]}, report); the
    classifier (fc) goes under "head_logits" when `keep_classifier`.
    UserError on a missing tensor, an unknown tensor or a shape mismatch.
    """
    classes = int(tensors["fc.weight"].shape[0]) if "fc.weight" in tensors else None
    expected = expected_tensors(backbone, classes)
    report = LoadReport(source=source, file="", backbone=backbone, classes=classes)
    unknown = [k for k in tensors if k not in expected]
    if unknown:
        raise UserError(f"model.weights: '{source}' has tensors a plain '{backbone}' does not: {_short_list(unknown)}; "
                        f"allowed: a plain torchvision/timm ResNet (no SE, attention or deep-stem modules)")
    missing = [k for k in expected if k not in tensors and not k.endswith("num_batches_tracked")]
    if missing:
        raise UserError(f"model.weights: '{source}' lacks {len(missing)} tensors of '{backbone}', first: {missing[0]}")
    for name, shape in expected.items():
        if name in tensors and tuple(tensors[name].shape) != shape:
            raise UserError(f"model.weights: tensor '{name}' of '{source}' has shape {tuple(tensors[name].shape)}; "
                            f"'{backbone}' expects {shape}")
    groups: dict[str, list[np.ndarray]] = {}
    for name, array in tensors.items():
        if name.endswith("num_batches_tracked"):
            report.not_used[name] = "BatchNorm step counter, not a weight"
            continue
        if name.startswith("fc."):
            if keep_classifier:
                report.loaded.append(name)
            else:
                report.not_used[name] = f"the checkpoint's {classes}-class classifier; the head is new"
            continue
        layer = keras_layer_of(name)
        report.loaded.append(name)
        groups.setdefault(layer, [])
    for layer in groups:
        if layer.endswith("_conv"):
            torch_name = _torch_name(layer) + ".weight"
            groups[layer] = [np.transpose(tensors[torch_name], (2, 3, 1, 0))]
        else:
            base = _torch_name(layer)
            groups[layer] = [tensors[f"{base}.{f}"] for f in _BN_FIELDS]
    if keep_classifier and classes:
        groups["head_logits"] = [tensors["fc.weight"].T, tensors["fc.bias"]]
    return groups, report


def _torch_name(layer: str) -> str:
    """conv3_block2_1_bn -> layer2.1.bn1 (the inverse of `keras_layer_of`, without the field)."""
    if layer in ("conv1_conv", "conv1_bn"):
        return "conv1" if layer == "conv1_conv" else "bn1"
    stage, block, k, kind = re.match(r"conv(\d)_block(\d+)_(\d)_(conv|bn)", layer).groups()
    prefix = f"layer{int(stage) - 1}.{int(block) - 1}"
    if k == "0":
        return f"{prefix}.downsample.{0 if kind == 'conv' else 1}"
    return f"{prefix}.{kind}{k}"


def assign(model, groups: dict[str, list[np.ndarray]]) -> None:
    """Set each layer's weights (float32) from `groups`; every weighted layer of `model` must be covered."""
    weighted = [layer for layer in model.layers if layer.weights]
    names = {layer.name for layer in weighted}
    uncovered = sorted(names - set(groups))
    if uncovered:
        raise UserError(f"model.weights: the checkpoint leaves {len(uncovered)} layers of '{model.name}' empty, first: {uncovered[0]}")
    for layer in weighted:
        layer.set_weights([np.asarray(a, np.float32) for a in groups[layer.name]])


def backbone_tensors(ref: str, backbone: str) -> tuple[dict, LoadReport]:
    """Read `ref`, check it is a `backbone`, and group its tensors per Keras layer, classifier left out."""
    tensors, path = read_checkpoint(ref)
    check_backbone(infer_backbone(tensors), backbone, ref)
    groups, report = map_tensors(tensors, backbone, ref, keep_classifier=False)
    report.file = str(path)
    return groups, report


def _short_list(names: list[str], n: int = 3) -> str:
    shown = ", ".join(names[:n])
    return shown + (f", ... ({len(names)} in all)" if len(names) > n else "")

