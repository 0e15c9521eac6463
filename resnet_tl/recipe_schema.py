"""The recipe schema: every section and key, with its default, range and description.

A recipe has the sections ``data``, ``model``, ``schedule`` (a list of
phases), ``train``, ``evaluate`` and ``export``. Every key has a default, so an
empty recipe is valid. Choice lists (backbones, optimizers, export formats) are
the keys of their tables. The validated recipe is immutable; library functions
receive the section they need. Reading files and ``--set`` overrides:
`resnet_tl.recipe`.
"""

from __future__ import annotations

import difflib
from typing import Annotated, Any, Literal, Union

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    field_validator,
    model_validator,
)

from resnet_tl.formats import FORMATS as EXPORT_FORMATS
from resnet_tl.formats import QUANT_NAMES
from resnet_tl.models.backbones import BACKBONES as _BACKBONE_TABLE
from resnet_tl.training.optimizers import OPTIMIZERS

Stage = str  # "stem", "conv2".."conv5", "head"


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


# --------------------------------------------------------------------- data
class AugmentConfig(_Section):
    """On-device augmentation, applied in the training model only."""

    flip: Literal["none", "horizontal", "vertical", "both"] = Field(
        "horizontal", description="Random flips."
    )
    rotation: float = Field(0.0, ge=0.0, le=0.5, description="Max rotation, fraction of a full turn.")
    zoom: float = Field(0.0, ge=0.0, lt=1.0, description="Max zoom in/out, fraction of the size.")
    crop: float = Field(
        0.0, ge=0.0, lt=1.0,
        description="Random resized crop: 0 = off, else the smallest area fraction kept (e.g. 0.5).",
    )
    contrast: float = Field(0.0, ge=0.0, le=1.0, description="Max contrast change, fraction.")
    brightness: float = Field(0.0, ge=0.0, le=1.0, description="Max brightness change, fraction of 255.")
    policy: Literal["none", "randaugment", "trivialaugment"] = Field(
        "none", description="Automatic augmentation policy (timm's ops, keras.ops): randaugment = num_ops ops per image at "
        "`magnitude`; trivialaugment = one op per image at a magnitude drawn in [0, magnitude].",
    )
    magnitude: float | None = Field(
        None, ge=0.0, le=10.0,
        description="Policy strength 0..10, default 9; at 10: rotate 30 deg, shear 0.3, translate 45%, "
        "enhance factor 1 +- 0.9, posterize to 4 bits, solarize everything.",
    )
    num_ops: int | None = Field(None, ge=1, le=8, description="Policy ops per image: randaugment, default 2; trivialaugment: 1.")
    erasing: float = Field(
        0.0, ge=0.0, le=1.0,
        description="Random erasing: probability per image of filling one rectangle (2-33% of the area) with a random colour.",
    )
    mixup: float = Field(0.0, ge=0.0, description="Mixup Beta(alpha, alpha); 0 = off.")
    cutmix: float = Field(0.0, ge=0.0, description="CutMix Beta(alpha, alpha); 0 = off.")

    @model_validator(mode="after")
    def _policy_keys_need_a_policy(self) -> AugmentConfig:
        # A magnitude or num_ops the policy would ignore is a mistake worth naming.
        if self.policy == "none":
            for key in ("magnitude", "num_ops"):
                if getattr(self, key) is not None:
                    raise ValueError(f"{key} applies to a policy; received {key}={getattr(self, key)} with policy 'none' "
                                     "(allowed policies: randaugment, trivialaugment)")
        elif self.policy == "trivialaugment" and self.num_ops not in (None, 1):
            raise ValueError(f"num_ops: trivialaugment applies one op per image; received num_ops={self.num_ops} (use randaugment)")
        return self

    @property
    def policy_level(self) -> float:
        """The policy's strength as a fraction of its maximum (magnitude / 10)."""
        return (9.0 if self.magnitude is None else self.magnitude) / 10.0

    @property
    def policy_ops(self) -> int:
        """Ops per image that the policy applies."""
        return 1 if self.policy == "trivialaugment" else (self.num_ops or 2)


