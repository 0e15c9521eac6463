"""The OpenVINO IR format: model_openvino.xml (graph) + .bin (weights), written by Keras, run by OpenVINO's CPU plugin."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from resnet_tl.errors import UserError
from resnet_tl.formats.context import WriteContext, export_signature, quiet, static_io


def write(ctx: WriteContext, dest: Path, quantize: str) -> None:
    try:
        import openvino  # noqa: F401
    except ImportError:
        raise UserError('export --format openvino needs OpenVINO: pip install "resnet-tl[openvino]"') from None
    signature = export_signature(ctx)
    # Keras writes NAME.xml and NAME.bin; write both under a temporary stem, then move them in.
    tmp = dest.with_name(f".{dest.stem}.partial-{os.getpid()}.xml")
    try:
        with quiet():
            ctx.float_model.export(str(tmp), format="openvino", input_signature=signature, verbose=False)
        os.replace(tmp.with_suffix(".bin"), dest.with_suffix(".bin"))
        os.replace(tmp, dest)
    finally:
        for p in (tmp, tmp.with_suffix(".bin")):
            p.unlink(missing_ok=True)


def load(path: Path, num_threads: int | None):
    """(uint8 (B, S, S, 3) -> float32 probabilities (B, C), S) compiled for the CPU in f32."""
    try:
        import openvino as ov
    except ImportError:
        raise UserError('OpenVINO IR models need OpenVINO: pip install "resnet-tl[openvino]"') from None
    if not path.with_suffix(".bin").is_file():
        raise UserError(f"OpenVINO model '{path}': {path.with_suffix('.bin').name} missing beside it; allowed: the .xml and .bin pair export writes")
    core = ov.Core()
    config = {"INFERENCE_NUM_THREADS": int(num_threads)} if num_threads else {}
    # f32: OpenVINO's default on AVX-512/AMX CPUs would run bf16 and drift from Keras.
    compiled = core.compile_model(core.read_model(str(path)), "CPU", {**config, "INFERENCE_PRECISION_HINT": "f32"})
    inp = compiled.input(0)
    request = compiled.create_infer_request()

    def run(x):
        return np.asarray(request.infer({inp: x.astype(np.float32)})[compiled.output(0)])

    return run, int(inp.get_partial_shape()[1].get_length())


def io_details(path: Path) -> dict:
    return static_io("image", "float32")


def files(path: Path) -> list[Path]:
    """The files of one IR model: the graph and its weights."""
    return [path, path.with_suffix(".bin")]
