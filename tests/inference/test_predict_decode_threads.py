"""Folder prediction decodes on as many threads as the process may use CPUs (issue 23 part 6)."""

from __future__ import annotations

import numpy as np
from PIL import Image

from resnet_tl.inference import predict as predict_mod
from resnet_tl.kerasenv import keras_module

keras = keras_module()


def test_decode_threads_follow_the_usable_cpus(tmp_path, monkeypatch):
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.GlobalAveragePooling2D()(keras.layers.Rescaling(1 / 255.0)(inputs))
    keras.Model(inputs, keras.layers.Dense(2, activation="softmax")(x)).save(tmp_path / "m.keras")
    for i in range(5):
        Image.fromarray(np.full((12, 10, 3), 40 * i, np.uint8)).save(tmp_path / f"{i}.png")
    pools = []
    real_pool = predict_mod.ThreadPoolExecutor

    def spy(max_workers):
        pools.append(max_workers)
        return real_pool(max_workers=max_workers)

    monkeypatch.setattr(predict_mod, "ThreadPoolExecutor", spy)
    for cpus in (1, 3):
        monkeypatch.setattr(predict_mod, "usable_cpus", lambda cpus=cpus: cpus)
        result = predict_mod.predict(tmp_path / "m.keras", [str(tmp_path)], batch_size=2)
        assert result["predicted"] == 5
    assert pools == [1, 3]
