"""Export a run's classifier for servers and phones, then check each artifact in its real runtime.

    export_run("runs/x", formats=["all"], quantize=["none", "int8"]) -> ExportResult

Writes ``RUN/export/``: one artifact per (format, quantisation) from the
`resnet_tl.formats.FORMATS` table, a sidecar JSON beside each (labels, image size, input/output
dtypes and quantisation, preprocessing note, the run's calibration temperature), ``labels.txt`` and
``manifest.json``. Unless ``check=False``, every artifact is loaded by
`resnet_tl.formats.predictor.load_predictor` (Keras, TensorFlow, LiteRT, onnxruntime,
OpenVINO) and run over the validation split, streamed in batches. Two gates: its top-1
agreement with the Keras model must reach ``export.min_agreement_float``
(``min_agreement_int8`` for the int8-weight TFLite models: dynamic-range and
full int8), and its accuracy on the labels may fall at most
``export.max_accuracy_drop`` below the Keras model's. Agreement alone passes a
model that always predicts one class (it agrees with itself however badly it
is quantised), so that case is also warned about. The ``.keras`` artifact is
the run's own file, so it is loaded and run but gated on nothing. Each
artifact's ``gates`` record which figures were gated, against what. A failed
gate keeps the files, marks them ``"check": "failed"`` in the manifest and
raises `ExportCheckFailed` last.

Every ``.tflite`` carries TFLite Model Metadata and its labels
(`resnet_tl.formats.tflite_metadata`), and gets a second parity row: MediaPipe's
ImageClassifier on the validation image files, as an app runs it
(`resnet_tl.export.exporter.app_check`), held to the same threshold.

TensorFlow is imported only inside the functions that need it.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import hashlib
import os
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import numpy as np

from resnet_tl.inference.calibration import Calibration, load_calibration, sidecar_fields
from resnet_tl.errors import ExportCheckFailed, UserError
from resnet_tl.formats import FORMATS, QUANT_NAMES
from resnet_tl.fileio import atomic_dir, atomic_path, atomic_write_bytes, atomic_write_json
from resnet_tl.formats.predictor import import_tensorflow, predict_probs
from resnet_tl.runs import RunPaths, open_run, read_labels, write_labels

if TYPE_CHECKING:
    from resnet_tl.recipe import ExportConfig, Recipe

PREPROCESSING_NOTE = (
    "Feed RGB pixels 0..255 (uint8, or float32 where the input dtype says so), resized to "
    "image_size x image_size (whole image, bilinear, no crop); the backbone's normalisation is inside the model."
)


# format name -> its writer(ctx, dest: Path, quantize: str); filled by @writes.
WRITERS: dict[str, Callable] = {}


def writes(fmt: str):
    """Register the decorated function as the writer of `fmt` (a row of formats.FORMATS)."""
    if fmt not in FORMATS:
        raise ValueError(f"writes: received {fmt!r}; allowed: {', '.join(FORMATS)}")

    def register(fn):
        WRITERS[fmt] = fn
        return fn

    return register


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
        return {"export_dir": str(self.export_dir), "check": _overall(self.artifacts),
                "n_check_images": self.n_check_images, "seconds": round(self.seconds, 2), "warnings": self.warnings,
                "versions": self.versions, "artifacts": [a.to_dict() for a in self.artifacts]}


# ------------------------------------------------------------------- plan
def plan_artifacts(formats: list[str], quantize: list[str]) -> list[tuple[str, str]]:
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
        raise UserError(f"--quantize {unused[0]}: applies only to format tflite; formats received: {', '.join(fmts)}")
    return pairs


# ------------------------------------------------------------------- export
def export_run(
    run_dir: str | Path,
    formats: list[str] | None = None,
    quantize: list[str] | None = None,
    *,
    check: bool = True,
    dataset=None,
    representative: np.ndarray | None = None,
    progress: Callable[[str], None] | None = None,
) -> ExportResult:
    """Export `run_dir`'s model.keras to `formats` x `quantize` (default: the recipe's export section).

    dataset: arrays with x_train/y_train/x_val/y_val (tests; default: the
    recipe's data folder, loaded through the decode cache). representative:
    uint8 images that calibrate int8 (default: a class-stratified sample of
    the training split). Raises ExportCheckFailed after writing everything
    when an artifact disagrees with the Keras model beyond the threshold.
    """
    t0 = time.time()
    say = progress or (lambda msg: None)
    paths, recipe, labels = _open_run(run_dir)
    cfg = recipe.export
    pairs = plan_artifacts(formats or list(cfg.formats), quantize or list(cfg.quantize))
    tf = import_tensorflow()
    keras = _keras()

    model = load_model(paths.model)
    float_model = float32_copy(model, recipe, len(labels))
    image_size = int(model.input_shape[1])
    needs_data = check or any(q == "int8" for _, q in pairs)
    if needs_data and dataset is None:
        from resnet_tl.data import load_dataset

        say("loading the dataset (decode cache)")
        dataset = load_dataset(recipe.data)
    if representative is None and any(q == "int8" for _, q in pairs):
        representative = representative_sample(dataset.x_train, dataset.y_train, cfg.representative_samples, recipe.train.seed)

    out = paths.export_dir
    out.mkdir(parents=True, exist_ok=True)
    write_labels(out / "labels.txt", labels)
    ctx = _Context(tf=tf, keras=keras, model=model, float_model=float_model, paths=paths, cfg=cfg,
                   image_size=image_size, labels=labels, representative=representative,
                   info=_model_info(paths, recipe, labels, image_size), calibration=load_calibration(paths.root))

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
        artifacts = _write_all(ctx, pairs, out, check, dataset, reference, say)
    finally:
        if ctx.scratch is not None:
            shutil.rmtree(ctx.scratch, ignore_errors=True)

    result = ExportResult(out, artifacts, runtime_versions({a.runtime for a in artifacts}),
                          len(dataset.y_val) if check else 0, time.time() - t0, warnings)
    _write_manifest(result, paths, cfg, image_size, labels)
    if result.failed:
        err = ExportCheckFailed("; ".join(
            f"{a.path} ({a.runtime}): " + (a.note or ", ".join(_describe_gate(k, g) for k, g in a.gates.items() if not g["passed"]))
            for a in result.failed
        ) + f" (files kept in {out}, marked failed in manifest.json)")
        err.result = result
        raise err
    return result


def _write_all(ctx, pairs, out: Path, check: bool, dataset, reference, say) -> list[Artifact]:
    artifacts = []
    for fmt, q in pairs:
        spec = FORMATS[fmt]
        art = Artifact(fmt, q, spec.filename(q), spec.sidecar(q), spec.runtime)
        say(f"writing {art.path}")
        WRITERS[fmt](ctx, out / art.path, q)
        art.size_bytes, art.sha256 = _size_and_hash(out / art.path)
        art.io = _io_details(out / art.path, fmt)
        atomic_write_json(out / art.sidecar, _sidecar(art, ctx), indent=2)
        if check:
            say(f"checking {art.path} in {art.runtime}")
            art.parity = parity(out / art.path, dataset.x_val, dataset.y_val, reference, ctx.cfg.latency_images)
            art.gates = {} if fmt == "keras" else gates(art.parity, ctx.cfg, q)
            art.check = "passed" if all(g["passed"] for g in art.gates.values()) else "failed"
        artifacts.append(art)
        if check and fmt == "tflite":
            say(f"checking {art.path} in MediaPipe's ImageClassifier (image files, as an app)")
            artifacts.append(_app_row(ctx, art, out, dataset, reference))
    return artifacts


def _app_row(ctx, art: Artifact, out: Path, dataset, reference) -> Artifact:
    """MediaPipe's parity row for a checked .tflite: its files, its decoder and resize, its category names."""
    from resnet_tl.export.exporter.app_check import files_for, mediapipe_parity
    from resnet_tl.formats.tflite_metadata import app_input_problem

    row = Artifact(art.format, art.quantize, art.path, art.sidecar, "mediapipe",
                   art.size_bytes, art.sha256, io=art.io)
    problem = app_input_problem(art.io)
    if problem:
        row.check, row.note = "failed", problem
        return row
    files, same_pixels, source = files_for(dataset, _scratch(ctx) / "val_png")
    p = mediapipe_parity(out / art.path, files, ctx.labels, reference, dataset.y_val, ctx.cfg.latency_images, same_pixels)
    p["images"] = source
    row.parity, need = p, threshold(ctx.cfg, art.quantize)
    row.gates = gates(p, ctx.cfg, art.quantize)
    row.check = "passed" if all(g["passed"] for g in row.gates.values()) and p["names_from_model"] else "failed"
    if not p["names_from_model"]:
        row.note = "MediaPipe returned no category names from the model's metadata"
    elif p["agreement"] < need and p.get("agreement_same_pixels", 0.0) >= need:
        row.note = (f"top-1 agreement {p['agreement']:.4f} < {need} on the image files, {p['agreement_same_pixels']:.4f} "
                    "on our decoder's pixels: MediaPipe's own resize (bilinear, no antialiasing) or dropped alpha "
                    "changes predictions; see README 'In an app'")
    return row


@dataclass
class _Context:
    tf: object
    keras: object
    model: object
    float_model: object
    paths: RunPaths
    cfg: ExportConfig
    image_size: int
    labels: list[str]
    representative: np.ndarray | None
    info: object = None  # tflite_metadata.ModelInfo
    scratch: Path | None = None
    calibration: Calibration | None = None


def _scratch(ctx: _Context) -> Path:
    """This export's scratch folder (removed when the export ends)."""
    if ctx.scratch is None:
        ctx.scratch = Path(tempfile.mkdtemp(prefix="resnet-tl-export-"))
    return ctx.scratch


def _model_info(paths: RunPaths, recipe: Recipe, labels: list[str], image_size: int):
    """Name, description and version written into each .tflite's metadata, from the run."""
    from resnet_tl import __version__
    from resnet_tl.formats.tflite_metadata import ModelInfo

    what = f"{recipe.model.backbone} image classifier, {len(labels)} classes, {image_size}x{image_size} RGB input"
    desc = f"{recipe.description.strip()} ({what})" if recipe.description.strip() else what
    cal = load_calibration(paths.root)
    if cal is not None:
        # The outputs stay uncalibrated (parity); the temperature travels in the file for apps that want it.
        desc += (f". Calibration: temperature {cal.temperature:.6g}; calibrated probabilities = "
                 "softmax(log(p) / temperature) of the output p")
    return ModelInfo(name=recipe.name, description=desc, version=paths.root.resolve().name,
                     author=f"resnet-tl {__version__}")


# Formats whose weights are int8: they are held to the int8 threshold. A
# dynamic-range model flips near-tie predictions like a full-int8 one (seen:
# 1 of 120 on the sample run), which the float threshold would call a failure.
_INT8_WEIGHTS = ("dynamic", "int8")


def threshold(cfg: ExportConfig, quantize: str) -> float:
    return cfg.min_agreement_int8 if quantize in _INT8_WEIGHTS else cfg.min_agreement_float


def gates(parity: dict, cfg: ExportConfig, quantize: str) -> dict:
    """The gated figures of one artifact's parity: {name: {value, limit, passed}}."""
    agreement, drop = parity["agreement"], parity["keras_accuracy"] - parity["accuracy"]
    return {
        "agreement": {"value": agreement, "limit": threshold(cfg, quantize), "passed": agreement >= threshold(cfg, quantize)},
        # A small epsilon: accuracies are ratios of counts, and 0.95 - 0.94 is not exactly 0.01 in floats.
        "accuracy_drop": {"value": round(drop, 6), "limit": cfg.max_accuracy_drop, "passed": drop <= cfg.max_accuracy_drop + 1e-9},
    }


def _describe_gate(name: str, g: dict) -> str:
    if name == "agreement":
        return f"top-1 agreement {g['value']:.4f} < {g['limit']}"
    return f"accuracy drop {g['value']:.4f} > {g['limit']} (export.max_accuracy_drop)"


def degenerate_warnings(reference: np.ndarray, y: np.ndarray, labels: list[str]) -> list[str]:
    """Warnings when the Keras model predicts one class for every validation image (with several classes present)."""
    predicted = np.unique(reference.argmax(1)) if len(reference) else np.array([], int)
    if len(predicted) == 1 and len(np.unique(y)) > 1:
        return [f"the Keras model predicts '{labels[int(predicted[0])]}' for all {len(reference)} validation images: "
                "agreement with it says little; check the run before shipping these files"]
    return []


def _overall(artifacts: list[Artifact]) -> str:
    checks = {a.check for a in artifacts}
    return "failed" if "failed" in checks else ("skipped" if checks == {"skipped"} else "passed")


# ------------------------------------------------------------------- loading
def _keras():
    from resnet_tl.kerasenv import keras_module

    keras = keras_module()
    if keras.backend.backend() != "tensorflow":
        raise UserError(f"export: Keras backend is {keras.backend.backend()!r}; allowed: tensorflow (set KERAS_BACKEND=tensorflow)")
    return keras


def _open_run(run_dir) -> tuple[RunPaths, Recipe, list[str]]:
    from resnet_tl.recipe import load_recipe

    paths = open_run(run_dir, finished=True)
    return paths, load_recipe(str(paths.recipe)), read_labels(paths.labels)


def load_model(path: Path):
    """The run's Keras model, under the TensorFlow backend that export needs."""
    from resnet_tl.formats.predictor import load_keras_model

    _keras()
    return load_keras_model(path)


def float32_copy(model, recipe: Recipe, n_classes: int):
    """`model` itself when it computes in float32; else the same classifier rebuilt
    under the float32 policy with the weights copied (converters need float32 compute)."""
    keras = _keras()
    if all(layer.dtype_policy.compute_dtype == "float32" for layer in _leaf_layers(model)):
        return model
    from resnet_tl.models.classifier import build_classifier

    before = keras.config.dtype_policy()
    keras.mixed_precision.set_dtype_policy("float32")
    try:
        rebuilt = build_classifier(recipe.model.model_copy(update={"weights": "none"}), n_classes, int(model.input_shape[1]))
    finally:
        keras.mixed_precision.set_dtype_policy(before)
    rebuilt.set_weights([np.asarray(w, np.float32) for w in model.get_weights()])
    return rebuilt


def _leaf_layers(model):
    for layer in model.layers:
        yield from (_leaf_layers(layer) if hasattr(layer, "layers") and layer.layers else [layer])


def representative_sample(x: np.ndarray, y: np.ndarray, n: int, seed: int = 0) -> np.ndarray:
    """Up to `n` images, drawn round-robin over classes (each class shuffled), so every class is seen."""
    rng = np.random.default_rng(seed)
    per_class = [rng.permutation(np.flatnonzero(y == c)) for c in np.unique(y)]
    order = [idx[i] for i in range(max(map(len, per_class), default=0)) for idx in per_class if i < len(idx)]
    return np.asarray(x[np.sort(order[:n])])


# ------------------------------------------------------------------- writers
@writes("keras")
def _write_keras(ctx: _Context, dest: Path, q: str) -> None:
    atomic_write_bytes(dest, ctx.paths.model.read_bytes())


def _serving_functions(ctx: _Context):
    """(images uint8 -> probabilities, image_bytes -> probabilities) as tf.functions over the float32 model."""
    tf, model, s = ctx.tf, ctx.float_model, ctx.image_size

    @tf.function(input_signature=[tf.TensorSpec([None, s, s, 3], tf.uint8, name="images")])
    def serve(images):
        return {"probabilities": model(tf.cast(images, tf.float32), training=False)}

    def decode(data):
        from resnet_tl.formats.graph_decode import decode_image_bytes

        # As training decodes: EXIF orientation, alpha on white, whole image squashed to s x s.
        return decode_image_bytes(tf, data, s)

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="image_bytes")])
    def serve_bytes(image_bytes):
        images = tf.map_fn(decode, image_bytes, fn_output_signature=tf.TensorSpec([s, s, 3], tf.uint8))
        return {"probabilities": model(tf.cast(images, tf.float32), training=False)}

    return serve, serve_bytes