class DataConfig(_Section):
    """Where the images are and how they become arrays."""

    dir: str = Field("data/sample", description="Image folder: one subfolder per class, or train/ val/ [test/].")
    image_size: int = Field(64, ge=8, le=1024, description="Square side in pixels the images are resized to.")
    resize: Literal["antialias", "bilinear"] = Field(
        "antialias",
        description="How images shrink to image_size in training, evaluation, predict and export's check: antialias "
                    "(Pillow's antialiased bilinear) or bilinear (no antialiasing, as MediaPipe and most app pipelines "
                    "resize; choose it for models that will run in apps on photos much larger than image_size).",
    )
    val_split: float = Field(0.2, gt=0.0, lt=1.0, description="Fraction held out for validation (stratified, seeded) when the folder has no val/ split.")
    seed: int = Field(42, description="Seed of the train/val split.")
    min_size: int = Field(8, ge=1, description="Images whose shorter side is below this (px) are skipped as too small.")
    max_pixels: int = Field(
        89_478_485, ge=1, le=178_956_970,
        description="Images with more pixels (width x height, read from the header before decoding) are skipped as "
                    "too_large: a decompression-bomb guard. Default: Pillow's own warning level (~9459 x 9459 px); "
                    "at most twice that, where Pillow itself refuses.")
    skip_empty_classes: bool = Field(False, description="Skip (with a warning) class folders with no usable image instead of failing.")
    few_images_warning: int = Field(5, ge=0, description="Warn about classes with fewer usable images than this.")
    cache_dir: str | None = Field(None, description="Decoded-image cache; default: the user's cache directory.")
    exclude: str | None = Field(
        None,
        description="A file of image paths to leave out: one per line, or a CSV with a 'path' column (a filtered audit.csv). "
        "Relative paths are taken from data.dir. Excluded images are listed in the run's excluded.txt.",
    )
    augment: AugmentConfig = AugmentConfig()


# -------------------------------------------------------------------- model
BACKBONES = tuple(_BACKBONE_TABLE)  # the names, in the table's order


class HeadConfig(_Section):
    pooling: Literal["avg", "max"] = Field("avg", description="Global pooling over the last feature map.")
    hidden: list[Annotated[int, Field(ge=1)]] = Field(default_factory=list, description="Units of hidden dense layers (ReLU), in order.")
    dropout: float = Field(0.0, ge=0.0, lt=1.0, description="Dropout before each dense layer.")


class ModelConfig(_Section):
    backbone: str = Field("resnet50", description="One of " + ", ".join(BACKBONES) + ".")
    weights: str = Field(
        "none",
        description="'imagenet' (Keras download), 'none' (random init), a path to a backbone weights file (.weights.h5, .keras, .h5) or a timm/torchvision checkpoint (.safetensors, .pth, hf://timm/<model>).",
    )
    head: HeadConfig = HeadConfig()

    @field_validator("backbone")
    @classmethod
    def _known_backbone(cls, v: str) -> str:
        if v not in BACKBONES:
            raise ValueError(allowed_msg(v, BACKBONES))
        return v


