"""Export a run's classifier for servers and phones, then check each artifact in its real runtime.

    export_run("runs/x", formats=["all"], quantize=["none", "int8"]) -> ExportResult

Writes ``RUN/export/``: one artifact per (format, quantisation) from the
`resnet_tl.formats.FORMATS` table (each format's module writes it), a sidecar
JSON beside each (labels, image size, input/output dtypes and quantisation,
preprocessing note, the run's calibration temperature), ``labels.txt`` and
``manifest.json``. Unless ``check=False``, every artifact is loaded by
`resnet_tl.formats.predictor.load_predictor` and run over the validation
split, streamed in batches, and held to the gates of `resnet_tl.export.parity`.
The ``.keras`` artifact is the run's own file, so it is loaded and run but
gated on nothing. Each artifact's ``gates`` record which figures were gated,
against what, with the sample's one-sided 95% bounds. A full-int8 .tflite that
fails in LiteRT is repaired when it can be (`resnet_tl.export.int8_repair`).
A failed gate keeps the files, marks them ``"check": "failed"`` in the
manifest (merged with earlier exports' entries) and raises `ExportCheckFailed`
last, with how to go on.

Every ``.tflite`` carries TFLite Model Metadata and its labels
(`resnet_tl.formats.tflite_metadata`), and gets a second parity row: MediaPipe's
ImageClassifier on the validation image files, as an app runs it
(`resnet_tl.export.app_check`), held to the same gates.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from resnet_tl import __version__
from resnet_tl.data import load_dataset
from resnet_tl.errors import ExportCheckFailed, UserError
from resnet_tl.export.app_check import app_row
from resnet_tl.export.int8_repair import repair_int8
from resnet_tl.export.manifest import runtime_versions, sidecar, size_and_hash, write_manifest
from resnet_tl.export.parity import degenerate_warnings, describe_gate, gates, how_to_go_on, overall, parity
from resnet_tl.fileio import atomic_write_json
from resnet_tl.formats import FORMATS, QUANT_NAMES, implementation
from resnet_tl.formats.context import WriteContext, tensorflow
from resnet_tl.formats.tflite_metadata import ModelInfo
from resnet_tl.inference.calibration import load_calibration
from resnet_tl.kerasenv import keras_module
from resnet_tl.models.batched import predict_probs
from resnet_tl.models.saving import float32_copy, load_keras_model
from resnet_tl.recipe import Recipe, load_recipe
from resnet_tl.runs import RunPaths, open_run, read_labels, write_labels


@dataclass
class Artifact:
    format: str
    quantize: str
    path: str  # relative to the export folder
    sidecar: str
    runtime: str
    size_bytes: int = 0
    sha256: str = ""
    check: str = "skipped"  # passed | failed | skipped
    parity: dict | None = None
    gates: dict = field(default_factory=dict)  # figure -> {value, limit, passed}; empty: nothing gated
    io: dict = field(default_factory=dict)
    note: str = ""  # why a check was skipped or could not run
    repair: dict | None = None  # int8 only: what `resnet_tl.export.int8_repair` tried

    def to_dict(self) -> dict:
        return dict(self.__dict__)


@dataclass
class ExportResult:
    export_dir: Path
    artifacts: list[Artifact]
    versions: dict[str, str]
    n_check_images: int
    seconds: float
    warnings: list[str] = field(default_factory=list)

    @property
    def failed(self) -> list[Artifact]:
        return [a for a in self.artifacts if a.check == "failed"]

    def to_dict(self) -> dict:
        return {"export_dir": str(self.export_dir), "check": overall({a.check for a in self.artifacts}),
                "n_check_images": self.n_check_images, "seconds": round(self.seconds, 2), "warnings": self.warnings,
                "versions": self.versions, "artifacts": [a.to_dict() for a in self.artifacts]}


def artifacts_to_write(formats: list[str], quantize: list[str]) -> list[tuple[str, str]]:
    """(format, quantize) pairs to write; non-quantisable formats are written once, in float."""
    fmts = list(FORMATS) if "all" in formats else list(dict.fromkeys(formats))
    for f in fmts:
        if f not in FORMATS:
            raise UserError(f"--format: received {f!r}; allowed: {', '.join(FORMATS)}, all")
    quants = list(dict.fromkeys(quantize))
    for q in quants:
        if q not in QUANT_NAMES:
            raise UserError(f"--quantize: received {q!r}; allowed: {', '.join(QUANT_NAMES)}")
    if not fmts or not quants:
        raise UserError(f"export: received formats={fmts} quantize={quants}; allowed: at least one of each")
    pairs = []
    for f in fmts:
        allowed = FORMATS[f].quantize
        chosen = [q for q in quants if q in allowed] if len(allowed) > 1 else ["none"]
        pairs += [(f, q) for q in chosen]
    unused = [q for q in quants if q != "none" and not any(q == pq for _, pq in pairs)]
    if unused:
        takes = ", ".join(name for name, f in FORMATS.items() if unused[0] in f.quantize)
        raise UserError(f"--quantize {unused[0]}: applies only to format {takes}; formats received: {', '.join(fmts)}")
    return pairs


def export_run(
    run_dir: str | Path,
    formats: list[str] | None = None,
    quantize: list[str] | None = None,
    *,
    check: bool = True,
    dataset=None,
    representative: np.ndarray | None = None,
    progress: Callable[[str], None] | None = None,
    overrides: list[str] = (),
) -> ExportResult:
    """Export `run_dir`'s model.keras to `formats` x `quantize` (default: the recipe's export section).

    dataset: arrays with x_train/y_train/x_val/y_val (tests; default: the
    recipe's data folder, loaded through the decode cache). representative:
    uint8 images that calibrate int8 (default: a class-stratified sample of
    the training split). overrides: ``export.KEY=VALUE`` items (``--set``) applied
    to the run's stored recipe for this export only. Raises ExportCheckFailed after
    writing everything when an artifact is shown worse than a gate's limit.
    """
    t0 = time.time()
    say = progress or (lambda msg: None)
    paths, recipe, labels = _finished_run(run_dir, overrides)
    cfg = recipe.export
    pairs = artifacts_to_write(formats or list(cfg.formats), quantize or list(cfg.quantize))
    tensorflow()  # every writer but the .keras copy needs it: fail now, in one line, if it is missing
    model = load_keras_model(paths.model)
    image_size = int(model.input_shape[1])
    needs_data = check or any(q == "int8" for _, q in pairs)
    if needs_data and dataset is None:
        say("loading the dataset (decode cache)")
        dataset = load_dataset(recipe.data)
    if representative is None and any(q == "int8" for _, q in pairs):
        representative = representative_sample(dataset.x_train, dataset.y_train, cfg.representative_samples, recipe.train.seed)

    out = paths.export_dir
    out.mkdir(parents=True, exist_ok=True)
    write_labels(out / "labels.txt", labels)
    calibration = load_calibration(paths.root)
    ctx = WriteContext(model_file=paths.model, float_model=float32_copy(model), image_size=image_size, labels=labels,
                       int8_io=cfg.int8_io, resize=recipe.data.resize, representative=representative,
                       info=_model_info(paths, recipe, labels, image_size, calibration))

    reference, warnings = None, []
    if check:
        say("running the Keras model over the validation split")
        # Batch by batch: the split stays a uint8 memmap, never a float32 copy in RAM.
        reference = predict_probs(model, dataset.x_val, 64)
        warnings += degenerate_warnings(reference, dataset.y_val, labels)
        for w in warnings:
            say(f"warning: {w}")
    artifacts = []
    try:
        for fmt, q in pairs:
            artifacts += _write_one(ctx, fmt, q, out, cfg, calibration, dataset if check else None, reference, say)
    finally:
        ctx.close()

    result = ExportResult(out, artifacts, runtime_versions({a.format for a in artifacts}, any(a.runtime == "mediapipe" for a in artifacts)),
                          len(dataset.y_val) if check else 0, time.time() - t0, warnings)
    thresholds = {"float": cfg.min_agreement_float, "int8": cfg.min_agreement_int8, "max_accuracy_drop": cfg.max_accuracy_drop}
    write_manifest(result, paths.root, thresholds, image_size, labels)
    if result.failed:
        err = ExportCheckFailed("; ".join(
            f"{a.path} ({a.runtime}): " + ", ".join([describe_gate(k, g) for k, g in a.gates.items() if not g["passed"]]
                                                    + ([a.note] if a.note else []))
            for a in result.failed
        ) + f" (files kept in {out}, marked failed in manifest.json). {how_to_go_on(paths.root)}")
        err.result = result
        raise err
    return result


def _write_one(ctx: WriteContext, fmt: str, q: str, out: Path, cfg, calibration, dataset, reference, say) -> list[Artifact]:
    """Write one artifact and its sidecar; with a dataset, check it (and a .tflite in MediaPipe too)."""
    spec = FORMATS[fmt]
    art = Artifact(fmt, q, spec.filename(q), spec.sidecar(q), spec.runtime)
    say(f"writing {art.path}")
    module = implementation(fmt)
    module.write(ctx, out / art.path, q)
    art.size_bytes, art.sha256 = size_and_hash(out / art.path, fmt)
    art.io = module.io_details(out / art.path)
    atomic_write_json(out / art.sidecar, sidecar(art, ctx.image_size, ctx.labels, calibration, ctx.resize), indent=2)
    if dataset is None:
        return [art]
    say(f"checking {art.path} in {art.runtime}")
    art.parity = parity(out / art.path, dataset.x_val, dataset.y_val, reference, cfg.latency_images)
    art.gates = {} if fmt == "keras" else gates(art.parity, cfg, q)
    art.check = "passed" if all(g["passed"] for g in art.gates.values()) else "failed"
    if fmt == "tflite" and q == "int8" and art.check == "failed" and cfg.int8_repair:
        say(f"{art.path} failed its gate: ranking its layers with LiteRT's quantization debugger, keeping the worst in float")
        _repair(ctx, art, out, cfg, dataset, reference, calibration)
    if fmt != "tflite":
        return [art]
    say(f"checking {art.path} in MediaPipe's ImageClassifier (image files, as an app)")
    return [art, app_row(art, out / art.path, ctx.labels, cfg, dataset, reference, ctx.scratch())]


def _repair(ctx: WriteContext, art: Artifact, out: Path, cfg, dataset, reference, calibration) -> None:
    """Repair a failed int8 artifact in place (`resnet_tl.export.int8_repair`); `art` records every attempt."""
    last = {}

    def check(path: Path) -> dict:
        p = parity(path, dataset.x_val, dataset.y_val, reference, cfg.latency_images)
        g = gates(p, cfg, "int8")
        last.update(parity=p, gates=g)
        return {"agreement": p["agreement"], "accuracy": p["accuracy"], "latency_ms": p["latency_ms"],
                "passed": all(v["passed"] for v in g.values())}

    plain = {"float_layers": [], "size_bytes": art.size_bytes, "agreement": art.parity["agreement"],
             "accuracy": art.parity["accuracy"], "latency_ms": art.parity["latency_ms"], "passed": False}
    rep = repair_int8(ctx, out / art.path, check, plain, cfg.int8_repair_max_growth)
    art.repair, art.note = rep.to_dict(), rep.summary()
    if rep.passed:
        module = implementation("tflite")
        art.parity, art.gates, art.check = last["parity"], last["gates"], "passed"
        art.size_bytes, art.sha256 = size_and_hash(out / art.path, "tflite")
        art.io = module.io_details(out / art.path)
        atomic_write_json(out / art.sidecar, sidecar(art, ctx.image_size, ctx.labels, calibration, ctx.resize), indent=2)


def _model_info(paths: RunPaths, recipe: Recipe, labels: list[str], image_size: int, calibration) -> ModelInfo:
    """Name, description and version written into each .tflite's metadata, from the run."""
    what = f"{recipe.model.backbone} image classifier, {len(labels)} classes, {image_size}x{image_size} RGB input"
    desc = f"{recipe.description.strip()} ({what})" if recipe.description.strip() else what
    if calibration is not None:
        # The outputs stay uncalibrated (parity); the temperature travels in the file for apps that want it.
        desc += (f". Calibration: temperature {calibration.temperature:.6g}; calibrated probabilities = "
                 "softmax(log(p) / temperature) of the output p")
    return ModelInfo(name=recipe.name, description=desc, version=paths.root.resolve().name,
                     author=f"resnet-tl {__version__}")


def _finished_run(run_dir, overrides: list[str] = ()) -> tuple[RunPaths, Recipe, list[str]]:
    """A finished run's paths, its stored recipe (plus `overrides` of export keys) and labels,
    under the TensorFlow backend export needs."""
    for item in overrides:
        # The model is trained: only how it is exported and checked may change.
        if not item.strip().startswith("export."):
            raise UserError(f"export --set {item}: received key {item.partition('=')[0]!r}; allowed: export.* keys "
                            "(e.g. --set export.max_accuracy_drop=0.02); the rest of the recipe made the model")
    keras = keras_module()
    if keras.backend.backend() != "tensorflow":
        raise UserError(f"export: Keras backend is {keras.backend.backend()!r}; allowed: tensorflow (set KERAS_BACKEND=tensorflow)")
    paths = open_run(run_dir, finished=True)
    return paths, load_recipe(str(paths.recipe), list(overrides)), read_labels(paths.labels)


def representative_sample(x: np.ndarray, y: np.ndarray, n: int, seed: int = 0) -> np.ndarray:
    """Up to `n` images, drawn round-robin over classes (each class shuffled), so every class is seen."""
    rng = np.random.default_rng(seed)
    per_class = [rng.permutation(np.flatnonzero(y == c)) for c in np.unique(y)]
    order = [idx[i] for i in range(max(map(len, per_class), default=0)) for idx in per_class if i < len(idx)]
    return np.asarray(x[np.sort(order[:n])])
