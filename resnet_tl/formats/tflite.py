"""The TFLite format: float32, float16, dynamic-range and full-int8 models with Model Metadata, run by LiteRT."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from resnet_tl.cpus import usable_cpus
from resnet_tl.errors import UserError, one_line
from resnet_tl.fileio import atomic_write_bytes
from resnet_tl.formats.context import WriteContext, float_savedmodel, quiet, tensorflow
from resnet_tl.formats.tflite_metadata import with_metadata
from resnet_tl.kerasenv import fd2_silenced


def write(ctx: WriteContext, dest: Path, quantize: str) -> None:
    """Convert the float32 model (quantised as asked) and pack labels and metadata into the file."""
    tf = tensorflow()
    # Converting from a SavedModel freezes the Keras variables into constants;
    # from_concrete_functions leaves READ_VARIABLE ops that break int8 calibration.
    converter = tf.lite.TFLiteConverter.from_saved_model(str(float_savedmodel(ctx)))
    _configure_quantization(converter, tf, quantize, ctx)
    with quiet():
        flatbuffer = converter.convert()
    atomic_write_bytes(dest, with_metadata(flatbuffer, ctx.labels, ctx.info))


def _configure_quantization(converter, tf, q: str, ctx: WriteContext) -> None:
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
        io_type = {"int8": tf.int8, "uint8": tf.uint8, "float32": tf.float32}[ctx.int8_io]
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


def _interpreter(path: Path, num_threads: int | None = None):
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        raise UserError("TFLite models need LiteRT: pip install ai-edge-litert") from None
    try:
        with fd2_silenced():
            return Interpreter(model_path=str(path), num_threads=num_threads or usable_cpus())
    except (ValueError, RuntimeError) as e:  # LiteRT: "The model is not a valid Flatbuffer buffer"
        raise UserError(f"model '{path}': not a TFLite model ({one_line(e, 200)})") from None


def load(path: Path, num_threads: int | None):
    """(uint8 (B, S, S, 3) -> float32 probabilities (B, C), S) in LiteRT's interpreter, quantised tensors
    fed and read with their own scale and zero point."""
    interp = _interpreter(path, num_threads)
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


def io_details(path: Path) -> dict:
    """Name, dtype, shape and quantisation of the input and output tensors, as LiteRT reads them."""
    interp = _interpreter(path)

    def one(d):
        scale, zero = d["quantization"]
        return {"name": d["name"], "dtype": np.dtype(d["dtype"]).name, "shape": [int(v) for v in d["shape_signature"]],
                "quantization": {"scale": float(scale), "zero_point": int(zero)} if scale else None}

    return {"input": one(interp.get_input_details()[0]), "output": one(interp.get_output_details()[0])}