# ----------------------------------------------------------------- schedule
DECAYS = ("constant", "cosine", "linear", "onecycle")
class PhaseConfig(_Section):
    """One phase of the freeze/unfreeze schedule; the model is recompiled between phases."""

    name: str | None = Field(None, description="Label used in logs and history.csv; default phase<N>.")
    epochs: int = Field(5, ge=1, le=10_000)
    train: Union[Literal["head", "all"], list[str]] | None = Field(
        None, description="Stages that train: 'head', 'all' or a list such as [conv5, head]. Default (with no 'from'): all."
    )
    from_: str | None = Field(None, alias="from", description="Train this stage and every stage above it (and the head).")
    lr: Union[Annotated[float, Field(gt=0.0, le=10.0)], Literal["find"]] = Field(
        1e-3, description="Peak learning rate, or 'find': lr-find's suggestion for this phase, found before the run "
                          "(the run records the rule and the value in lr_find.json).")
    warmup_epochs: float = Field(0.0, ge=0.0, description="Linear warm-up from 0 to lr over this many epochs (onecycle: its cosine warm-up; default a quarter of the phase).")
    decay: Literal[DECAYS] = Field(  # type: ignore[valid-type]
        "constant",
        description="Learning-rate decay after warm-up. onecycle: fastai's fit_one_cycle: cosine from lr/25 up to lr, "
                    "cosine down to lr/1e5, momentum (SGD momentum, Adam beta_1) cycled 0.95 -> 0.85 -> 0.95.",
    )
    optimizer: Literal[tuple(OPTIMIZERS)] = "adam"  # type: ignore[valid-type]
    momentum: float = Field(0.9, ge=0.0, lt=1.0, description="SGD momentum.")
    weight_decay: float = Field(0.0, ge=0.0, le=1.0, description="Decoupled weight decay (adamw, sgd).")
    lr_decay_per_stage: float = Field(1.0, gt=0.0, le=1.0, description="Layer-wise lr decay: a stage d levels below the head gets lr x factor^d.")
    batchnorm: Literal["frozen", "train"] = Field("frozen", description="frozen: BatchNorm in inference mode, statistics untouched.")
    label_smoothing: float = Field(0.0, ge=0.0, lt=1.0)
    cache_features: bool | None = Field(None, description="Head-only phases: compute backbone features once. Default: on for head-only phases, except with mixup/cutmix (they mix images, so the phase trains live).")
    feature_cache_views: int | None = Field(
        None, ge=1, le=64,
        description="Views of the training set in the feature cache: 1 = unaugmented images; N > 1 = N augmented views, one per epoch in turn. Default: 1 when data.augment is off, else min(epochs, 4).",
    )

    @model_validator(mode="after")
    def _one_selector(self) -> "PhaseConfig":
        if self.train is not None and self.from_ is not None:
            raise ValueError("give either 'train' or 'from', not both")
        return self


class GradualConfig(_Section):
    """ULMFiT-style gradual unfreezing, expanded into one phase per stage."""

    start: str = Field("conv5", description="First stage unfrozen (with the head).")
    stop: str = Field("conv2", description="Last stage unfrozen.")
    epochs_per_stage: int = Field(1, ge=1)
    head_epochs: int = Field(1, ge=0, description="Head-only epochs before unfreezing starts (0 = none).")
    lr: float = Field(1e-4, gt=0.0, le=10.0)
    head_lr: float = Field(1e-3, gt=0.0, le=10.0)
    optimizer: Literal[tuple(OPTIMIZERS)] = "adam"  # type: ignore[valid-type]
    decay: Literal[DECAYS] = "constant"  # type: ignore[valid-type]
    lr_decay_per_stage: float = Field(1.0, gt=0.0, le=1.0)
    batchnorm: Literal["frozen", "train"] = "frozen"


class GradualPhase(_Section):
    gradual: GradualConfig


def _phase_kind(v: Any) -> str:
    # A phase with a 'gradual' key is the shorthand; tagging lets pydantic
    # report errors against that one model instead of both union members.
    if isinstance(v, GradualPhase) or (isinstance(v, dict) and "gradual" in v):
        return "Gradual"
    return "Phase"


PhaseItem = Annotated[
    Union[Annotated[PhaseConfig, Tag("Phase")], Annotated[GradualPhase, Tag("Gradual")]],
    Discriminator(_phase_kind),
]


def _default_schedule() -> list[PhaseConfig]:
    return [
        PhaseConfig(name="head", epochs=5, train="head", lr=1e-3),
        PhaseConfig(name="conv5", epochs=5, train=["conv5", "head"], lr=1e-4),
    ]


