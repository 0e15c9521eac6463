"""Recipe schema, loading, dotted overrides and dumping.

A recipe is one YAML file with the sections ``data``, ``model``, ``schedule``
(a list of phases), ``train``, ``evaluate`` and ``export``. Every key has a
default, so an empty recipe is valid. Precedence: schema defaults < recipe
file < ``--set key=value`` flags. The validated recipe is immutable; library
functions receive the section they need.
"""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Annotated, Any, Literal, Union

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Tag,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from resnet_tl.models.backbones import BACKBONES as _BACKBONE_TABLE
from resnet_tl.errors import UserError
from resnet_tl.formats import FORMATS as EXPORT_FORMATS, QUANT_NAMES
from resnet_tl.training.optimizers import OPTIMIZERS

def _recipes_dir() -> Path:
    # A checkout (or editable install) reads the top-level recipes/ folder; a
    # wheel carries the same files as the package resnet_tl.recipes.
    here = Path(__file__).resolve().parent
    checkout = here.parent / "recipes"
    if checkout.is_dir():
        return checkout
    return here / "recipes"


RECIPES_DIR = _recipes_dir()
DEFAULT_RECIPE = "quickstart"

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
    mixup: float = Field(0.0, ge=0.0, description="Mixup Beta(alpha, alpha); 0 = off.")
    cutmix: float = Field(0.0, ge=0.0, description="CutMix Beta(alpha, alpha); 0 = off.")


class DataConfig(_Section):
    """Where the images are and how they become arrays."""

    dir: str = Field("data/sample", description="Image folder: one subfolder per class, or train/ val/ [test/].")
    image_size: int = Field(64, ge=8, le=1024, description="Square side in pixels the images are resized to.")
    val_split: float = Field(0.2, gt=0.0, lt=1.0, description="Fraction held out for validation (stratified, seeded) when the folder has no val/ split.")
    seed: int = Field(42, description="Seed of the train/val split.")
    min_size: int = Field(8, ge=1, description="Images whose shorter side is below this (px) are skipped as too small.")
    skip_empty_classes: bool = Field(False, description="Skip (with a warning) class folders with no usable image instead of failing.")
    few_images_warning: int = Field(5, ge=0, description="Warn about classes with fewer usable images than this.")
    cache_dir: str | None = Field(None, description="Decoded-image cache; default: the user's cache directory.")
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
            raise ValueError(_allowed_msg(v, BACKBONES))
        return v


