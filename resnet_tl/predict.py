"""Class probabilities for image files, from any model resnet-tl writes.

    predict("runs/x", ["photos/", "extra/*.jpg", "one.png"], top_k=3)

The model is a run folder (its model.keras and labels.txt), a ``.keras``
file, a SavedModel folder, a ``.tflite`` or an ``.onnx`` file
(`resnet_tl.runtimes.load_predictor`); every format gives the same rows.
PATHs are files, folders (searched recursively for image files; hidden files
and folders skipped) or globs. Images are decoded by
`resnet_tl.data.decode.decode_image` at the model's size, exactly as for
training, on a few threads, and predicted in batches. A file that cannot be
decoded gets a row with its reason and no prediction; the rest are still
predicted.
"""

from __future__ import annotations

import csv
import glob
import io as _io
import json
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable

import numpy as np

from resnet_tl.data.decode import IMAGE_EXTENSIONS, DecodeError, decode_image
from resnet_tl.errors import UserError
from resnet_tl.io import atomic_write_text
from resnet_tl.runs import read_labels, resolve_model

OUTPUT_FORMATS = ("table", "csv", "json")
_GLOB_CHARS = set("*?[")


def predict(
    model: str | Path, inputs: list[str], *, top_k: int = 5, batch_size: int = 32,
    labels: str | Path | None = None, output: str | Path | None = None, fmt: str | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, Any]:
    """Top-k labels and probabilities per image; with `output`, also writes it (csv or json).

    Returns {"model", "format", "image_size", "labels", "top_k", "predicted",
    "failed", "rows": [{"path", "top": [{"label", "probability"}], "error",
    "detail"}]}, rows in input order.
    """
    from resnet_tl.runtimes import load_predictor

    if top_k < 1:
        raise UserError(f"--top-k: received {top_k}; allowed: 1 or more")
    if batch_size < 1:
        raise UserError(f"--batch-size: received {batch_size}; allowed: 1 or more")
    files, missing = collect_inputs(inputs)
    out_fmt = output_format(fmt, output)
    if output is not None:
        check_output(Path(output), files, out_fmt)
    model_path, _ = resolve_model(model)
    predictor = load_predictor(model_path, batch_size=batch_size)
    names = read_labels(labels, "--labels") if labels is not None else predictor.labels

    rows: dict[Path, dict] = {}
    size = predictor.image_size
    with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
        for start in range(0, len(files), batch_size):
            chunk = files[start:start + batch_size]
            decoded = list(pool.map(lambda p: _decode(p, size), chunk))
            ok = [(p, px) for p, px in zip(chunk, decoded) if not isinstance(px, DecodeError)]
            for p, px in zip(chunk, decoded):
                if isinstance(px, DecodeError):
                    rows[p] = {"path": str(p), "top": [], "error": px.reason, "detail": px.detail}
            if ok:
                probs = predictor(np.stack([px for _, px in ok]))
                if names is None:
                    names = [str(i) for i in range(probs.shape[1])]
                if len(names) != probs.shape[1]:
                    raise UserError(f"labels: received {len(names)} names; the model '{model}' predicts {probs.shape[1]} classes")
                for (p, _), pr in zip(ok, probs):
                    rows[p] = {"path": str(p), "top": _top(pr, names, top_k), "error": None, "detail": ""}
            if progress is not None:
                progress(min(start + batch_size, len(files)), len(files))
    ordered = [rows[p] for p in files] + missing
    result = {
        "model": str(model), "format": predictor.format, "image_size": size, "labels": names,
        "top_k": min(top_k, len(names)) if names else top_k,
        "predicted": sum(r["error"] is None for r in ordered),
        "failed": sum(r["error"] is not None for r in ordered),
        "rows": ordered,
    }
    if output is not None:
        atomic_write_text(output, to_csv(result) if out_fmt == "csv" else json.dumps(result, indent=2) + "\n")
        result["output"] = str(output)
    return result


def _decode(path: Path, size: int):
    try:
        return decode_image(path, size)
    except DecodeError as e:
        return e