@writes("savedmodel")
def _write_savedmodel(ctx: _Context, dest: Path, q: str) -> None:
    serve, serve_bytes = _serving_functions(ctx)
    archive = ctx.keras.export.ExportArchive()
    archive.track(ctx.float_model)
    archive.add_endpoint("serving_default", serve)
    archive.add_endpoint("serving_bytes", serve_bytes)
    with atomic_dir(dest) as tmp:
        with _quiet():
            archive.write_out(str(tmp), verbose=False)


@writes("tflite")
def _write_tflite(ctx: _Context, dest: Path, q: str) -> None:
    # Converting from a SavedModel freezes the Keras variables into constants;
    # from_concrete_functions leaves READ_VARIABLE ops that break int8 calibration.
    converter = ctx.tf.lite.TFLiteConverter.from_saved_model(str(_float_savedmodel(ctx)))
    _configure_quantization(converter, ctx.tf, q, ctx)
    with _quiet():
        flatbuffer = converter.convert()
    from resnet_tl.formats.tflite_metadata import with_metadata

    atomic_write_bytes(dest, with_metadata(flatbuffer, ctx.labels, ctx.info))


def _float_savedmodel(ctx: _Context) -> Path:
    """A scratch SavedModel of the float32 model (float pixels in), written once per export."""
    if not (_scratch(ctx) / "sm").exists():
        tf, s, model = ctx.tf, ctx.image_size, ctx.float_model
        archive = ctx.keras.export.ExportArchive()
        archive.track(model)
        archive.add_endpoint("serving_default", tf.function(lambda image: model(image, training=False)),
                             input_signature=[tf.TensorSpec([None, s, s, 3], tf.float32, name="image")])
        with _quiet():
            archive.write_out(str(ctx.scratch / "sm"), verbose=False)
    return ctx.scratch / "sm"