# ----------------------------------------------------------------- schedule
class PhaseConfig(_Section):
    """One phase of the freeze/unfreeze schedule; the model is recompiled between phases."""

    name: str | None = Field(None, description="Label used in logs and history.csv; default phase<N>.")
    epochs: int = Field(5, ge=1, le=10_000)
    train: Union[Literal["head", "all"], list[str]] | None = Field(
        None, description="Stages that train: 'head', 'all' or a list such as [conv5, head]. Default (with no 'from'): all."
    )
    from_: str | None = Field(None, alias="from", description="Train this stage and every stage above it (and the head).")
    lr: float = Field(1e-3, gt=0.0, le=10.0, description="Peak learning rate.")
    warmup_epochs: float = Field(0.0, ge=0.0, description="Linear warm-up from 0 to lr over this many epochs.")
    decay: Literal["constant", "cosine", "linear"] = Field("constant", description="Learning-rate decay after warm-up.")
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
    decay: Literal["constant", "cosine", "linear"] = "constant"
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
    formats: list[Literal[tuple(EXPORT_FORMATS)]] = Field(default_factory=lambda: ["keras", "savedmodel", "tflite"])  # type: ignore[valid-type]
    quantize: list[Literal[tuple(QUANT_NAMES)]] = Field(default_factory=lambda: ["none"])  # type: ignore[valid-type]
    representative_samples: int = Field(128, ge=1, le=100_000, description="Images (class-stratified, from train) that calibrate int8.")
    int8_io: Literal["int8", "uint8", "float32"] = Field("uint8", description="Input/output type of full-int8 TFLite models.")
    min_agreement_float: float = Field(0.995, ge=0.0, le=1.0, description="Parity check: least top-1 agreement with the Keras model of float32 and float16 artifacts.")
    min_agreement_int8: float = Field(0.97, ge=0.0, le=1.0, description="Parity check: least top-1 agreement with the Keras model of int8-weight TFLite models (dynamic-range and full int8).")
    max_accuracy_drop: float = Field(0.01, ge=0.0, le=1.0, description="Parity check: most an artifact's accuracy on the validation labels may fall below the Keras model's (0.01 = one percentage point).")
    latency_images: int = Field(20, ge=1, le=10_000, description="Single-image calls timed per artifact for the mean latency in the parity report.")


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

    def to_dict(self) -> dict[str, Any]:
        """Plain data (YAML-safe), with 'from' spelled as in YAML."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=False)


# ------------------------------------------------------------ load & errors
def _allowed_msg(value: Any, allowed: tuple[str, ...] | list[str]) -> str:
    close = difflib.get_close_matches(str(value), list(allowed), n=1)
    hint = f" (did you mean '{close[0]}'?)" if close else ""
    return f"received {value!r}; allowed: {', '.join(allowed)}{hint}"


def shipped_recipes() -> dict[str, Path]:
    """Name -> path of every recipe shipped in the package."""
    return {p.stem: p for p in sorted(RECIPES_DIR.glob("*.yaml"))}


def resolve_recipe_path(name_or_path: str | None) -> Path:
    """A path to a YAML file, or the name of a shipped recipe (default: quickstart)."""
    if name_or_path is None:
        name_or_path = DEFAULT_RECIPE
    p = Path(name_or_path)
    if p.suffix in (".yaml", ".yml") or p.exists() or "/" in name_or_path:
        if not p.is_file():
            raise UserError(f"recipe file '{name_or_path}' not found")
        return p
    shipped = shipped_recipes()
    if name_or_path in shipped:
        return shipped[name_or_path]
    raise UserError(f"recipe '{name_or_path}': not a file and not a shipped recipe; {_allowed_msg(name_or_path, list(shipped))}")


def read_yaml(path: Path) -> dict[str, Any]:
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        raise UserError(f"recipe file '{path}'{where}: not valid YAML ({getattr(e, 'problem', e)})") from None
    except (OSError, UnicodeDecodeError) as e:
        raise UserError(f"recipe file '{path}': cannot be read ({e})") from None
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise UserError(f"recipe file '{path}': received a {type(raw).__name__} at the top level; allowed: a mapping with sections data, model, schedule, train, evaluate, export")
    return raw


def parse_override(item: str) -> tuple[list[str], Any]:
    """'schedule.0.lr=1e-4' -> (['schedule', '0', 'lr'], 0.0001). Values are YAML scalars."""
    key, sep, value = item.partition("=")
    if not sep or not key.strip():
        raise UserError(f"--set '{item}': expected KEY=VALUE, e.g. --set model.backbone=resnet18")
    try:
        parsed = yaml.safe_load(value) if value.strip() else ""
    except yaml.YAMLError:
        parsed = value
    # YAML 1.1 reads 1e-4 as a string; a learning rate given that way is a number.
    if isinstance(parsed, str):
        try:
            parsed = float(parsed) if any(c in parsed.lower() for c in ".e") else parsed
        except ValueError:
            pass
    return key.strip().split("."), parsed


def _set_path(tree: Any, path: list[str], value: Any, full: str) -> None:
    node = tree
    for i, part in enumerate(path):
        last = i == len(path) - 1
        where = ".".join(path[: i + 1])
        if isinstance(node, list):
            if not part.isdigit() or int(part) >= len(node):
                raise UserError(f"--set {full}: '{where}' is not an index of a list of {len(node)} items; allowed: 0..{len(node) - 1}")
            idx = int(part)
            if last:
                node[idx] = value
            else:
                node = node[idx]
        elif isinstance(node, dict):
            if last:
                node[part] = value
            else:
                if part not in node or node[part] is None:
                    node[part] = {}
                node = node[part]
        else:
            raise UserError(f"--set {full}: '{'.'.join(path[:i])}' is a value, not a section")


def _merge(base: Any, over: Any) -> Any:
    """Deep-merge mappings; lists and scalars from `over` replace."""
    if isinstance(base, dict) and isinstance(over, dict):
        out = dict(base)
        for k, v in over.items():
            out[k] = _merge(base[k], v) if k in base else v
        return out
    return over


def _loc_str(loc: tuple[Any, ...]) -> str:
    # pydantic inserts the union member's class name into locations; users never wrote those.
    parts = [str(p) for p in loc if not (isinstance(p, str) and p[:1].isupper())]
    return ".".join(parts).replace("from_", "from")


def _fields_at(loc: tuple[Any, ...]) -> list[str]:
    """Allowed key names at the section that holds `loc` (for did-you-mean)."""
    model: Any = Recipe
    for part in loc[:-1]:
        if isinstance(part, int) or (isinstance(part, str) and part.isdigit()):
            continue
        if isinstance(part, str) and part[:1].isupper():
            model = {"Phase": PhaseConfig, "Gradual": GradualPhase}.get(part, model)
            continue
        field = getattr(model, "model_fields", {}).get(part)
        if field is None:
            return []
        ann = field.annotation
        nxt = None
        for cand in (ann, *getattr(ann, "__args__", ())):
            for c in (cand, *getattr(cand, "__args__", ())):
                if isinstance(c, type) and issubclass(c, BaseModel):
                    nxt = c
        model = nxt  # None until a union tag (Phase/Gradual) names the model
    names = []
    for n, f in getattr(model, "model_fields", {}).items():
        names.append(f.alias or n)
    return names


def format_validation_error(err: ValidationError, source: str) -> str:
    """One line per problem: key, value received, what is allowed."""
    lines = []
    for e in err.errors():
        loc = e["loc"]
        key = _loc_str(loc)
        if e["type"] == "extra_forbidden":
            allowed = _fields_at(loc)
            lines.append(f"{source}: unknown key '{key}'; {_allowed_msg(str(loc[-1]), allowed) if allowed else ''}".rstrip("; "))
            continue
        msg = e["msg"]
        if msg.startswith("Value error, "):
            msg = msg[len("Value error, "):]
        got = e.get("input")
        if "received" in msg:
            lines.append(f"{source}: {key}: {msg}")
        else:
            lines.append(f"{source}: {key}: received {got!r}; {msg}")
    return "\n".join(lines)


def build_recipe(raw: dict[str, Any], overrides: list[str] = (), source: str = "recipe") -> Recipe:
    """Validate raw recipe data plus `--set` overrides into a Recipe."""
    defaults = Recipe().to_dict()
    merged = _merge(defaults, raw)
    for item in overrides:
        path, value = parse_override(item)
        _set_path(merged, path, value, item)
    try:
        return Recipe.model_validate(merged)
    except ValidationError as e:
        raise UserError(format_validation_error(e, source)) from None


def load_recipe(name_or_path: str | None = None, overrides: list[str] = (), data_dir: str | None = None) -> Recipe:
    """Load a recipe by path or shipped name, apply `--set` overrides and `--data`, validate."""
    path = resolve_recipe_path(name_or_path)
    raw = read_yaml(path)
    if "name" not in raw:
        raw["name"] = path.stem
    if data_dir is not None:
        # Set directly, not through YAML parsing: a folder called 2024 stays a string.
        raw = _merge(raw, {"data": {"dir": str(data_dir)}})
    recipe = build_recipe(raw, list(overrides), source=str(path))
    if data_dir is not None and recipe.data.dir != str(data_dir):
        recipe = recipe.model_copy(update={"data": recipe.data.model_copy(update={"dir": str(data_dir)})})
    return recipe


# Keys that define what a checkpoint means; a resumed run may not change them.
# data.augment: the augmenter's variables (its RNG state) are in the checkpoint;
# train.monitor: best_value compares against it; train.precision: mixed_float16
# adds loss-scale variables to the optimizer state.
LOCKED_KEYS = ("model", "schedule", "data.image_size", "data.val_split", "data.seed", "data.augment",
               "train.batch_size", "train.seed", "train.class_weight", "train.monitor", "train.precision")


def with_absolute_paths(recipe: Recipe) -> Recipe:
    """`recipe` with data.dir, data.cache_dir and a model.weights file made
    absolute (against the current folder), as a run folder stores it."""
    data = {"dir": str(Path(recipe.data.dir).expanduser().resolve())}
    if recipe.data.cache_dir is not None:
        data["cache_dir"] = str(Path(recipe.data.cache_dir).expanduser().resolve())
    update = {"data": recipe.data.model_copy(update=data)}
    weights = Path(recipe.model.weights).expanduser()
    if recipe.model.weights not in ("imagenet", "none") and weights.is_file():
        update["model"] = recipe.model.model_copy(update={"weights": str(weights.resolve())})
    return recipe.model_copy(update=update)


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


def recipe_summaries() -> list[dict[str, str]]:
    """Name, path and one-line description (the file's opening comment) of each shipped recipe."""
    rows = []
    for name, path in shipped_recipes().items():
        first = ""
        for line in path.read_text(encoding="utf-8").splitlines():
            if line.startswith("#"):
                first = line.lstrip("# ").strip()
                break
        rows.append({"name": name, "description": first, "path": str(path)})
    return rows
