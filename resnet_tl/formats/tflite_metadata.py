"""TFLite Model Metadata, so app runtimes read a `.tflite` as it is.

    with_metadata(flatbuffer, labels, info) -> flatbuffer with metadata and labels.txt packed in

MediaPipe Tasks' ImageClassifier, ML Kit custom models and Android Studio's
model binding all read the same metadata: the input image's colour space and
normalisation, the output as class scores, and an associated ``labels.txt``
whose lines become the category names. Written with MediaPipe's own metadata
writer (`mediapipe.tasks.python.metadata.metadata_writers`), not hand-built
flatbuffers.

Our input contract is RGB pixels 0..255 with the backbone's normalisation
inside the model, so float inputs say mean 0 / std 1. A uint8 input carries
its quantisation in the tensor itself (an app feeds raw pixels, so
`app_input_problem` insists on scale 1, zero point 0). MediaPipe supports one
mean/std for all channels and only uint8 or float32 image inputs.
"""

from __future__ import annotations

import gc
import importlib
import json
import sys
import types
from dataclasses import dataclass

from resnet_tl.errors import UserError

LABEL_FILE = "labels.txt"


@dataclass(frozen=True)
class ModelInfo:
    """What the metadata says about the model (strings shown by model viewers and Android Studio)."""
    name: str
    description: str
    version: str
    author: str = "resnet-tl"


def _writers():
    try:
        import mediapipe  # noqa: F401
    except ImportError:
        raise UserError("TFLite metadata needs MediaPipe's writer: pip install mediapipe") from None
    _provide_parser_version_module()
    from mediapipe.tasks.python.metadata.metadata_writers import metadata_info, metadata_writer

    return metadata_info, metadata_writer


_PARSER_VERSION_MODULE = "mediapipe.tasks.cc.metadata.python._pywrap_metadata_version"


def _provide_parser_version_module() -> None:
    """Stand in for MediaPipe's compiled `_pywrap_metadata_version` where the wheel lacks it.

    MediaPipe's pip wheels since they moved to C bindings (0.10.3x, 1.x) ship
    the metadata writer but not this one compiled helper it imports, so the
    writer fails on import. It computes a single string, the metadata's
    minimum parser version; `min_parser_version` ports that rule table
    (mediapipe/tasks/cc/metadata/metadata_version.cc). A wheel that has the
    real module keeps it.
    """
    try:
        importlib.import_module(_PARSER_VERSION_MODULE)
        return
    except ImportError:
        pass
    importlib.import_module("mediapipe.tasks")
    parts = _PARSER_VERSION_MODULE.split(".")
    for i in range(2, len(parts)):  # mediapipe.tasks exists; its cc.* subpackages may not
        name = ".".join(parts[:i + 1])
        if name not in sys.modules:
            module = types.ModuleType(name)
            module.__path__ = []  # a package, so the next level imports from it
            sys.modules[name] = module
            setattr(sys.modules[".".join(parts[:i])], parts[i], module)
    leaf = sys.modules[_PARSER_VERSION_MODULE]
    leaf.GetMinimumMetadataParserVersion = min_parser_version