def _top(probs: np.ndarray, names: list[str], k: int) -> list[dict]:
    order = np.argsort(-probs, kind="stable")[:k]
    return [{"label": names[i], "probability": round(float(probs[i]), 6)} for i in order]


# ------------------------------------------------------------------- inputs
def collect_inputs(inputs: list[str]) -> tuple[list[Path], list[dict]]:
    """(image files in input order without repeats, rows for inputs that matched nothing).

    A file named explicitly is always tried (its decode error is its row);
    folders and globs contribute files with an image extension. UserError
    when nothing at all was found.
    """
    if not inputs:
        raise UserError("PATH: received none; allowed: image files, folders or globs")
    files: list[Path] = []
    missing: list[dict] = []
    seen: set[Path] = set()

    def add(p: Path) -> None:
        key = p.resolve()
        if key not in seen:
            seen.add(key)
            files.append(p)

    for item in inputs:
        p = Path(item)
        if p.is_dir():
            for f in _image_files(p):
                add(f)
        elif p.exists():
            add(p)
        elif _GLOB_CHARS & set(item):
            matches = sorted(glob.glob(item, recursive=True))
            for m in map(Path, matches):
                if m.is_dir():
                    for f in _image_files(m):
                        add(f)
                elif m.suffix.lower() in IMAGE_EXTENSIONS:
                    add(m)
            if not matches:
                missing.append({"path": item, "top": [], "error": "not_found", "detail": "the glob matched nothing"})
        else:
            missing.append({"path": item, "top": [], "error": "not_found", "detail": "no such file or folder"})
    if not files:
        raise UserError(f"PATH: received {', '.join(inputs)}; found no image files ({', '.join(IMAGE_EXTENSIONS)}) in them")
    return files, missing


def _image_files(folder: Path) -> list[Path]:
    out = []
    for root, dirs, names in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for n in sorted(names):
            if not n.startswith(".") and Path(n).suffix.lower() in IMAGE_EXTENSIONS:
                out.append(Path(root) / n)
    return out


# ------------------------------------------------------------------- output
def output_format(fmt: str | None, output: str | Path | None) -> str:
    """The format asked for, else the --output file's suffix (.json -> json, else csv), else table."""
    if fmt is not None and fmt not in OUTPUT_FORMATS:
        raise UserError(f"--format: received {fmt!r}; allowed: {', '.join(OUTPUT_FORMATS)}")
    if output is None:
        return fmt or "table"
    if fmt == "table":
        raise UserError("--format table: prints to the terminal; allowed with --output: csv, json")
    return fmt or ("json" if Path(output).suffix.lower() == ".json" else "csv")


def check_output(output: Path, inputs: list[Path], fmt: str) -> None:
    """Refuse an --output that is a folder, lacks its folder, is an image name, or is one of the inputs."""
    if output.is_dir():
        raise UserError(f"--output '{output}': is a folder; allowed: a file name")
    if not output.resolve().parent.is_dir():
        raise UserError(f"--output '{output}': the folder '{output.parent}' does not exist")
    if output.suffix.lower() in IMAGE_EXTENSIONS:
        raise UserError(f"--output '{output}': an image file name; allowed: a .{fmt} (or other non-image) file")
    target = output.resolve()
    for p in inputs:
        if p.resolve() == target:
            raise UserError(f"--output '{output}': is one of the input images; allowed: a new file name")


def to_csv(result: dict) -> str:
    """path, label_1, probability_1, ..., label_k, probability_k, error, detail."""
    k = result["top_k"]
    buf = _io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["path", *[f"{c}_{i}" for i in range(1, k + 1) for c in ("label", "probability")], "error", "detail"])
    for r in result["rows"]:
        cells = []
        for i in range(k):
            t = r["top"][i] if i < len(r["top"]) else None
            cells += [t["label"], f"{t['probability']:.6f}"] if t else ["", ""]
        w.writerow([r["path"], *cells, r["error"] or "", r["detail"] or ""])
    return buf.getvalue()
