"""The one inference path (resnet_tl.models.batched): Keras's own predict gives the same numbers,
uint8 reaches the compiled function, nothing is traced twice, and every caller goes through it."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from helpers import ROOT

from resnet_tl.kerasenv import keras_module
from resnet_tl.models import batched

keras = keras_module()


def tiny_model(classes: int = 3, size: int = 8):
    inputs = keras.Input((size, size, 3))
    x = keras.layers.Rescaling(1 / 255.0)(inputs)
    x = keras.layers.Conv2D(4, 3)(x)
    x = keras.layers.BatchNormalization()(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, keras.layers.Dense(classes, activation="softmax")(x))


def test_outputs_match_keras_predict_with_a_padded_last_batch_and_uint8_in():
    model = tiny_model()
    x = np.random.default_rng(0).integers(0, 256, (11, 8, 8, 3), dtype=np.uint8)
    expected = model.predict(x.astype(np.float32), batch_size=4, verbose=0)
    got = batched.run_batches(model, x, 4)
    assert got.dtype == np.float32 and got.shape == (11, 3)
    np.testing.assert_allclose(got, expected, atol=1e-5)
    assert batched.compiled_forward(model) is batched.compiled_forward(model)  # compiled once per model
    assert batched.run_batches(model, x[:0], 4).shape == (0, 3)


def test_a_memmap_is_read_batch_by_batch_as_uint8(tmp_path, monkeypatch):
    model = tiny_model()
    np.save(tmp_path / "x.npy", np.random.default_rng(1).integers(0, 256, (9, 8, 8, 3), dtype=np.uint8))
    x = np.load(tmp_path / "x.npy", mmap_mode="r")
    seen = []
    real = batched.compiled_forward(model)
    monkeypatch.setitem(batched._COMPILED, model, lambda xb: seen.append((xb.dtype, xb.shape)) or real(xb))
    batched.run_batches(model, x, 4)
    assert seen == [(np.uint8, (4, 8, 8, 3))] * 3  # the last batch of 1 padded to 4: one shape


def test_a_model_is_freed_with_its_compiled_function():
    import gc
    import weakref

    gc.collect()
    before = len(batched._COMPILED)  # other tests' models still alive
    model = tiny_model()
    batched.run_batches(model, np.zeros((3, 8, 8, 3), np.uint8), 2)
    assert len(batched._COMPILED) == before + 1
    ref = weakref.ref(model)
    del model
    gc.collect()
    assert ref() is None and len(batched._COMPILED) <= before


@pytest.mark.parametrize("requested, accelerator, expected", [(32, False, 32), (512, False, 512), (32, True, 256), (1024, True, 1024)])
def test_batch_sized_to_the_device(requested, accelerator, expected):
    assert batched.device_batch_size(requested, accelerator) == expected


_JAX_CHECK = """
import json, numpy as np, keras, jax
from resnet_tl.models import batched
inputs = keras.Input((8, 8, 3))
x = keras.layers.Rescaling(1 / 255.0)(inputs)
x = keras.layers.Conv2D(4, 3)(keras.layers.BatchNormalization()(x))
model = keras.Model(inputs, keras.layers.Dense(3, activation="softmax")(keras.layers.GlobalAveragePooling2D()(x)))
data = np.random.default_rng(0).integers(0, 256, (11, 8, 8, 3), dtype=np.uint8)
ref = model.predict(data.astype("float32"), batch_size=4, verbose=0)  # before the spies: it traces too
traces, puts, real_call, real_put = [], [], model.stateless_call, jax.device_put
model.stateless_call = lambda *a, **k: traces.append(a[2].dtype.name) or real_call(*a, **k)
jax.device_put = lambda x, *a, **k: puts.append(x.dtype.name) or real_put(x, *a, **k)
got = [batched.run_batches(model, data, 4) for _ in range(2)]
print(json.dumps({"diff": float(np.abs(got[1] - ref).max()), "traces": traces, "puts": sorted(set(puts)), "n": len(puts)}))
"""


@pytest.mark.slow
def test_under_jax_uint8_goes_to_the_device_and_one_trace_serves_every_batch():
    env = {**os.environ, "KERAS_BACKEND": "jax", "PYTHONPATH": str(ROOT)}
    p = subprocess.run([sys.executable, "-c", _JAX_CHECK], check=False, env=env, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-3000:]
    r = json.loads(p.stdout.strip().splitlines()[-1])
    assert r["diff"] < 1e-5
    # The cast to float happens in the compiled function (its tracer's dtype is the Input's after the cast).
    assert r["puts"] == ["uint8"] and r["n"] == 6  # 3 batches x 2 calls, all uint8
    assert r["traces"] == ["float32"]  # traced once for 6 batches, the last padded


@pytest.mark.slow
def test_evaluate_predict_export_check_and_bench_all_run_through_it(shared_run, shared_data, tmp_path, monkeypatch):
    import shutil

    from helpers import tiny_recipe

    from resnet_tl.evaluation.evaluate import evaluate
    from resnet_tl.export.exporter import export_run
    from resnet_tl.inference.predict import predict
    from resnet_tl.training.bench import benchmark

    seen: list = []
    real = batched.compiled_forward
    monkeypatch.setattr(batched, "compiled_forward", lambda model: seen.append(model) or real(model))
    run = tmp_path / "run"
    shutil.copytree(shared_run, run, ignore=shutil.ignore_patterns("export", "eval"))
    callers = {
        "evaluate": lambda: evaluate(run, data=shared_data, split="test"),
        "predict": lambda: predict(run, [str(shared_data / "test")]),
        "export check": lambda: export_run(run, ["keras"], ["none"]),
        "bench": lambda: benchmark(tiny_recipe([{"name": "all", "epochs": 1, "train": "all"}]), steps=1, warmup=1, batch_size=4),
    }
    for name, call in callers.items():
        seen.clear()
        call()
        assert seen, f"{name} ran a model outside resnet_tl.models.batched"
    # export runs the reference (the run's model) and the artifact it loads back: two models, one path.
    assert len({id(m) for m in seen}) == 1  # bench: its one classifier
