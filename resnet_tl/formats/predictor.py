"""One callable interface over every model file resnet-tl writes.

    predictor = load_predictor("runs/x/export/model_int8.tflite")
    probs = predictor(images)        # uint8 (B, S, S, 3) RGB -> float32 (B, C)
    predictor.image_size, predictor.labels, predictor.format

Formats, chosen from the path: ``.keras`` files (Keras), SavedModel folders
(TensorFlow, signature ``serving_default``), ``.tflite`` files (LiteRT's
interpreter, quantized input/output handled with the tensor's own scale and
zero point), ``.onnx`` files (onnxruntime) and OpenVINO IR ``.xml`` files
(with their ``.bin`` beside; OpenVINO's CPU plugin). Each runs in its real runtime,
imported only when a model of that format is loaded.

Labels come from the sidecar JSON beside the model (``<stem>_<format>.json``
or ``<stem>.json``; ``savedmodel.json`` for a ``savedmodel/`` folder), else a
``labels.txt`` beside it (or inside a SavedModel folder), else None.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

import numpy as np

from resnet_tl.cpus import usable_cpus
from resnet_tl.errors import UserError
from resnet_tl.formats import FORMATS, detect_format

# format name -> load(path, num_threads) -> (run_batch: uint8 (B,S,S,3) ->
# float32 (B,C), image_size); filled by @loads.
LOADERS: dict[str, Callable] = {}


def loads(fmt: str):
    """Register the decorated function as the loader of `fmt` (a row of formats.FORMATS)."""
    if fmt not in FORMATS:
        raise ValueError(f"loads: received {fmt!r}; allowed: {', '.join(FORMATS)}")

    def register(fn):
        LOADERS[fmt] = fn
        return fn

    return register



class Predictor:
    """uint8 RGB images (B, S, S, 3) -> float32 class probabilities (B, C)."""

    def __init__(self, run_batch: Callable[[np.ndarray], np.ndarray], *, path: Path, format: str,
                 image_size: int, labels: list[str] | None, sidecar: dict | None, batch_size: int = 32):
        self._run_batch = run_batch
        self.path = path
        self.format = format
        self.image_size = image_size
        self.labels = labels
        self.sidecar = sidecar
        self.batch_size = batch_size

    def __call__(self, images) -> np.ndarray:
        """images: uint8 (B, S, S, 3) or one (S, S, 3), any array-like (a memmap is
        read `batch_size` images at a time, never whole)."""
        if getattr(images, "ndim", None) == 3:
            images = np.asarray(images)[None]
        outs = [self._run_batch(self._check(images[i:i + self.batch_size]))
                for i in range(0, len(images), self.batch_size)]
        if not outs:
            self._check(np.asarray(images))
            n = len(self.labels) if self.labels else 0
            return np.zeros((0, n), np.float32)
        return np.concatenate(outs).astype(np.float32, copy=False)

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
    run_batch, image_size = LOADERS[fmt](p, num_threads)
    labels = (sidecar or {}).get("labels") or _labels_beside(p)
    return Predictor(run_batch, path=p, format=fmt, image_size=int(image_size), labels=labels,
                     sidecar=sidecar, batch_size=batch_size)


# ------------------------------------------------------- batched inference
def inference_batches(x, batch_size: int):
    """Consecutive float32 batches of `x` (a uint8 memmap or any array), in order."""
    for i in range(0, len(x), batch_size):
        yield np.asarray(x[i:i + batch_size], dtype=np.float32)


def predict_batched(model, x, batch_size: int, transform=None) -> np.ndarray:
    """model outputs (N, ...) float32 for inputs `x` (N, ...), `batch_size` at a time.

    predict_on_batch runs a compiled function (calling the model eagerly is
    several times slower under TensorFlow); the last batch is padded to full
    size so that function is traced once, not again for a smaller shape.
    transform: applied to each float32 batch first (e.g. augmentation).
    """
    out = []
    for xb in inference_batches(x, batch_size):
        n = len(xb)
        if n < batch_size and len(x) > batch_size:
            xb = np.concatenate([xb, np.zeros((batch_size - n, *xb.shape[1:]), xb.dtype)])
        if transform is not None:
            xb = transform(xb)
        out.append(np.asarray(model.predict_on_batch(xb), dtype="float32")[:n])
    if out:
        return np.concatenate(out)
    return np.zeros((0, *model.output_shape[1:]), "float32")


def predict_probs(model, x, batch_size: int) -> np.ndarray:
    """Class probabilities (N, classes) float32 for uint8 or float pixels (N, S, S, 3)."""
    return predict_batched(model, x, batch_size)


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


def _labels_beside(path: Path) -> list[str] | None:
    from resnet_tl.runs import read_labels

    for c in ([path / "labels.txt"] if path.is_dir() else []) + [path.parent / "labels.txt"]:
        if c.is_file():
            return read_labels(c)
    return None


# ------------------------------------------------------------------ runtimes
def load_keras_model(path: str | Path):
    """A .keras file as a Keras model: safe mode (no code runs from the file), not compiled."""
    from resnet_tl.kerasenv import keras_module

    keras = keras_module()
    import resnet_tl.models.classifier  # noqa: F401  registers Preprocess

    return keras.saving.load_model(str(path), safe_mode=True, compile=False)


@loads("keras")
def _load_keras(path: Path, num_threads):
    keras = __import__("keras")
    model = load_keras_model(path)
    state = {"size": 0}

    def run(x):
        # predict_on_batch runs a compiled function (an eager call measured ~1.3x slower on 2 CPU cores);
        # a smaller batch is padded to the largest size seen so that function is not traced again.
        n = len(x)
        state["size"] = max(state["size"], n)
        xb = x.astype(np.float32)
        if n < state["size"]:
            xb = np.concatenate([xb, np.zeros((state["size"] - n, *xb.shape[1:]), np.float32)])
        return np.asarray(keras.ops.convert_to_numpy(model.predict_on_batch(xb)), np.float32)[:n]

    return run, int(model.input_shape[1])


def import_tensorflow():
    from resnet_tl.kerasenv import fd2_silenced, quiet_tensorflow

    quiet_tensorflow()
    try:
        with fd2_silenced():
            import tensorflow as tf
    except ImportError:
        raise UserError("export needs TensorFlow: pip install tensorflow") from None
    return tf


@loads("savedmodel")
def _load_savedmodel(path: Path, num_threads):
    tf = import_tensorflow()
    loaded = tf.saved_model.load(str(path))
    if "serving_default" not in loaded.signatures:
        raise UserError(f"SavedModel '{path}': no 'serving_default' signature; found {sorted(loaded.signatures)}")
    fn = loaded.signatures["serving_default"]
    spec = fn.structured_input_signature[1]
    in_name, in_spec = next(iter(spec.items()))
    out_name = "probabilities" if "probabilities" in fn.structured_outputs else next(iter(fn.structured_outputs))

    def run(x):
        return fn(**{in_name: tf.constant(x.astype(in_spec.dtype.as_numpy_dtype))})[out_name].numpy()

    run.loaded = loaded  # keep the object (and its variables) alive
    return run, int(in_spec.shape[1])


@loads("tflite")
def _load_tflite(path: Path, num_threads):
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        raise UserError("TFLite models need LiteRT: pip install ai-edge-litert") from None
    from resnet_tl.kerasenv import fd2_silenced

    interp = Interpreter(model_path=str(path), num_threads=num_threads or usable_cpus())
    inp = interp.get_input_details()[0]
    state = {"batch": None}

    def run(x):
        if state["batch"] != len(x):
            interp.resize_tensor_input(inp["index"], [len(x), *inp["shape"][1:]])
            with fd2_silenced():  # LiteRT announces its XNNPACK delegate on stderr here
                interp.allocate_tensors()
            state["batch"] = len(x)
        i = interp.get_input_details()[0]
        o = interp.get_output_details()[0]
        interp.set_tensor(i["index"], quantize(x, i["dtype"], i["quantization"]))
        interp.invoke()
        return dequantize(interp.get_tensor(o["index"]), o["quantization"])

    return run, int(inp["shape"][1])


def quantize(x: np.ndarray, dtype, quantization: tuple[float, int]) -> np.ndarray:
    """float pixels -> a tensor of `dtype`, using (scale, zero_point) when it is an integer type."""
    dtype = np.dtype(dtype)
    if dtype.kind == "f":
        return x.astype(dtype)
    scale, zero = quantization
    if not scale:
        return x.astype(dtype)
    info = np.iinfo(dtype)
    return np.clip(np.rint(x.astype(np.float32) / scale + zero), info.min, info.max).astype(dtype)


def dequantize(q: np.ndarray, quantization: tuple[float, int]) -> np.ndarray:
    if q.dtype.kind == "f":
        return q.astype(np.float32)
    scale, zero = quantization
    if not scale:
        return q.astype(np.float32)
    return ((q.astype(np.float32) - zero) * scale).astype(np.float32)


@loads("onnx")
def _load_onnx(path: Path, num_threads):
    try:
        import onnxruntime as ort
    except ImportError:
        raise UserError('ONNX models need onnxruntime: pip install "resnet-tl[onnx]"') from None
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = num_threads or usable_cpus()
    sess = ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])
    inp = sess.get_inputs()[0]
    np_dtype = {"tensor(uint8)": np.uint8, "tensor(float16)": np.float16}.get(inp.type, np.float32)

    def run(x):
        return sess.run(None, {inp.name: x.astype(np_dtype)})[0]

    return run, int(inp.shape[1])


@loads("openvino")
def _load_openvino(path: Path, num_threads):
    try:
        import openvino as ov
    except ImportError:
        raise UserError('OpenVINO IR models need OpenVINO: pip install "resnet-tl[openvino]"') from None
    if not path.with_suffix(".bin").is_file():
        raise UserError(f"OpenVINO model '{path}': {path.with_suffix('.bin').name} missing beside it; allowed: the .xml and .bin pair export writes")
    core = ov.Core()
    config = {"INFERENCE_NUM_THREADS": int(num_threads)} if num_threads else {}
    # Compiled for the CPU in f32: OpenVINO's default on AVX-512/AMX CPUs would run bf16 and drift from Keras.
    compiled = core.compile_model(core.read_model(str(path)), "CPU", {**config, "INFERENCE_PRECISION_HINT": "f32"})
    inp = compiled.input(0)
    request = compiled.create_infer_request()

    def run(x):
        return np.asarray(request.infer({inp: x.astype(np.float32)})[compiled.output(0)])

    return run, int(inp.get_partial_shape()[1].get_length())