def _configure_quantization(converter, tf, q: str, ctx: _Context) -> None:
    if q == "none":
        return
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if q == "float16":
        converter.target_spec.supported_types = [tf.float16]
    elif q == "int8":
        rep = ctx.representative
        if rep is None or len(rep) == 0:
            raise UserError("export int8: no representative images; allowed: a training split with images")
        rep = pin_input_range(rep)
        converter.representative_dataset = lambda: ([rep[i:i + 1].astype(np.float32)] for i in range(len(rep)))
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        io_type = {"int8": tf.int8, "uint8": tf.uint8, "float32": tf.float32}[ctx.cfg.int8_io]
        converter.inference_input_type = io_type
        converter.inference_output_type = io_type


def pin_input_range(images: np.ndarray) -> np.ndarray:
    """A copy of the calibration images whose first image holds one pixel 0 and one 255.

    The converter quantises the input over the range it saw; pinned to 0..255,
    a uint8 input gets scale 1 and zero point 0, i.e. raw pixels, which is what
    app runtimes (MediaPipe, ML Kit) feed a uint8 model. Two pixels of one image
    barely move the other tensors' ranges.
    """
    pinned = np.array(images, copy=True)
    pinned[0, 0, 0, :] = 0
    pinned[0, 0, -1, :] = 255
    return pinned


