"""What export writes beside the artifacts: a sidecar JSON per artifact and manifest.json for all of them."""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from resnet_tl.fileio import atomic_write_json
from resnet_tl.formats import FORMATS, implementation
from resnet_tl.inference.calibration import Calibration, sidecar_fields

PREPROCESSING_NOTES = {
    "antialias": ("Feed RGB pixels 0..255 (uint8, or float32 where the input dtype says so), resized to "
                  "image_size x image_size (whole image, antialiased bilinear, no crop); the backbone's normalisation is inside the model."),
    "bilinear": ("Feed RGB pixels 0..255 (uint8, or float32 where the input dtype says so), resized to "
                 "image_size x image_size (whole image, bilinear without antialiasing as MediaPipe and OpenCV do, no crop); "
                 "the backbone's normalisation is inside the model."),
}
_SAVEDMODEL_SIGNATURES = {"serving_default": "images uint8 (None, S, S, 3) -> probabilities float32 (None, C)",
                          "serving_bytes": "image_bytes string (None,) JPEG/PNG -> probabilities float32 (None, C)"}


def sidecar(art, image_size: int, labels: list[str], calibration: Calibration | None, resize: str = "antialias") -> dict:
    """The JSON beside one artifact: labels, image size, input/output tensors, preprocessing, calibration."""
    io = {k: dict(v, shape=[None if i == 0 else (image_size if i in (1, 2) and k == "input" else d)
                            for i, d in enumerate(v["shape"])]) for k, v in art.io.items()}
    io["output"]["shape"] = [None, len(labels)]
    extra = {"signatures": _SAVEDMODEL_SIGNATURES} if art.format == "savedmodel" else {}
    return {"format": art.format, "file": art.path, "quantize": art.quantize, "labels": labels,
            "image_size": image_size, "resize": resize, **io, "preprocessing": PREPROCESSING_NOTES[resize], **extra,
            # The outputs stay uncalibrated (parity with the Keras model); consumers apply the temperature.
            **sidecar_fields(calibration)}


def write_manifest(result, run_root: Path, thresholds: dict, image_size: int, labels: list[str]) -> None:
    """export/manifest.json: the run, thresholds, versions and every artifact with its check.

    Merged, not overwritten: artifacts an earlier export listed stay listed
    while their file is still there and this export wrote no artifact of the
    same path and runtime (`export RUN`, then `--format onnx`, then `--format
    openvino` lists all of them). Each artifact records when it was exported.
    """
    now = _dt.datetime.now().astimezone().isoformat(timespec="seconds")
    current = [dict(a.to_dict(), exported=now) for a in result.artifacts]
    artifacts = _still_there(result.export_dir, {(a["path"], a["runtime"]) for a in current}) + current
    checks = {a.get("check", "skipped") for a in artifacts}
    doc = {
        "run": str(run_root),
        "created": now,
        "image_size": image_size,
        "labels": labels,
        "check": "failed" if "failed" in checks else ("skipped" if checks <= {"skipped"} else "passed"),
        "thresholds": thresholds,
        "warnings": result.warnings,
        "n_check_images": result.n_check_images,
        "versions": result.versions,
        "artifacts": artifacts,
    }
    atomic_write_json(result.export_dir / "manifest.json", doc, indent=2)


def _still_there(export_dir: Path, replaced: set[tuple[str, str]]) -> list[dict]:
    """The earlier manifest's artifacts whose files still exist and that this export does not replace."""
    try:
        old = json.loads((export_dir / "manifest.json").read_text(encoding="utf-8"))
        listed = [a for a in old.get("artifacts", []) if isinstance(a, dict) and "path" in a]
    except (OSError, ValueError, AttributeError):
        return []  # none yet, or unreadable: this export's artifacts are the whole list
    return [a for a in listed if (a["path"], a.get("runtime")) not in replaced and (export_dir / a["path"]).exists()]


def runtime_versions(formats: set[str], app_runtime: bool) -> dict[str, str | None]:
    """Installed versions of what wrote and ran artifacts of `formats` (and MediaPipe, for the app check)."""
    names = ["tensorflow", "keras"] + [p for f in sorted(formats) for p in FORMATS[f].packages]
    if app_runtime:
        names.append("mediapipe")
    found = {}
    for name in dict.fromkeys(names):
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            found[name] = None
    return found


def size_and_hash(path: Path, fmt: str) -> tuple[int, str]:
    """Bytes and sha256 of an artifact: a file, the files its format module lists (``files(path)``),
    or a folder's files by relative path and content, sorted."""
    h = hashlib.sha256()
    listed = getattr(implementation(fmt), "files", None)
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.is_file())
    else:
        files = listed(path) if listed else [path]
    size = 0
    for f in files:
        if path.is_dir():
            h.update(f.relative_to(path).as_posix().encode() + b"\0")
        with open(f, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
        size += f.stat().st_size
    return size, h.hexdigest()
