"""No shipped recipe's training model loses jit_compile (XLA), under TensorFlow and JAX (issue 23).

Keras silently falls back to jit_compile=False ("Model doesn't support `jit_compile=True`.
Proceeding with `jit_compile=False`.") when any layer sets supports_jit=False, as its
RandomRotation / RandomZoom / RandomTranslation do; under TensorFlow an op without an XLA
kernel only fails when the step compiles, so the worker also runs one XLA step through
every augmentation op.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from helpers import ROOT, TESTS

from resnet_tl.recipe import shipped_recipes

BACKENDS = ("tensorflow", "jax")


@pytest.mark.slow
def test_every_shipped_recipe_trains_jit_compiled_under_tensorflow_and_jax():
    # One process per backend (the backend is fixed at import), both at once.
    procs = {b: subprocess.Popen([sys.executable, str(TESTS / "jit_recipes_worker.py")], cwd=ROOT, text=True,
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                 env={**os.environ, "PYTHONPATH": str(ROOT), "KERAS_BACKEND": b, "TF_CPP_MIN_LOG_LEVEL": "3"})
             for b in BACKENDS}
    for backend, proc in procs.items():
        out, err = proc.communicate(timeout=900)
        assert proc.returncode == 0, err[-3000:]
        report = json.loads(out.strip().splitlines()[-1])
        assert report["backend"] == backend
        assert set(shipped_recipes()) < set(report["recipes"])
        lost = {name: r for name, r in report["recipes"].items() if r["jit_compile"] is not True or r["warnings"]}
        assert lost == {}, (backend, lost)
        assert all(a["xla_step"] for a in report["augmentations"]), (backend, report["augmentations"])
