"""train.ema: the average is the EMA a person computes by hand from the weights after each
step, and a run's validation, best epoch and model.keras are the averaged weights."""

from __future__ import annotations

import json

import numpy as np
import pytest
from helpers import bars_dataset, tiny_recipe

from resnet_tl.training.ema import EMAUpdate, WeightEMA


def test_ema_equals_a_hand_computed_average_of_the_weights_after_each_step():
    import keras

    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3), keras.layers.BatchNormalization(),
                              keras.layers.Dense(2, activation="softmax")])
    model.compile(optimizer=keras.optimizers.SGD(0.5), loss="categorical_crossentropy", jit_compile=False)
    start = [np.array(v) for v in model.variables]
    ema = WeightEMA(model, 0.8)
    seen = []

    class Record(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            seen.append([np.array(v) for v in model.variables])

    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(40, 4)).astype("float32"), np.eye(2, dtype="float32")[rng.integers(0, 2, 40)]
    model.fit(x, y, batch_size=8, epochs=1, verbose=0, shuffle=False, callbacks=[EMAUpdate(ema), Record()])

    expected = start
    for n, weights in enumerate(seen):  # TensorFlow's num_updates warm-up, then the EMA
        d = min(0.8, (1 + n) / (10 + n))
        expected = [d * e + (1 - d) * w for e, w in zip(expected, weights)]
    assert len(seen) == 5 and ema.updates == 5
    assert not np.allclose(seen[-1][0], expected[0])  # the average differs from the last weights
    for got, want in zip(ema.arrays(), expected):  # BatchNorm's moving statistics included
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    live = [np.array(v) for v in model.variables]
    with ema.applied():
        np.testing.assert_allclose(np.array(model.variables[0]), expected[0], rtol=1e-6)
    for v, w in zip(model.variables, live):  # the live weights come back
        np.testing.assert_array_equal(np.array(v), w)


@pytest.mark.slow
def test_a_run_with_ema_validates_picks_and_saves_the_averaged_weights(tmp_path):
    import keras

    from resnet_tl.models.batched import predict_probs
    from resnet_tl.training.train import train

    ds = bars_dataset(n_per_class=16, n_val_per_class=6)
    recipe = tiny_recipe([{"name": "all", "epochs": 2, "train": "all", "lr": 0.05, "optimizer": "sgd",
                           "decay": "onecycle", "batchnorm": "train"}], train={"ema": 0.9})
    result = train(recipe, out=tmp_path, name="r", dataset=ds)
    run = result.run_dir
    with np.load(run / "checkpoint" / "last.npz") as z:
        state = json.loads(str(z["state"]))
        ema_arrays = [z[k] for k in sorted(z.files) if k.startswith("ema/")]
        live_arrays = [z[k] for k in sorted(z.files) if k.startswith("model/")]
    assert state["ema_updates"] == 2 * 2  # 32 images / batch 16, 2 epochs
    assert ema_arrays and not all(np.allclose(a, b) for a, b in zip(ema_arrays, live_arrays))
    saved = keras.saving.load_model(run / "model.keras")
    probs = predict_probs(saved, ds.x_val, 16)
    best = result.history[result.best_epoch - 1]
    # The history's validation figures are those of the averaged weights that model.keras holds.
    assert float(np.mean(probs.argmax(1) == ds.y_val)) == pytest.approx(best["val_accuracy"])
    p_true = np.clip(probs[np.arange(len(ds.y_val)), ds.y_val], 1e-7, 1 - 1e-7)
    assert float(-np.mean(np.log(p_true))) == pytest.approx(best["val_loss"], rel=1e-4)
    if result.best_epoch == len(result.history):
        for got, want in zip([np.array(v) for v in saved.variables if "float" in str(v.dtype)], ema_arrays):
            np.testing.assert_allclose(got, want, rtol=1e-6)
