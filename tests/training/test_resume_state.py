"""Resume restores the state beyond the weights exactly: cached augmented views, the augmenter's RNG,
and the weight EMA with its step count.

One recipe carries both (flips and contrast, train.ema), so one chain of real processes checks them:
killed after epoch 1 (in the cached head phase), resumed and killed again after epoch 3 (in the live
phase), resumed to the end; everything must equal an uninterrupted run of the same recipe.
"""

from __future__ import annotations

import json
import signal

import numpy as np
import pytest
import yaml

from resumekit import BATCHES_PER_EPOCH, EPOCHS, assert_equals_reference, data_and_recipe, epochs_in_checkpoint, history, run_cli

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def stateful(tmp_path_factory):
    """The resume recipe with flips, contrast and an EMA, and its uninterrupted run."""
    base, plain = data_and_recipe(tmp_path_factory.mktemp("resume_state"))
    doc = yaml.safe_load(plain.read_text())
    doc["data"]["augment"] = {"flip": "horizontal", "contrast": 0.2}
    doc["train"]["ema"] = 0.8
    recipe = base / "stateful.yaml"
    recipe.write_text(yaml.safe_dump(doc))
    run_cli(str(recipe), "--out", str(base / "runs"), "--name", "reference")
    return base, recipe


def test_resume_with_augmentation_and_ema_equals_uninterrupted(stateful):
    base, recipe = stateful
    out, name = base / "runs", "chain"
    run, ref = out / name, out / "reference"
    for i, (fault, epochs) in enumerate([("epoch:1", 1), ("epoch:2", 3)]):
        args = (str(recipe), "--out", str(out), "--name", name) if i == 0 else ("--resume", str(run))
        killed = run_cli(*args, fault=fault, check=False)
        assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
        assert epochs_in_checkpoint(run) == epochs
    run_cli("--resume", str(run))

    # Losses and the (averaged) validation figures of every epoch.
    assert_equals_reference(run, (history(ref), None), rel=1e-4, abs_=1e-5)
    for a, b in zip(history(run), history(ref)):
        assert float(a["val_accuracy"]) == pytest.approx(float(b["val_accuracy"]), abs=1e-6)
    # The saved best weights are the average at the best epoch, and the average counted every step.
    with np.load(ref / "checkpoint" / "best.npz") as r, np.load(run / "checkpoint" / "best.npz") as k:
        assert sorted(r.files) == sorted(k.files)
        for key in r.files:
            np.testing.assert_allclose(k[key], r[key], rtol=1e-4, atol=1e-5)
    with np.load(run / "checkpoint" / "last.npz") as z:
        assert json.loads(str(z["state"]))["ema_updates"] == sum(EPOCHS) * BATCHES_PER_EPOCH