def _export_signature(ctx: _Context) -> list:
    """The float32 (B, S, S, 3) input signature Keras's exporters take; calls the
    float model once first, since Keras exports only models that were called."""
    tf, s = ctx.tf, ctx.image_size
    ctx.float_model(np.zeros((1, s, s, 3), np.float32))
    return [tf.TensorSpec([None, s, s, 3], tf.float32, name="image")]


@writes("openvino")
def _write_openvino(ctx: _Context, dest: Path, q: str) -> None:
    try:
        import openvino  # noqa: F401
    except ImportError:
        raise UserError('export --format openvino needs OpenVINO: pip install "resnet-tl[openvino]"') from None
    signature = _export_signature(ctx)
    # Keras writes NAME.xml and NAME.bin; write both under a temporary stem, then move them in.
    tmp = dest.with_name(f".{dest.stem}.partial-{os.getpid()}.xml")
    try:
        with _quiet():
            ctx.float_model.export(str(tmp), format="openvino", input_signature=signature, verbose=False)
        os.replace(tmp.with_suffix(".bin"), dest.with_suffix(".bin"))
        os.replace(tmp, dest)
    finally:
        for p in (tmp, tmp.with_suffix(".bin")):
            p.unlink(missing_ok=True)


@writes("onnx")
def _write_onnx(ctx: _Context, dest: Path, q: str) -> None:
    try:
        import onnx  # noqa: F401
        import tf2onnx  # noqa: F401
    except ImportError:
        raise UserError('export --format onnx needs the onnx extra: pip install "resnet-tl[onnx]" (tf2onnx, onnx, onnxruntime)') from None
    signature = _export_signature(ctx)
    with atomic_path(dest) as tmp, _quiet():
        ctx.float_model.export(str(tmp), format="onnx", input_signature=signature, verbose=False)


