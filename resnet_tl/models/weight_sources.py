"""Where pretrained weights for each backbone come from: data, with cited ImageNet top-1.

Each row is one ``model.weights`` value that works for a backbone: Keras's
own download (``imagenet``) or a timm Hugging Face repository
(``hf://timm/<model>``, torchvision's weights included as ``*.tv_in1k`` /
``*.tv2_in1k``). Accuracy figures are copied from the page named in
``top1_source`` and never computed here; None where no page we cite gives one.
Sizes in MB of 2**20 bytes (torchvision's unit): the page's figure where it
gives one, else the float32 tensors of the architecture (``size_note`` says which).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from resnet_tl.models.backbones import BACKBONES
from resnet_tl.models.pretrained import expected_tensors

_KERAS_DOCS = "https://keras.io/api/applications/"
_TV_DOCS = "https://pytorch.org/vision/stable/models/generated/torchvision.models.{}.html"
_TIMM_CARD = "https://huggingface.co/timm/{}"


@dataclass(frozen=True)
class WeightSource:
    backbone: str
    weights: str  # the model.weights value
    origin: str  # who trained them
    size_mb: float | None
    size_note: str
    top1: float | None  # ImageNet-1k top-1 %, as published
    top1_source: str | None

    def to_dict(self) -> dict:
        return asdict(self)


def _keras(backbone: str, app: str, size_mb: float, top1: float) -> WeightSource:
    return WeightSource(backbone, "imagenet", "Keras download", size_mb, "Keras docs, model with top",
                        top1, _KERAS_DOCS)


def _tv(backbone: str, timm_name: str, tv_weights: str, size_mb: float, top1: float, tv_model: str) -> WeightSource:
    return WeightSource(backbone, f"hf://timm/{timm_name}", f"torchvision {tv_weights.replace('IMAGENET1K_', '')}", size_mb,
                        "torchvision docs, .pth file", top1, _TV_DOCS.format(tv_model))


def _timm(backbone: str, timm_name: str, top1: float | None = None, note: str = "") -> WeightSource:
    return WeightSource(backbone, f"hf://timm/{timm_name}", "timm A1", None,
                        "float32 tensors of the architecture", top1,
                        (_TIMM_CARD.format(timm_name) + note) if top1 is not None else None)


SOURCES: tuple[WeightSource, ...] = (
    _tv("resnet18", "resnet18.tv_in1k", "IMAGENET1K_V1", 44.7, 69.758, "resnet18"),
    _timm("resnet18", "resnet18.a1_in1k"),
    _tv("resnet34", "resnet34.tv_in1k", "IMAGENET1K_V1", 83.3, 73.314, "resnet34"),
    _timm("resnet34", "resnet34.a1_in1k"),
    _keras("resnet50", "ResNet50", 98, 74.9),
    _keras("resnet101", "ResNet101", 171, 76.4),
    _keras("resnet152", "ResNet152", 232, 76.6),
    _keras("resnet50v2", "ResNet50V2", 98, 76.0),
    _keras("resnet101v2", "ResNet101V2", 171, 77.2),
    _keras("resnet152v2", "ResNet152V2", 232, 78.0),
    _tv("resnet50v1.5", "resnet50.tv_in1k", "IMAGENET1K_V1", 97.8, 76.13, "resnet50"),
    _tv("resnet50v1.5", "resnet50.tv2_in1k", "IMAGENET1K_V2", 97.8, 80.858, "resnet50"),
    _timm("resnet50v1.5", "resnet50.a1_in1k", 81.22, " (evaluated at 288 px)"),
    _tv("resnet101v1.5", "resnet101.tv_in1k", "IMAGENET1K_V1", 170.5, 77.374, "resnet101"),
    _tv("resnet101v1.5", "resnet101.tv2_in1k", "IMAGENET1K_V2", 170.5, 81.886, "resnet101"),
    _timm("resnet101v1.5", "resnet101.a1_in1k"),
    _tv("resnet152v1.5", "resnet152.tv_in1k", "IMAGENET1K_V1", 230.4, 78.312, "resnet152"),
    _tv("resnet152v1.5", "resnet152.tv2_in1k", "IMAGENET1K_V2", 230.4, 82.284, "resnet152"),
    _timm("resnet152v1.5", "resnet152.a1_in1k"),
)


def list_weights() -> list[dict]:
    """One dict per backbone and source, in BACKBONES order; backbones without any get one row with weights None."""
    rows = []
    for name, spec in BACKBONES.items():
        mine = [s for s in SOURCES if s.backbone == name]
        if not mine:
            rows.append(WeightSource(name, None, "-", None, "", None, None).to_dict())
        for s in mine:
            row = s.to_dict()
            if row["size_mb"] is None and spec.family in ("basic", "torch_v1.5"):
                values = sum(_prod(shape) for shape in expected_tensors(name, 1000).values())
                row["size_mb"] = round(values * 4 / 2**20, 1)
            rows.append(row)
    return rows


def _prod(shape: tuple[int, ...]) -> int:
    n = 1
    for d in shape:
        n *= d
    return n
