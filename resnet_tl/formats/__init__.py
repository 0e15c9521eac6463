"""The one table of model file formats: what each is called, where its files go, which module handles it.

`FORMATS` is read by the recipe schema (`export.formats`), `--format`'s check
and help, the exporter and `load_predictor`. Each row names the module that
owns the format: ``write(ctx, dest, quantize)`` (`resnet_tl.formats.context`
says what ctx holds), ``load(path, num_threads) -> (run_batch, image_size)``
and ``io_details(path) -> {"input": ..., "output": ...}``. Adding a format is
that module plus one row here; every help text, error and check follows.
Importing this package imports nothing heavy: a format's module is imported
when that format is written or loaded.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Callable

from resnet_tl.errors import UserError

# --quantize value -> the name in artifact file names.
QUANT_NAMES = {"none": "float32", "float16": "float16", "dynamic": "dynamic", "int8": "int8"}


@dataclass(frozen=True)
class Format:
    """One model format.

    title: its name in help texts. suffix: of its file ("" for a folder format,
    told apart by `is_folder`). filename / sidecar: quantize -> artifact path /
    sidecar JSON name inside export/. runtime: what runs it in the parity
    check. module: the module that writes, loads and describes it. quantize:
    the --quantize values it takes. extra: the pip extra its writer and loader
    need, if any. packages: the distributions whose versions the manifest records.
    """

    title: str
    suffix: str
    filename: Callable[[str], str]
    sidecar: Callable[[str], str]
    runtime: str
    module: str
    quantize: tuple[str, ...] = ("none",)
    is_folder: Callable[[Path], bool] | None = None
    extra: str | None = None
    packages: tuple[str, ...] = ()


FORMATS: dict[str, Format] = {
    "keras": Format("Keras .keras", ".keras", lambda q: "model.keras", lambda q: "model.json", "keras",
                    "resnet_tl.formats.keras_model"),
    "savedmodel": Format("SavedModel", "", lambda q: "savedmodel", lambda q: "savedmodel.json", "tensorflow",
                         "resnet_tl.formats.savedmodel", is_folder=lambda p: (p / "saved_model.pb").exists()),
    "tflite": Format("TFLite", ".tflite", lambda q: f"model_{QUANT_NAMES[q]}.tflite", lambda q: f"model_{QUANT_NAMES[q]}.json",
                     "litert", "resnet_tl.formats.tflite", ("none", "float16", "dynamic", "int8"),
                     packages=("ai-edge-litert",)),
    "onnx": Format("ONNX", ".onnx", lambda q: "model.onnx", lambda q: "model_onnx.json", "onnxruntime",
                   "resnet_tl.formats.onnx_model", extra="onnx", packages=("onnxruntime", "tf2onnx", "onnx")),
    # IR = model_openvino.xml (graph) + model_openvino.bin (weights) side by side.
    "openvino": Format("OpenVINO IR", ".xml", lambda q: "model_openvino.xml", lambda q: "model_openvino.json", "openvino",
                       "resnet_tl.formats.openvino_ir", extra="openvino", packages=("openvino",)),
}


def implementation(name: str) -> ModuleType:
    """The module that writes, loads and describes format `name` (imported now)."""
    return importlib.import_module(FORMATS[name].module)


def titles() -> str:
    """'Keras .keras, SavedModel, TFLite, ...': every format, for help texts."""
    return ", ".join(f.title for f in FORMATS.values())


def file_kinds() -> str:
    """'.keras, .tflite, .onnx, .xml or a SavedModel folder': what a model path may be."""
    kinds = [f.suffix for f in FORMATS.values() if f.suffix]
    kinds += [f"a {f.title} folder" for f in FORMATS.values() if f.is_folder is not None]
    return ", ".join(kinds[:-1]) + " or " + kinds[-1] if len(kinds) > 1 else "".join(kinds)


def detect_format(path: str | Path) -> str:
    """The format of a model file or folder, from the table; UserError otherwise."""
    p = Path(path)
    if p.is_dir():
        for name, f in FORMATS.items():
            if f.is_folder is not None and f.is_folder(p):
                return name
        folders = " or ".join(f.title for f in FORMATS.values() if f.is_folder is not None)
        raise UserError(f"model '{p}': not a run folder (no model.keras) and not a {folders} folder; "
                        f"allowed: a run folder, {file_kinds()}")
    if not p.exists():
        raise UserError(f"model '{p}': no such file or folder")
    for name, f in FORMATS.items():
        if f.suffix and p.suffix.lower() == f.suffix:
            return name
    raise UserError(f"model '{p}': received suffix {p.suffix!r}; allowed: {file_kinds()}")
