"""What a format's writer is given, and the steps several writers share.

`WriteContext` carries the exported model and everything a writer may need;
the exporter (`resnet_tl.export.exporter`) builds one per export. TensorFlow
and Keras are imported only when a writer asks for them, never at import: the
loaders of TFLite, ONNX and OpenVINO files, which share these modules, run without either.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from resnet_tl.errors import UserError
from resnet_tl.kerasenv import fd2_silenced, keras_module, quiet_tensorflow


@dataclass
class WriteContext:
    """model_file: the run's model.keras. float_model: the classifier computing in float32, pixels
    0..255 (B, S, S, 3) -> probabilities (B, C). representative: uint8 images (N, S, S, 3) that calibrate
    int8, or None. int8_io: input/output dtype of full-int8 TFLite models. info: what TFLite metadata
    says about the model (`resnet_tl.formats.tflite_metadata.ModelInfo`)."""
    model_file: Path
    float_model: object
    image_size: int
    labels: list[str]
    int8_io: str = "uint8"
    resize: str = "antialias"  # data.resize the model was trained with; sidecars record it
    representative: np.ndarray | None = None
    info: object = None
    _scratch: Path | None = None

    def scratch(self) -> Path:
        """This export's scratch folder; `close()` removes it."""
        if self._scratch is None:
            self._scratch = Path(tempfile.mkdtemp(prefix="resnet-tl-export-"))
        return self._scratch

    def close(self) -> None:
        if self._scratch is not None:
            shutil.rmtree(self._scratch, ignore_errors=True)
            self._scratch = None


def tensorflow():
    """TensorFlow, imported quietly; UserError when it is not installed (writers and SavedModel need it)."""
    quiet_tensorflow()
    try:
        with fd2_silenced():
            import tensorflow as tf
    except ImportError:
        raise UserError("export needs TensorFlow: pip install tensorflow") from None
    return tf


@contextlib.contextmanager
def quiet():
    """Converters print MLIR and absl chatter on fd 2; keep it off the user's terminal."""
    with fd2_silenced():
        yield


def float_savedmodel(ctx: WriteContext) -> Path:
    """A scratch SavedModel of the float32 model (float pixels in), written once per export."""
    folder = ctx.scratch() / "sm"
    if not folder.exists():
        tf, s, model, keras = tensorflow(), ctx.image_size, ctx.float_model, keras_module()
        archive = keras.export.ExportArchive()
        archive.track(model)
        archive.add_endpoint("serving_default", tf.function(lambda image: model(image, training=False)),
                             input_signature=[tf.TensorSpec([None, s, s, 3], tf.float32, name="image")])
        with quiet():
            archive.write_out(str(folder), verbose=False)
    return folder


def export_signature(ctx: WriteContext) -> list:
    """The float32 (B, S, S, 3) input signature Keras's exporters take; calls the
    float model once first, since Keras exports only models that were called."""
    tf, s = tensorflow(), ctx.image_size
    ctx.float_model(np.zeros((1, s, s, 3), np.float32))
    return [tf.TensorSpec([None, s, s, 3], tf.float32, name="image")]


def static_io(in_name: str, in_dtype: str) -> dict:
    """The io_details of a format whose tensors are fixed by how we write it (no file to read)."""
    return {"input": {"name": in_name, "dtype": in_dtype, "shape": [None, None, None, 3], "quantization": None},
            "output": {"name": "probabilities", "dtype": "float32", "shape": [None, None], "quantization": None}}
