"""int8 that repairs itself: a quantization-hostile layer fails plain int8; the repaired file passes in LiteRT."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from resnet_tl.errors import ExportCheckFailed


def _hostile_model(x: np.ndarray, y: np.ndarray):
    """A small classifier of pixels 0..255 whose output layer has one weight of 1e4 on a channel that is
    always 0: the float model is unchanged, but int8 weight scales (max |w| / 127 per output) round every
    other weight of the layer to 0, so int8 predicts one class."""
    from resnet_tl.kerasenv import keras_module

    keras = keras_module()
    keras.utils.set_random_seed(0)
    inp = keras.Input(x.shape[1:])
    h = keras.layers.Rescaling(1 / 255.0)(inp)
    features = keras.layers.Conv2D(8, 3, activation="relu", name="features")(h)
    dead = keras.layers.Conv2D(1, 3, activation="relu", kernel_initializer="zeros", name="dead",
                               bias_initializer=keras.initializers.Constant(-1.0), trainable=False)(h)
    z = keras.layers.Concatenate()([keras.layers.GlobalMaxPooling2D()(features), keras.layers.GlobalMaxPooling2D()(dead)])
    model = keras.Model(inp, keras.layers.Dense(2, activation="softmax", name="hostile")(z))
    model.compile("adam", "sparse_categorical_crossentropy")
    model.fit(np.asarray(x, np.float32), y, epochs=30, batch_size=16, verbose=0)
    kernel, bias = model.get_layer("hostile").get_weights()
    kernel[-1, :] = 1e4
    model.get_layer("hostile").set_weights([kernel, bias])
    return model


@pytest.mark.slow  # the end-to-end proof of issue 27.3: two exports with the debugger
def test_a_quantization_hostile_layer_fails_plain_int8_and_passes_after_repair(shared_run, tmp_path):
    from resnet_tl.data import load_dataset
    from resnet_tl.export.exporter import export_run
    from resnet_tl.formats.predictor import load_predictor
    from resnet_tl.recipe import load_recipe

    run = tmp_path / "run"
    shutil.copytree(shared_run, run, ignore=shutil.ignore_patterns("export"))
    ds = load_dataset(load_recipe(str(run / "recipe.yaml")).data)
    model = _hostile_model(ds.x_train, ds.y_train)
    keras_pred = model.predict(np.asarray(ds.x_val, np.float32), verbose=0).argmax(1)
    assert (keras_pred == ds.y_val).mean() >= 0.9  # a good float model
    model.save(run / "model.keras")

    # Plain int8 (repair off): LiteRT's answers collapse, the gate fails.
    with pytest.raises(ExportCheckFailed) as failed:
        export_run(run, ["tflite"], ["int8"], overrides=["export.int8_repair=false"])
    plain = next(a for a in failed.value.result.artifacts if a.runtime == "litert")
    assert plain.check == "failed" and plain.parity["predicted_classes"] == 1 and plain.repair is None

    result = export_run(run, ["tflite"], ["int8"])
    art = next(a for a in result.artifacts if a.runtime == "litert")
    assert art.check == "passed" and art.repair["passed"], art.note
    # The debugger put the hostile layer first, and keeping it in float was enough.
    assert "hostile" in art.repair["float_layers"][0] and len(art.repair["float_layers"]) == 1
    first, last = art.repair["attempts"][0], art.repair["attempts"][-1]
    assert first["float_layers"] == [] and not first["passed"] and last["passed"]
    assert first["size_bytes"] == plain.size_bytes < last["size_bytes"] <= 2 * plain.size_bytes
    assert art.note.startswith("int8 repaired: 1 layer(s) kept in float")
    # The file on disk is the repaired one, still uint8 pixels in (as apps feed), and it agrees with Keras in LiteRT.
    predictor = load_predictor(run / "export" / "model_int8.tflite")
    assert (predictor(ds.x_val).argmax(1) == keras_pred).mean() >= 0.97
    assert art.io["input"]["dtype"] == "uint8" and art.io["input"]["quantization"] == {"scale": 1.0, "zero_point": 0}
    manifest = json.loads((run / "export" / "manifest.json").read_text())
    listed = next(a for a in manifest["artifacts"] if a["runtime"] == "litert")
    assert listed["repair"]["float_layers"] == art.repair["float_layers"] and listed["sha256"] == art.sha256
