"""Compiled programs kept across runs (resnet_tl.compile_cache): the bound, the TensorFlow flag,
and under JAX a second process of the same shapes loading what the first compiled."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest
from helpers import ROOT

from resnet_tl import compile_cache


def test_the_bound_comes_from_the_environment_and_zero_turns_it_off(monkeypatch):
    monkeypatch.delenv(compile_cache.ENV, raising=False)
    assert compile_cache.bound_bytes() == compile_cache.DEFAULT_MB * 2**20
    monkeypatch.setenv(compile_cache.ENV, "0.5")
    assert compile_cache.bound_bytes() == 2**19
    monkeypatch.setenv(compile_cache.ENV, "0")
    monkeypatch.setenv("TF_XLA_FLAGS", "--tf_xla_auto_jit=2")
    compile_cache.before_keras_import()
    assert os.environ["TF_XLA_FLAGS"] == "--tf_xla_auto_jit=2"


def test_tensorflow_gets_the_xla_cache_flag_under_the_cache_folder_unless_set(monkeypatch, tmp_path):
    monkeypatch.delenv(compile_cache.ENV, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.setenv("TF_XLA_FLAGS", "--tf_xla_auto_jit=2")
    compile_cache.before_keras_import()
    assert os.environ["TF_XLA_FLAGS"] == f"--tf_xla_auto_jit=2 --tf_xla_persistent_cache_directory={tmp_path / 'resnet-tl' / 'tf-xla'}"
    mine = "--tf_xla_persistent_cache_directory=/elsewhere"
    monkeypatch.setenv("TF_XLA_FLAGS", mine)
    compile_cache.before_keras_import()
    assert os.environ["TF_XLA_FLAGS"] == mine


def test_prune_removes_the_oldest_files_down_to_80_percent(tmp_path):
    now = time.time()
    for i in range(10):  # 10 files of 100 bytes, file 0 the oldest
        f = tmp_path / "sub" / f"{i}.bin"
        f.parent.mkdir(exist_ok=True)
        f.write_bytes(b"x" * 100)
        os.utime(f, (now - 100 + i, now - 100 + i))
    compile_cache.prune(tmp_path, 1000)  # at the bound: nothing goes
    assert len(list(tmp_path.rglob("*.bin"))) == 10
    compile_cache.prune(tmp_path, 900)
    assert sorted(f.name for f in tmp_path.rglob("*.bin")) == [f"{i}.bin" for i in range(3, 10)]  # 700 <= 0.8 x 900


_JAX_RUN = """
import json, numpy as np, jax
events = {}
jax.monitoring.register_event_listener(lambda name, **kw: events.__setitem__(name, events.get(name, 0) + 1))
from resnet_tl.kerasenv import keras_module
keras = keras_module()
from resnet_tl.models.batched import run_batches
from resnet_tl.models.classifier import build_classifier
from resnet_tl.recipe import build_recipe
model = build_classifier(build_recipe({"model": {"backbone": "resnet8", "weights": "none"}}).model, 3, 16)
run_batches(model, np.zeros((8, 16, 16, 3), np.uint8), 4)
print(json.dumps({"hits": events.get("/jax/compilation_cache/cache_hits", 0),
                  "misses": events.get("/jax/compilation_cache/cache_misses", 0),
                  "dir": jax.config.jax_compilation_cache_dir}))
"""


@pytest.mark.slow
def test_under_jax_a_second_process_loads_what_the_first_compiled(tmp_path):
    env = {**os.environ, "KERAS_BACKEND": "jax", "PYTHONPATH": str(ROOT), "XDG_CACHE_HOME": str(tmp_path)}
    env.pop(compile_cache.ENV, None)
    env.pop("JAX_COMPILATION_CACHE_DIR", None)
    runs, files = [], []
    for _ in range(2):
        p = subprocess.run([sys.executable, "-c", _JAX_RUN], check=False, env=env, capture_output=True, text=True, timeout=300)
        assert p.returncode == 0, p.stderr[-3000:]
        runs.append(json.loads(p.stdout.strip().splitlines()[-1]))
        files.append(sorted(f.name for f in (tmp_path / "resnet-tl" / "jax").iterdir()))
    first, second = runs
    assert first["dir"] == str(tmp_path / "resnet-tl" / "jax")
    assert first["hits"] == 0 and first["misses"] >= 1 and files[0]  # compiled, and written
    assert second["hits"] >= 1 and second["misses"] < first["misses"]  # the model's program came from the folder
    # The model's program was not compiled again, so not written again. (Keras's tiny eager programs may be:
    # whether one passes MIN_COMPILE_S depends on the machine's load.)
    forward = [[f for f in names if f.startswith("jit_forward-")] for names in files]
    assert forward[0] and forward[1] == forward[0] and set(files[0]) <= set(files[1])