# -------------------------------------------------------------------- train
class TrainConfig(_Section):
    batch_size: int = Field(32, ge=1, le=65_536, description="Global batch size (split across devices).")
    seed: int = Field(42, description="Seed of weights init, shuffling and augmentation.")
    monitor: Literal["val_accuracy", "val_loss"] = Field("val_accuracy", description="Metric that picks the best checkpoint and drives early stopping.")
    patience: int = Field(0, ge=0, description="Early stopping: epochs without improvement before stopping (0 = off).")
    epochs: int | None = Field(
        None, ge=1, le=100_000,
        description="Length of the whole schedule in epochs: each phase's epochs are scaled in proportion (rounded "
                    "at the cumulative boundaries, at least 1 each), so a published schedule fits another dataset; null = as written.",
    )
    ema: float = Field(
        0.0, ge=0.0, lt=1.0,
        description="Exponential moving average of the weights, decay per step (e.g. 0.999; 0 = off), warmed up as "
                    "min(ema, (1 + n) / (10 + n)) at step n. Validation, best epoch, calibration and model.keras use the average.",
    )
    class_weight: Union[Literal["none", "balanced"], dict[str, Annotated[float, Field(gt=0)]]] = Field(
        "none", description="none | balanced | {class_name: weight}."
    )
    precision: Literal["auto", "float32", "mixed_float16", "mixed_bfloat16"] = Field(
        "auto", description="auto: mixed_float16 on NVIDIA GPUs of compute capability >= 7.0, float32 elsewhere."
    )
    jit_compile: Literal["auto", True, False] = Field("auto", description="XLA; auto = on for GPUs.")
    distribute: Literal["auto", "none", "mirrored", "multi-worker"] = "auto"
    steps_per_execution: int = Field(1, ge=1, le=1000)


class EvaluateConfig(_Section):
    top_k: int | None = Field(None, ge=1, description="k of top-k accuracy; default 5 when there are at least 5 classes.")
    misclassified: int = Field(24, ge=0, le=1000, description="How many most confidently wrong images to list.")


class ExportConfig(_Section):
    formats: list[str] = Field(default_factory=lambda: ["keras", "savedmodel", "tflite"],
                               description="Formats to write, rows of resnet_tl.formats.FORMATS: " + ", ".join(EXPORT_FORMATS) + ".")
    quantize: list[Literal[tuple(QUANT_NAMES)]] = Field(default_factory=lambda: ["none"])  # type: ignore[valid-type]
    representative_samples: int = Field(128, ge=1, le=100_000, description="Images (class-stratified, from train) that calibrate int8.")
    int8_io: Literal["int8", "uint8", "float32"] = Field("uint8", description="Input/output type of full-int8 TFLite models.")
    min_agreement_float: float = Field(0.995, ge=0.0, le=1.0, description="Parity check: least top-1 agreement with the Keras model of float32 and float16 artifacts.")
    min_agreement_int8: float = Field(0.97, ge=0.0, le=1.0, description="Parity check: least top-1 agreement with the Keras model of int8-weight TFLite models (dynamic-range and full int8).")
    max_accuracy_drop: float = Field(0.01, ge=0.0, le=1.0, description="Parity check: most an artifact's accuracy on the validation labels may fall below the Keras model's (0.01 = one percentage point).")
    int8_repair: bool = Field(True, description="When a full-int8 TFLite model fails its parity gate in LiteRT, rank its layers with LiteRT's quantization debugger and keep the worst in float until it passes (each attempt reported).")
    int8_repair_max_growth: float = Field(2.0, ge=1.0, le=4.0, description="Largest size a repaired int8 .tflite may reach, as a multiple of the plain int8 file (float32 is about 4x).")
    latency_images: int = Field(20, ge=1, le=10_000, description="Single-image calls timed per artifact for the mean latency in the parity report.")

    @field_validator("formats")
    @classmethod
    def _known_formats(cls, v: list[str]) -> list[str]:
        # Checked against the table when validating, not when this class was made: a format
        # registered later (a new row of FORMATS) is accepted like the shipped ones.
        for name in v:
            if name not in EXPORT_FORMATS:
                raise ValueError(allowed_msg(name, list(EXPORT_FORMATS)))
        return v