def min_parser_version(metadata_buffer: bytes) -> str:
    """The lowest metadata parser version that reads `metadata_buffer` (a ModelMetadata flatbuffer), e.g. "1.0.0".

    Each schema member added after 1.0.0 raises the floor to the version that introduced it.
    """
    from mediapipe.tasks.metadata import metadata_schema_py_generated as fb

    md = fb.ModelMetadataT.InitFromObj(fb.ModelMetadata.GetRootAsModelMetadata(bytearray(metadata_buffer), 0))
    found = [(1, 0, 0)]

    def files(items):
        for f in items or []:
            if f.type == fb.AssociatedFileType.VOCABULARY:
                found.append((1, 0, 1))
            if f.type == fb.AssociatedFileType.SCANN_INDEX_FILE:
                found.append((1, 4, 0))
            if f.version is not None:
                found.append((1, 4, 1))

    def units(items):
        tokenizers = {fb.ProcessUnitOptions.BertTokenizerOptions: (1, 1, 0),
                      fb.ProcessUnitOptions.SentencePieceTokenizerOptions: (1, 1, 0),
                      fb.ProcessUnitOptions.RegexTokenizerOptions: (1, 2, 1)}
        for u in items or []:
            if u.optionsType in tokenizers:
                found.append(tokenizers[u.optionsType])

    for sg in md.subgraphMetadata or []:
        for t in (sg.inputTensorMetadata or []) + (sg.outputTensorMetadata or []):
            files(t.associatedFiles)
            units(t.processUnits)
            if t.content is not None and t.content.contentPropertiesType == fb.ContentProperties.AudioProperties:
                found.append((1, 3, 0))
        files(sg.associatedFiles)
        for field_, version in (("inputProcessUnits", (1, 1, 0)), ("outputProcessUnits", (1, 1, 0))):
            if getattr(sg, field_) is not None:
                found.append(version)
                units(getattr(sg, field_))
        for field_, version in (("inputTensorGroups", (1, 2, 0)), ("outputTensorGroups", (1, 2, 0)), ("customMetadata", (1, 5, 0))):
            if getattr(sg, field_) is not None:
                found.append(version)
    files(md.associatedFiles)
    return ".".join(map(str, max(found)))


def with_metadata(flatbuffer: bytes, labels: list[str], info: ModelInfo) -> bytes:
    """`flatbuffer` (a single-input image classifier) with image-classifier metadata and labels.txt packed in."""
    metadata_info, metadata_writer = _writers()
    writer = metadata_writer.MetadataWriter.create(bytearray(flatbuffer))
    writer.add_general_info(info.name, info.description)
    # add_general_info takes no version or author; the GeneralMd it made has both fields.
    writer._general_md = metadata_info.GeneralMd(name=info.name, version=info.version,
                                                 description=info.description, author=info.author)
    writer.add_image_input(norm_mean=[0.0], norm_std=[1.0],
                           description="RGB pixels 0..255, the whole image resized to the input size; "
                                       "the backbone's normalisation is inside the model.")
    writer.add_classification_output(metadata_writer.Labels().add(list(labels), exported_filename=LABEL_FILE),
                                     description="Probabilities of the classes in labels.txt (softmax, sum 1).")
    flatbuffer_out, _json = writer.populate()
    # The writer sits in a reference cycle; collected now, its temporary folder
    # is removed while the interpreter can still do it (not at exit, noisily).
    del writer
    gc.collect()
    return bytes(flatbuffer_out)


def read_metadata(flatbuffer: bytes) -> dict:
    """{"json": the metadata as JSON text, "labels": the packed labels.txt lines}; what an app would see."""
    _writers()  # the same import fix-up as for writing
    from mediapipe.tasks.python.metadata import metadata

    displayer = metadata.MetadataDisplayer.with_model_buffer(bytearray(flatbuffer))
    labels = displayer.get_associated_file_buffer(LABEL_FILE).decode("utf-8").splitlines()
    return {"metadata": json.loads(displayer.get_metadata_json()), "labels": labels,
            "files": displayer.get_packed_associated_file_list()}


def app_input_problem(io: dict) -> str | None:
    """Why an app runtime (MediaPipe) cannot feed this model raw pixels, or None. `io` as in the sidecar."""
    inp = io["input"]
    if inp["dtype"] not in ("uint8", "float32"):
        return f"input dtype {inp['dtype']}: MediaPipe image models take uint8 or float32 (set export.int8_io: uint8)"
    q = inp.get("quantization")
    if inp["dtype"] == "uint8" and q and (abs(q["scale"] - 1.0) > 1e-6 or q["zero_point"] != 0):
        return f"uint8 input quantised with scale {q['scale']:.6g}, zero point {q['zero_point']}: apps feed raw pixels (scale 1, zero point 0)"
    return None