# ------------------------------------------------------------------- checks
def parity(path: Path, x: np.ndarray, y: np.ndarray, reference: np.ndarray, latency_images: int) -> dict:
    """Run the artifact in its own runtime over (x, y) and compare with the Keras `reference` probabilities.

    x: uint8 (N, S, S, 3), a memmap is fine (read 64 images at a time); reference: float32 (N, C).
    """
    from resnet_tl.formats.predictor import load_predictor

    predictor = load_predictor(path, batch_size=64)
    probs = predictor(x)
    pred, ref = probs.argmax(1), reference.argmax(1)
    y = np.asarray(y)
    return {
        "agreement": float(np.mean(pred == ref)),
        "accuracy": float(np.mean(pred == y)),
        "keras_accuracy": float(np.mean(ref == y)),
        "max_abs_diff": float(np.max(np.abs(probs - reference))),
        "predicted_classes": int(len(np.unique(pred))),
        "latency_ms": latency_ms(predictor, x, latency_images),
    }


def latency_ms(predictor, x: np.ndarray, n: int) -> float:
    """Mean wall time of one single-image call, after one warm-up call."""
    single = np.asarray(x[:1])
    predictor(single)
    n = max(1, n)
    images = [np.asarray(x[i % len(x)][None]) for i in range(n)]
    t = time.perf_counter()
    for img in images:
        predictor(img)
    return round((time.perf_counter() - t) / n * 1000.0, 3)