# ------------------------------------------------------------------- recipe
class Recipe(_Section):
    name: str = Field("recipe", description="Run-name prefix; defaults to the recipe file's stem.")
    description: str = ""
    data: DataConfig = DataConfig()
    model: ModelConfig = ModelConfig()
    schedule: list[PhaseItem] = Field(default_factory=_default_schedule, min_length=1)
    train: TrainConfig = TrainConfig()
    evaluate: EvaluateConfig = EvaluateConfig()
    export: ExportConfig = ExportConfig()

    @model_validator(mode="after")
    def _scale_to_epochs(self) -> "Recipe":
        total = self.train.epochs
        if total is None:
            return self
        if any(not isinstance(p, PhaseConfig) for p in self.schedule):
            raise ValueError(f"train.epochs: received {total}; a schedule with a 'gradual' item cannot be scaled (set its epochs_per_stage instead)")
        if total < len(self.schedule):
            raise ValueError(f"train.epochs: received {total}; allowed: at least {len(self.schedule)}, one per phase")
        object.__setattr__(self, "schedule", [  # frozen: the scaled copies replace the list, never the caller's phases
            p.model_copy(update={"epochs": n}) for p, n in zip(self.schedule, scaled_epochs([p.epochs for p in self.schedule], total))])
        return self

    def to_dict(self) -> dict[str, Any]:
        """Plain data (YAML-safe), with 'from' spelled as in YAML."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=False)


# ------------------------------------------------------------ helpers
def scaled_epochs(epochs: list[int], total: int) -> list[int]:
    """Phase lengths scaled to sum to `total`: boundaries at round(cumulative x total / sum), each phase >= 1.

    Cumulative rounding keeps the phases' relative positions (the paper's 91/45/46 -> 15/7/8 at 30) and
    returns `epochs` unchanged when they already sum to `total`, so a stored, scaled recipe reloads as it is.
    """
    whole, bounds, cum = sum(epochs), [], 0
    for i, e in enumerate(epochs):
        cum += e
        least = (bounds[-1] if bounds else 0) + 1
        most = total - (len(epochs) - 1 - i)
        bounds.append(min(max(round(cum * total / whole), least), most))
    return [b - a for a, b in zip([0, *bounds[:-1]], bounds)]


def allowed_msg(value: Any, allowed: tuple[str, ...] | list[str]) -> str:
    close = difflib.get_close_matches(str(value), list(allowed), n=1)
    hint = f" (did you mean '{close[0]}'?)" if close else ""
    return f"received {value!r}; allowed: {', '.join(allowed)}{hint}"


# Keys that define what a checkpoint means; a resumed run may not change them.
# data.augment: the augmenter's variables (its RNG state) are in the checkpoint;
# train.monitor: best_value compares against it; train.precision: mixed_float16
# adds loss-scale variables to the optimizer state; train.ema: the checkpoint holds the average or not.
LOCKED_KEYS = ("model", "schedule", "data.image_size", "data.val_split", "data.seed", "data.augment",
               "train.batch_size", "train.seed", "train.class_weight", "train.monitor", "train.precision", "train.ema")


def locked_view(recipe: Recipe) -> dict[str, Any]:
    """The parts of a recipe that a resumed run must keep unchanged."""
    d = recipe.to_dict()
    out = {}
    for key in LOCKED_KEYS:
        node: Any = d
        for part in key.split("."):
            node = node[part]
        out[key] = node
    return out


def dump_recipe(recipe: Recipe) -> str:
    """YAML text that `load_recipe` reads back into an equal recipe."""
    return yaml.safe_dump(recipe.to_dict(), sort_keys=False, default_flow_style=None)
