"""Broken or hostile model files: one line naming the file and what is wrong, exit 2, no traceback."""

from __future__ import annotations

import os
import zipfile

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from resnet_tl.cli import app


@pytest.fixture(scope="module")
def image(tmp_path_factory):
    path = tmp_path_factory.mktemp("img") / "a.png"
    Image.fromarray(np.full((16, 16, 3), 90, np.uint8)).save(path)
    return path


def _predict_fails(model, image) -> str:
    r = CliRunner().invoke(app, ["predict", str(model), str(image)])
    assert r.exit_code == 2, r.output
    assert "Traceback" not in r.output
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and str(model) in lines[0], r.stderr
    return lines[0]


@pytest.mark.parametrize("suffix, says", [(".keras", "not a Keras archive"), (".tflite", "not a TFLite model"),
                                          (".onnx", "not a loadable ONNX model")])
def test_random_bytes_in_a_model_file(tmp_path, image, suffix, says):
    model = tmp_path / f"model{suffix}"
    model.write_bytes(os.urandom(4096))
    line = _predict_fails(model, image)
    assert says in line
    assert "File not found" not in line  # what Keras says of a file that exists but is no zip archive


def test_a_zip_that_is_not_a_keras_model(tmp_path, image):
    model = tmp_path / "model.keras"
    with zipfile.ZipFile(model, "w") as z:
        z.writestr("notes.txt", "hello")
    assert "not a loadable Keras model" in _predict_fails(model, image)


def test_a_keras_model_with_a_lambda_layer_is_refused_by_safe_mode(tmp_path, image):
    import keras

    inputs = keras.Input((16, 16, 3))
    x = keras.layers.Lambda(lambda t: t * 2.0)(inputs)  # code that would run when the file is loaded
    outputs = keras.layers.Dense(2, activation="softmax")(keras.layers.GlobalAveragePooling2D()(x))
    model = tmp_path / "hostile.keras"
    keras.Model(inputs, outputs).save(model)
    line = _predict_fails(model, image)
    assert "safe mode" in line and "Lambda" in line