# ------------------------------------------------------------------- sidecars and manifest
def _io_details(path: Path, fmt: str) -> dict:
    if fmt == "tflite":
        from ai_edge_litert.interpreter import Interpreter

        from resnet_tl.kerasenv import fd2_silenced

        with fd2_silenced():
            interp = Interpreter(model_path=str(path))

        def one(d):
            scale, zero = d["quantization"]
            return {"name": d["name"], "dtype": np.dtype(d["dtype"]).name, "shape": [int(v) for v in d["shape_signature"]],
                    "quantization": {"scale": float(scale), "zero_point": int(zero)} if scale else None}

        return {"input": one(interp.get_input_details()[0]), "output": one(interp.get_output_details()[0])}
    if fmt == "onnx":
        import onnxruntime as ort

        sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        i, o = sess.get_inputs()[0], sess.get_outputs()[0]
        names = {"tensor(float)": "float32", "tensor(float16)": "float16", "tensor(uint8)": "uint8", "tensor(int8)": "int8"}
        dtype = lambda t: names.get(t, t)  # noqa: E731
        return {"input": {"name": i.name, "dtype": dtype(i.type), "shape": [None, None, None, 3], "quantization": None},
                "output": {"name": o.name, "dtype": dtype(o.type), "shape": [None, None], "quantization": None}}
    in_dtype, in_name = {"savedmodel": ("uint8", "images"), "keras": ("float32", "image"), "openvino": ("float32", "image")}[fmt]
    return {"input": {"name": in_name, "dtype": in_dtype, "shape": [None, None, None, 3], "quantization": None},
            "output": {"name": "probabilities", "dtype": "float32", "shape": [None, None], "quantization": None}}


