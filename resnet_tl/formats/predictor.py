"""One callable interface over every model file resnet-tl writes.

    predictor = load_predictor("runs/x/export/model_int8.tflite")
    probs = predictor(images)        # uint8 (B, S, S, 3) RGB -> float32 (B, C)
    predictor.image_size, predictor.labels, predictor.format, predictor.resize

The format is chosen from the path (`resnet_tl.formats.detect_format`) and
its module's ``load`` runs it in its real runtime (Keras, TensorFlow, LiteRT,
onnxruntime, OpenVINO), imported only when a model of that format is loaded.

Labels come from the sidecar JSON beside the model (``<stem>_<format>.json``
or ``<stem>.json``; ``savedmodel.json`` for a ``savedmodel/`` folder), else a
``labels.txt`` beside it (or inside a SavedModel folder), else None.
``resize`` (the data.resize a model was trained with, which predict and
evaluate decode with) comes from the sidecar, else the run's ``recipe.yaml``
beside a ``model.keras``, else "antialias".
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

import numpy as np
import yaml

from resnet_tl.errors import UserError
from resnet_tl.formats import detect_format, implementation
from resnet_tl.runs import read_labels


class Predictor:
    """uint8 RGB images (B, S, S, 3) -> float32 class probabilities (B, C)."""

    def __init__(self, run_batch: Callable[[np.ndarray], np.ndarray], *, path: Path, format: str,
                 image_size: int, labels: list[str] | None, sidecar: dict | None, batch_size: int = 32,
                 resize: str = "antialias"):
        self._run_batch = run_batch
        self.path = path
        self.format = format
        self.image_size = image_size
        self.labels = labels
        self.sidecar = sidecar
        self.batch_size = batch_size
        self.resize = resize

    def __call__(self, images) -> np.ndarray:
        """images: uint8 (B, S, S, 3) or one (S, S, 3), any array-like (a memmap is
        read `batch_size` images at a time, never whole)."""
        if getattr(images, "ndim", None) == 3:
            images = np.asarray(images)[None]
        if getattr(self._run_batch, "batches_itself", False) and len(images):
            # Whole arrays to runners that batch on their own: they keep the device busy across batches.
            return self._run_batch(self._check(images), self.batch_size)
        outs = [self._run_batch(self._check(images[i:i + self.batch_size]))
                for i in range(0, len(images), self.batch_size)]
        if not outs:
            self._check(np.asarray(images))
            n = len(self.labels) if self.labels else 0
            return np.zeros((0, n), np.float32)
        return np.concatenate(outs).astype(np.float32, copy=False)

    def submit(self, images) -> Callable[[], np.ndarray]:
        """Start predicting one batch of images; the returned function waits for and returns the
        probabilities. A runner with `submit` (the .keras format) computes them while the caller
        prepares the next batch; others compute them now."""
        submit = getattr(self._run_batch, "submit", None)
        if submit is None or not len(images):
            probs = self(images)
            return lambda: probs
        return submit(self._check(images))

    def _check(self, images) -> np.ndarray:
        x = np.asarray(images)
        s = self.image_size
        if x.ndim == 3:
            x = x[None]
        if x.ndim != 4 or x.shape[1:] != (s, s, 3):
            raise UserError(f"images for {self.path}: received shape {x.shape}; allowed: (B, {s}, {s}, 3) RGB")
        if x.dtype != np.uint8:
            x = np.clip(np.rint(x), 0, 255).astype(np.uint8)
        return x

    def __repr__(self) -> str:
        return f"Predictor(format={self.format!r}, path='{self.path}', image_size={self.image_size})"


def load_predictor(path: str | Path, batch_size: int = 32, num_threads: int | None = None) -> Predictor:
    """Load any model resnet-tl writes into a `Predictor`."""
    p = Path(path)
    fmt = detect_format(p)
    sidecar = read_sidecar(p, fmt)
    run_batch, image_size = implementation(fmt).load(p, num_threads)
    labels = (sidecar or {}).get("labels") or _labels_beside(p)
    return Predictor(run_batch, path=p, format=fmt, image_size=int(image_size), labels=labels,
                     sidecar=sidecar, batch_size=batch_size, resize=(sidecar or {}).get("resize") or _resize_beside(p))


# ------------------------------------------------------------------ sidecars
def sidecar_candidates(path: Path, fmt: str) -> list[Path]:
    if fmt == "savedmodel":
        return [path.parent / f"{path.name}.json"]
    return [path.with_name(f"{path.stem}_{fmt}.json"), path.with_suffix(".json")]


def read_sidecar(path: Path, fmt: str) -> dict | None:
    for c in sidecar_candidates(path, fmt):
        if c.is_file():
            try:
                return json.loads(c.read_text(encoding="utf-8"))
            except (OSError, ValueError) as e:
                raise UserError(f"sidecar '{c}': not readable JSON ({e})") from None
    return None


def _resize_beside(path: Path) -> str:
    """data.resize of the run whose recipe.yaml sits beside `path` (a run's model.keras), else "antialias"."""
    recipe = path.parent / "recipe.yaml"
    if path.is_file() and recipe.is_file():
        try:
            data = (yaml.safe_load(recipe.read_text(encoding="utf-8")) or {}).get("data") or {}
            return str(data.get("resize") or "antialias")
        except (OSError, yaml.YAMLError, AttributeError):
            pass  # not a readable recipe: the model is decoded the default way
    return "antialias"


def _labels_beside(path: Path) -> list[str] | None:
    for c in ([path / "labels.txt"] if path.is_dir() else []) + [path.parent / "labels.txt"]:
        if c.is_file():
            return read_labels(c)
    return None
