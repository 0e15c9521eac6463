"""int8 that repairs itself: when a full-int8 .tflite fails its gate, keep its worst layers in float.

    repair_int8(ctx, dest, check, max_growth=2.0) -> Repair

LiteRT's quantization debugger (``tf.lite.experimental.QuantizationDebugger``)
runs the calibrated model with a NumericVerify op after every quantised layer
and reports per-layer error statistics on the representative images. Layers
are ranked by ``rmse/scale``: the root-mean-square error of a layer's int8
output in units of its quantisation step (about 0.29 = 1/sqrt(12) for pure
rounding noise; much more means the int8 range does not fit the layer, e.g. a
very wide activation range). The worst 1, 2, 4, ... layers are kept in float
(the debugger's ``denylisted_nodes``), the model is re-quantised from the same
calibration with the same input/output types, and re-checked, until the gates
pass or the file would grow past ``max_growth`` times the plain int8 file.
Each attempt is reported (size, agreement, accuracy, latency, float layers);
when none passes, the report says so and names quantization-aware training as
the next step.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from collections.abc import Callable

import numpy as np

from resnet_tl.fileio import atomic_write_bytes
from resnet_tl.formats.context import WriteContext, float_savedmodel, quiet, tensorflow
from resnet_tl.formats.tflite import pin_input_range
from resnet_tl.formats.tflite_metadata import with_metadata

QAT_ADVICE = ("keeping more layers in float would pass the size bound (export.int8_repair_max_growth); next step: "
              "quantization-aware fine-tuning (tfmot.quantization.keras.quantize_model on the trained model), or ship "
              "model_dynamic.tflite / model_float16.tflite")


@dataclass
class Repair:
    """What the repair tried. attempts: one dict per model checked, the plain int8 first:
    {float_layers, size_bytes, agreement, accuracy, latency_ms, passed}. ranked: layer -> rmse/scale, worst first."""
    passed: bool
    float_layers: list[str]
    attempts: list[dict] = field(default_factory=list)
    ranked: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {"passed": self.passed, "float_layers": self.float_layers, "attempts": self.attempts,
                "ranked": {k: round(v, 4) for k, v in self.ranked.items()}}

    def summary(self) -> str:
        """One line for the table's notes."""
        if self.passed:
            a = self.attempts[-1]
            return (f"int8 repaired: {len(self.float_layers)} layer(s) kept in float ({', '.join(self.float_layers)}), "
                    f"{a['size_bytes'] / 1e6:.2f} MB, agreement {a['agreement']:.4f}; the quantization debugger ranked "
                    f"{len(self.ranked)} layers ({len(self.attempts)} attempts in manifest.json)")
        tried = max((len(a["float_layers"]) for a in self.attempts), default=0)
        return f"int8 repair: not enough with up to {tried} layer(s) in float; {QAT_ADVICE}"


def _converter(ctx: WriteContext):
    tf = tensorflow()
    converter = tf.lite.TFLiteConverter.from_saved_model(str(float_savedmodel(ctx)))
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    rep = pin_input_range(ctx.representative)
    converter.representative_dataset = lambda: ([rep[i:i + 1].astype(np.float32)] for i in range(len(rep)))
    return converter, rep


def rank_layers(ctx: WriteContext) -> tuple[dict[str, float], Callable[[list[str]], bytes]]:
    """({layer tensor name: rmse/scale}, worst first; requantize(float_layers) -> .tflite bytes with metadata)."""
    tf = tensorflow()
    converter, rep = _converter(ctx)
    data = lambda: ([rep[i:i + 1].astype(np.float32)] for i in range(len(rep)))
    with quiet(), warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # the debugger runs tf.lite.Interpreter, which warns it is deprecated
        debugger = tf.lite.experimental.QuantizationDebugger(converter=converter, debug_dataset=data)
        debugger.run()
    ranked = {}
    for row in _layer_rows(debugger):
        scale, mse = float(row["scale"] or 0), float(row["mean_squared_error"] or "nan")
        if scale > 0 and math.isfinite(mse):
            ranked[row["tensor_name"]] = math.sqrt(mse) / scale
    ranked = dict(sorted(ranked.items(), key=lambda kv: -kv[1]))
    calibrated = debugger.calibrated_model
    io_type = {"int8": tf.int8, "uint8": tf.uint8, "float32": tf.float32}[ctx.int8_io]

    def requantize(float_layers: list[str]) -> bytes:
        # What the debugger's get_nondebug_quantized_model runs, with the input/output types of
        # export.int8_io given as the converter gives them to the MLIR quantizer.
        from tensorflow.lite.python import convert

        with quiet():
            flat = convert.mlir_quantize(calibrated, input_data_type=io_type, output_data_type=io_type,
                                         denylisted_nodes=list(float_layers) or None)
        return with_metadata(flat, ctx.labels, ctx.info)

    return ranked, requantize


def _layer_rows(debugger) -> list[dict]:
    """The debugger's per-layer statistics as rows: tensor_name, op_name, scale, mean_squared_error, ..."""
    import csv
    import io

    buf = io.StringIO()
    debugger.layer_statistics_dump(buf)
    buf.seek(0)
    return list(csv.DictReader(buf))


def repair_int8(ctx: WriteContext, dest: Path, check: Callable[[Path], dict], plain: dict, max_growth: float = 2.0) -> Repair:
    """Keep the worst 1, 2, 4, ... layers in float until `check(path)` passes or the file outgrows
    `max_growth` x the plain int8 file. plain: the plain int8 attempt as `Repair.attempts` rows.
    check(path) -> {agreement, accuracy, latency_ms, passed}. On success `dest` holds the repaired model."""
    ranked, requantize = rank_layers(ctx)
    rep = Repair(False, [], [plain], ranked)
    names = list(ranked)
    k = 1
    while k <= len(names):
        layers = names[:k]
        flat = requantize(layers)
        if len(flat) > max_growth * plain["size_bytes"]:
            break
        trial = dest.with_name(dest.stem + f".repair{k}.tflite")
        atomic_write_bytes(trial, flat)
        try:
            result = check(trial)
        except Exception:
            trial.unlink(missing_ok=True)
            raise
        rep.attempts.append({"float_layers": layers, "size_bytes": len(flat), **result})
        if result["passed"]:
            trial.replace(dest)
            rep.passed, rep.float_layers = True, layers
            return rep
        trial.unlink(missing_ok=True)
        if k == len(names):
            break
        k = min(2 * k, len(names))
    return rep
