"""The one table of model file formats: what each is called, where its files go, what runs it.

`FORMATS` is read by the recipe schema (`export.formats`), `--format`'s check,
the exporter (each format's writer registers itself with `export.writes`)
and the runtimes (each loader registers itself with `runtimes.loads`); a test
checks that every row has both. Adding a format: a row here, a writer, a loader.
Importing this module imports nothing heavy.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from resnet_tl.errors import UserError

# --quantize value -> the name in artifact file names.
QUANT_NAMES = {"none": "float32", "float16": "float16", "dynamic": "dynamic", "int8": "int8"}


@dataclass(frozen=True)
class Format:
    """One model format.

    suffix: of its file ("" for a folder format, told apart by `is_folder`).
    filename / sidecar: quantize -> artifact path / sidecar JSON name inside export/.
    runtime: what runs it in the parity check. quantize: the --quantize values it takes.
    """

    suffix: str
    filename: Callable[[str], str]
    sidecar: Callable[[str], str]
    runtime: str
    quantize: tuple[str, ...] = ("none",)
    is_folder: Callable[[Path], bool] | None = None


FORMATS: dict[str, Format] = {
    "keras": Format(".keras", lambda q: "model.keras", lambda q: "model.json", "keras"),
    "savedmodel": Format("", lambda q: "savedmodel", lambda q: "savedmodel.json", "tensorflow",
                         is_folder=lambda p: (p / "saved_model.pb").exists()),
    "tflite": Format(".tflite", lambda q: f"model_{QUANT_NAMES[q]}.tflite", lambda q: f"model_{QUANT_NAMES[q]}.json",
                     "litert", ("none", "float16", "dynamic", "int8")),
    "onnx": Format(".onnx", lambda q: "model.onnx", lambda q: "model_onnx.json", "onnxruntime"),
    # IR = model_openvino.xml (graph) + model_openvino.bin (weights) side by side.
    "openvino": Format(".xml", lambda q: "model_openvino.xml", lambda q: "model_openvino.json", "openvino"),
}


def detect_format(path: str | Path) -> str:
    """The format of a model file or folder, from the table; UserError otherwise."""
    p = Path(path)
    if p.is_dir():
        for name, f in FORMATS.items():
            if f.is_folder is not None and f.is_folder(p):
                return name
        raise UserError(f"model '{p}': a folder without saved_model.pb; allowed: a SavedModel folder or a .keras/.tflite/.onnx/.xml file")
    if not p.exists():
        raise UserError(f"model '{p}': no such file or folder")
    for name, f in FORMATS.items():
        if f.suffix and p.suffix.lower() == f.suffix:
            return name
    suffixes = ", ".join(f.suffix for f in FORMATS.values() if f.suffix)
    raise UserError(f"model '{p}': received suffix {p.suffix!r}; allowed: {suffixes} or a SavedModel folder")
