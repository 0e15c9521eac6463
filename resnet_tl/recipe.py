"""Recipes from files: shipped names, YAML, dotted ``--set`` overrides, one-line errors.

Precedence: schema defaults < recipe file < ``--set key=value`` flags. The schema
itself (sections, keys, ranges) is `resnet_tl.recipe_schema`; its classes are
re-exported here, so ``from resnet_tl.recipe import Recipe, DataConfig`` is the
one import a caller needs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from resnet_tl.errors import UserError
from resnet_tl.recipe_schema import (  # noqa: F401  re-exported: the recipe's public names
    BACKBONES, LOCKED_KEYS, AugmentConfig, DataConfig, EvaluateConfig, ExportConfig, GradualConfig, GradualPhase,
    HeadConfig, ModelConfig, PhaseConfig, Recipe, TrainConfig, allowed_msg, dump_recipe, locked_view,
)


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
    raise UserError(f"recipe '{name_or_path}': not a file and not a shipped recipe; {allowed_msg(name_or_path, list(shipped))}")


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
        raise UserError(f"--set '{item}': received no '='; allowed: KEY=VALUE as one word, e.g. --set model.backbone=resnet18")
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
            lines.append(f"{source}: unknown key '{key}'; {allowed_msg(str(loc[-1]), allowed) if allowed else ''}".rstrip("; "))
            continue
        msg = e["msg"]
        if msg.startswith("Value error, "):
            msg = msg[len("Value error, "):]
        got = e.get("input")
        where = f"{source}: {key}" if key else source  # a whole-recipe check has no location: its message names the key
        lines.append(f"{where}: {msg}" if "received" in msg else f"{where}: received {got!r}; {msg}")
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
    for item in overrides:  # before the recipe: in `--set key 32`, the 32 lands in the RECIPE argument
        if "=" not in item:
            stray = f" ('{name_or_path}' was read as the RECIPE argument)" if name_or_path else ""
            raise UserError(f"--set '{item}': received no '='; allowed: KEY=VALUE as one word, "
                            f"e.g. --set {item.strip() or 'data.image_size'}=VALUE{stray}")
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
    elif data_dir is None and path.parent == RECIPES_DIR and not any(o.startswith("data.dir=") for o in overrides):
        recipe = _shipped_data(recipe)
    return recipe


def _shipped_data(recipe: Recipe) -> Recipe:
    """A shipped recipe's relative data.dir (data/sample) that the current folder lacks, read from
    the package's own copy: the quickstart runs from any folder, in a checkout or after pip install."""
    rel = Path(recipe.data.dir)
    shipped = RECIPES_DIR.parent / rel
    if rel.is_absolute() or rel.exists() or not shipped.is_dir():
        return recipe
    return recipe.model_copy(update={"data": recipe.data.model_copy(update={"dir": str(shipped)})})


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