def _sidecar(art: Artifact, ctx: _Context) -> dict:
    io = {k: dict(v, shape=[None if i == 0 else (ctx.image_size if i in (1, 2) and k == "input" else d)
                            for i, d in enumerate(v["shape"])]) for k, v in art.io.items()}
    io["output"]["shape"] = [None, len(ctx.labels)]
    extra = {"signatures": {"serving_default": "images uint8 (None, S, S, 3) -> probabilities float32 (None, C)",
                            "serving_bytes": "image_bytes string (None,) JPEG/PNG -> probabilities float32 (None, C)"}} \
        if art.format == "savedmodel" else {}
    return {"format": art.format, "file": art.path, "quantize": art.quantize, "labels": ctx.labels,
            "image_size": ctx.image_size, **io, "preprocessing": PREPROCESSING_NOTE, **extra,
            # The outputs stay uncalibrated (parity with the Keras model); consumers apply the temperature.
            **sidecar_fields(ctx.calibration)}


def runtime_versions(runtimes: set[str]) -> dict[str, str]:
    """Installed versions of the packages that wrote and ran the artifacts of `runtimes`."""
    from importlib.metadata import PackageNotFoundError, version

    extra = {"onnxruntime": ["onnxruntime", "tf2onnx", "onnx"], "mediapipe": ["mediapipe"], "openvino": ["openvino"]}
    names = ["tensorflow", "keras", "ai-edge-litert"] + [n for r in sorted(runtimes) for n in extra.get(r, [])]
    found = {}
    for name in names:
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            found[name] = None
    return found


def _write_manifest(result: ExportResult, paths: RunPaths, cfg: ExportConfig, image_size: int, labels: list[str]) -> None:
    doc = {
        "run": str(paths.root),
        "created": _dt.datetime.now().astimezone().isoformat(timespec="seconds"),
        "image_size": image_size,
        "labels": labels,
        "check": _overall(result.artifacts),
        "thresholds": {"float": cfg.min_agreement_float, "int8": cfg.min_agreement_int8,
                       "max_accuracy_drop": cfg.max_accuracy_drop},
        "warnings": result.warnings,
        "n_check_images": result.n_check_images,
        "versions": result.versions,
        "artifacts": [a.to_dict() for a in result.artifacts],
    }
    atomic_write_json(result.export_dir / "manifest.json", doc, indent=2)


def _size_and_hash(path: Path) -> tuple[int, str]:
    """Bytes and sha256 of a file; for a folder, over its files' relative paths and contents, sorted."""
    h = hashlib.sha256()
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    if path.suffix == ".xml" and path.with_suffix(".bin").is_file():  # OpenVINO IR: graph + weights
        files.append(path.with_suffix(".bin"))
    size = 0
    for f in files:
        if path.is_dir():
            h.update(f.relative_to(path).as_posix().encode() + b"\0")
        with open(f, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
        size += f.stat().st_size
    return size, h.hexdigest()


@contextlib.contextmanager
def _quiet():
    """Converters print MLIR and absl chatter on fd 2; keep it off the user's terminal."""
    from resnet_tl.kerasenv import fd2_silenced

    with fd2_silenced():
        yield
