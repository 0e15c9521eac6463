"""The ONNX format: written by Keras's exporter (tf2onnx under TensorFlow), run by onnxruntime."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from resnet_tl.cpus import usable_cpus
from resnet_tl.errors import UserError, one_line
from resnet_tl.fileio import atomic_path
from resnet_tl.formats.context import WriteContext, export_signature, quiet

_DTYPES = {"tensor(float)": "float32", "tensor(float16)": "float16", "tensor(uint8)": "uint8", "tensor(int8)": "int8"}


def write(ctx: WriteContext, dest: Path, quantize: str) -> None:
    try:
        import onnx  # noqa: F401
        import tf2onnx  # noqa: F401
    except ImportError:
        raise UserError('export --format onnx needs the onnx extra: pip install "resnet-tl[onnx]" (tf2onnx, onnx, onnxruntime)') from None
    signature = export_signature(ctx)
    with atomic_path(dest) as tmp, quiet():
        ctx.float_model.export(str(tmp), format="onnx", input_signature=signature, verbose=False)


def _session(path: Path, num_threads: int | None = None):
    try:
        import onnxruntime as ort
    except ImportError:
        raise UserError('ONNX models need onnxruntime: pip install "resnet-tl[onnx]"') from None
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = num_threads or usable_cpus()
    try:
        return ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])
    except Exception as e:  # noqa: BLE001 - onnxruntime raises its own types (InvalidProtobuf, Fail, ...)
        raise UserError(f"model '{path}': not a loadable ONNX model ({one_line(e, 200)})") from None


def load(path: Path, num_threads: int | None):
    """(uint8 (B, S, S, 3) -> float32 probabilities (B, C), S) in onnxruntime's CPU provider."""
    sess = _session(path, num_threads)
    inp = sess.get_inputs()[0]
    np_dtype = {"tensor(uint8)": np.uint8, "tensor(float16)": np.float16}.get(inp.type, np.float32)

    def run(x):
        return sess.run(None, {inp.name: x.astype(np_dtype)})[0]

    return run, int(inp.shape[1])


def io_details(path: Path) -> dict:
    sess = _session(path)
    i, o = sess.get_inputs()[0], sess.get_outputs()[0]
    return {"input": {"name": i.name, "dtype": _DTYPES.get(i.type, i.type), "shape": [None, None, None, 3], "quantization": None},
            "output": {"name": o.name, "dtype": _DTYPES.get(o.type, o.type), "shape": [None, None], "quantization": None}}
