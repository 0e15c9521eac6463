"""Interrupted runs resume; nothing is half-written.

Real training subprocesses are killed with SIGKILL at exact points (through
RESNET_TL_FAULT, see resnet_tl/faults.py), then resumed with
`resnet-tl train --resume`; the result must equal an uninterrupted run.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from helpers import bars_folder

from resnet_tl.errors import UserError

pytestmark = pytest.mark.slow

EPOCHS = (2, 2)  # phase 0 (head only, cached features), phase 1 (everything)
BATCHES_PER_EPOCH = 3  # 48 training images / batch 16


def _recipe(path: Path, data: Path, cache: Path) -> Path:
    path.write_text(yaml.safe_dump({
        "name": "resume",
        "data": {"dir": str(data), "image_size": 16, "val_split": 0.2, "cache_dir": str(cache), "augment": {"flip": "none"}},
        "model": {"backbone": "resnet20", "weights": "none"},
        "schedule": [
            {"name": "head", "epochs": EPOCHS[0], "train": "head", "lr": 0.01},
            {"name": "all", "epochs": EPOCHS[1], "train": "all", "lr": 0.003, "batchnorm": "train"},
        ],
        "train": {"batch_size": 16, "precision": "float32"},
    }))
    return path


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    base = tmp_path_factory.mktemp("resume")
    data = bars_folder(base / "images", n_per_class=30)
    recipe = _recipe(base / "recipe.yaml", data, base / "cache")
    return base, recipe


def _cli(*args, fault=None, check=True):
    env = dict(os.environ)
    env.pop("RESNET_TL_FAULT", None)
    if fault:
        env["RESNET_TL_FAULT"] = fault
    # Deterministic kernels so an interrupted run can match an uninterrupted one.
    env["TF_DETERMINISTIC_OPS"] = "1"
    p = subprocess.run([sys.executable, "-m", "resnet_tl", "train", *args], capture_output=True, text=True, env=env, timeout=600)
    if check and p.returncode != 0:
        raise AssertionError(f"exit {p.returncode}\n{p.stdout}\n{p.stderr}")
    return p


def _history(run: Path) -> list[dict]:
    return list(csv.DictReader((run / "history.csv").open()))


@pytest.fixture(scope="module")
def reference(setup):
    base, recipe = setup
    _cli(str(recipe), "--out", str(base / "runs"), "--name", "reference")
    run = base / "runs" / "reference"
    return _history(run), json.loads((run / "metrics.json").read_text())


def _assert_equals_reference(run: Path, reference, rel: float = 1e-3, abs_: float = 1e-4) -> None:
    """Every epoch's losses, the final metrics and the status match the uninterrupted run."""
    hist = _history(run)
    ref_hist, ref_metrics = reference
    assert [int(r["epoch"]) for r in hist] == list(range(1, sum(EPOCHS) + 1))
    assert [r["phase"] for r in hist] == [r["phase"] for r in ref_hist]
    for a, b in zip(hist, ref_hist):
        assert float(a["loss"]) == pytest.approx(float(b["loss"]), rel=rel, abs=abs_)
        assert float(a["val_loss"]) == pytest.approx(float(b["val_loss"]), rel=rel, abs=abs_)
    if ref_metrics is not None:
        metrics = json.loads((run / "metrics.json").read_text())
        assert metrics["accuracy"] == pytest.approx(ref_metrics["accuracy"], abs=1e-6)
        assert metrics["loss"] == pytest.approx(ref_metrics["loss"], rel=rel, abs=abs_)
    assert json.loads((run / "status.json").read_text())["status"] == "complete"
    assert not list(run.rglob(".*partial-*")), "temporary files left behind"


def _epochs_in_checkpoint(run: Path) -> int:
    """epochs_done of last.npz (0 without one); loading it proves it is never a broken file."""
    if not (run / "checkpoint" / "last.npz").exists():
        return 0
    with np.load(run / "checkpoint" / "last.npz") as z:
        return json.loads(str(z["state"]))["epochs_done"]


# Each process of one run is stopped at the next point, then the run is resumed; RESNET_TL_FAULT counts
# within a process, so each count starts at the resumed epoch. One chain of real processes covers every
# point that separate kill-then-resume pairs did (and resumes a resumed run), with 6 processes instead of 9.
# (fault, what the process must leave: exit status, run status, epochs in last.npz)
KILL_CHAIN = [
    ("batch:2", -signal.SIGKILL, "running", 0),      # mid-epoch 1, in the first (cached-feature) phase
    # between epochs in the first phase: test_resume_with_augmentation_equals_uninterrupted, the same
    # point with more state to restore (the cached augmented views)
    ("epoch:2", -signal.SIGKILL, "running", 2),      # between phases
    ("checkpoint:1", -signal.SIGKILL, "running", 2),  # halfway through writing epoch 3's first checkpoint file
    ("batch:2:INT", 130, "interrupted", 2),          # Ctrl-C mid-epoch 3: saves, prints the resume command
    ("batch:3", -signal.SIGKILL, "running", 2),      # mid-epoch 3, in the second phase
]


def test_sigkill_anywhere_and_ctrl_c_then_resume_equals_uninterrupted(setup, reference):
    base, recipe = setup
    out, name = base / "runs", "chain"
    run = out / name
    for i, (fault, code, status, epochs) in enumerate(KILL_CHAIN):
        args = (str(recipe), "--out", str(out), "--name", name) if i == 0 else ("--resume", str(run))
        p = _cli(*args, fault=fault, check=False)
        assert p.returncode == code, (fault, p.stderr[-2000:])
        assert json.loads((run / "status.json").read_text())["status"] == status, fault
        assert _epochs_in_checkpoint(run) == epochs, fault
        if code == 130:
            assert f"resnet-tl train --resume {run}" in p.stderr
            assert len(_history(run)) == epochs
    _cli("--resume", str(run))
    _assert_equals_reference(run, reference)


def test_resume_refuses_edited_recipe_and_complete_runs(setup, reference, tmp_path):
    """The CLI's one-line refusals, on a copy of a real run marked interrupted as after a crash."""
    from resnet_tl.runs import RunPaths, write_status

    base, recipe = setup
    run = tmp_path / "edited"
    shutil.copytree(base / "runs" / "reference", run)
    write_status(RunPaths(run), "interrupted")
    stored = run / "recipe.yaml"
    doc = yaml.safe_load(stored.read_text())
    doc["schedule"][1]["lr"] = 0.5
    stored.write_text(yaml.safe_dump(doc))
    p = _cli("--resume", str(run), check=False)
    assert p.returncode == 2
    assert "'schedule' was edited" in p.stderr and "Traceback" not in p.stderr
    done = base / "runs" / "reference"
    p = _cli("--resume", str(done), check=False)
    assert p.returncode == 2 and "is complete" in p.stderr
    p = _cli(str(recipe), "--out", str(base / "runs"), "--name", "reference", check=False)
    assert p.returncode == 2 and "already exists" in p.stderr


def test_failing_checkpoint_write_stops_and_keeps_the_previous(tmp_path, monkeypatch):
    from helpers import bars_dataset, tiny_recipe

    from resnet_tl.training import train as train_mod

    calls = {"n": 0}
    real_open = open

    def full_disk_open(file, mode="r", *a, **k):
        if "w" in mode and ".last.npz.partial-" in str(file):
            calls["n"] += 1
            if calls["n"] == 2:
                raise OSError(28, "No space left on device")
        return real_open(file, mode, *a, **k)

    monkeypatch.setattr("builtins.open", full_disk_open)
    ds = bars_dataset(n_per_class=8, n_val_per_class=2)
    recipe = tiny_recipe([{"epochs": 3, "train": "all", "batchnorm": "train"}])
    with pytest.raises(UserError, match="No space left on device.*previous checkpoint is kept"):
        train_mod.train(recipe, out=tmp_path, name="full", dataset=ds)
    monkeypatch.undo()
    with np.load(tmp_path / "full" / "checkpoint" / "last.npz") as z:
        assert json.loads(str(z["state"]))["epochs_done"] == 1
    assert json.loads((tmp_path / "full" / "status.json").read_text())["status"] == "failed"


def test_unusable_output_location_fails_before_training(tmp_path):
    from helpers import bars_dataset, tiny_recipe

    from resnet_tl.training.train import train

    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    ds = bars_dataset(n_per_class=2, n_val_per_class=1)
    recipe = tiny_recipe([{"epochs": 1}])
    with pytest.raises(UserError, match="exists and is not a folder"):
        train(recipe, out=blocker, name="r", dataset=ds)
    with pytest.raises(UserError, match="cannot create the folder"):
        train(recipe, out=blocker / "sub", name="r", dataset=ds)


def test_damaged_checkpoint_falls_back_to_the_previous_one_then_fails_in_one_line(tmp_path):
    """A truncated last.npz resumes from prev.npz; with both damaged, one line
    naming the file and status.json says failed (main: BadZipFile traceback)."""
    from helpers import bars_dataset, tiny_recipe

    from resnet_tl.runs import RunPaths, write_status
    from resnet_tl.training.train import train

    ds = bars_dataset(n_per_class=4, n_val_per_class=2)
    recipe = tiny_recipe([{"epochs": 2, "train": "head"}])
    train(recipe, out=tmp_path, name="r", dataset=ds)
    paths = RunPaths(tmp_path / "r")
    with np.load(paths.previous_checkpoint) as z:
        assert json.loads(str(z["state"]))["epochs_done"] == 1
    last = paths.checkpoint.read_bytes()
    paths.checkpoint.write_bytes(last[: len(last) // 2])
    write_status(paths, "interrupted")  # as after a crash
    with pytest.warns(UserWarning, match=r"last\.npz.*resuming from the previous checkpoint .*prev\.npz.*epoch 1"):
        result = train(recipe, out=tmp_path, resume=paths.root, dataset=ds)
    assert [r["epoch"] for r in result.history] == [1, 2]
    assert json.loads(paths.status.read_text())["status"] == "complete"

    paths.checkpoint.write_bytes(b"garbage")
    paths.previous_checkpoint.write_bytes(b"more garbage")
    write_status(paths, "interrupted")
    with pytest.raises(UserError) as err:
        train(recipe, out=tmp_path, resume=paths.root, dataset=ds)
    assert f"checkpoint '{paths.checkpoint}' is damaged" in str(err.value)
    status = json.loads(paths.status.read_text())
    assert status["status"] == "failed" and "damaged" in status["error"]


@pytest.mark.parametrize("key, value", [("train.monitor", "val_loss"), ("data.augment.flip", "vertical"), ("train.precision", "mixed_bfloat16")])
def test_resume_refuses_keys_the_checkpoint_depends_on(tmp_path, key, value):
    from helpers import tiny_recipe

    from resnet_tl.fileio import atomic_write_text
    from resnet_tl.recipe import dump_recipe, locked_view
    from resnet_tl.runs import create_run_dir, write_status
    from resnet_tl.runs import resume_recipe

    recipe = tiny_recipe([{"epochs": 2, "train": "head"}])
    paths = create_run_dir(tmp_path, "r")
    atomic_write_text(paths.recipe, dump_recipe(recipe))
    write_status(paths, "interrupted", locked=locked_view(recipe))
    resume_recipe(paths.root, None, [], None)  # unedited: accepted
    doc = yaml.safe_load(paths.recipe.read_text())
    *parents, leaf = key.split(".")
    node = doc
    for p in parents:
        node = node[p]
    node[leaf] = value
    paths.recipe.write_text(yaml.safe_dump(doc))
    locked = key if not key.startswith("data.augment") else "data.augment"
    with pytest.raises(UserError, match=rf"'{locked}' was edited"):
        resume_recipe(paths.root, None, [], None)


@pytest.fixture(scope="module")
def augmented(setup):
    """The resume recipe with flips on: cached augmented views in the head phase, the augmenter live after."""
    base, _ = setup
    doc = yaml.safe_load((base / "recipe.yaml").read_text())
    doc["data"]["augment"] = {"flip": "horizontal", "contrast": 0.2}
    recipe = base / "augmented.yaml"
    recipe.write_text(yaml.safe_dump(doc))
    _cli(str(recipe), "--out", str(base / "runs"), "--name", "aug-reference")
    return recipe, _history(base / "runs" / "aug-reference")


def test_resume_with_augmentation_equals_uninterrupted(setup, augmented):
    """The augmented views and the augmenter's RNG state come back exactly: killed after epoch 1 (in the cached
    head phase), resumed and killed again after epoch 3 (in the live phase), resumed to the end."""
    base, _ = setup
    recipe, ref_hist = augmented
    out, name = base / "runs", "aug-chain"
    run = out / name
    for i, (fault, epochs) in enumerate([("epoch:1", 1), ("epoch:2", 3)]):
        args = (str(recipe), "--out", str(out), "--name", name) if i == 0 else ("--resume", str(run))
        killed = _cli(*args, fault=fault, check=False)
        assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
        assert _epochs_in_checkpoint(run) == epochs
    _cli("--resume", str(run))
    _assert_equals_reference(run, (ref_hist, None), rel=1e-4, abs_=1e-5)


def test_resume_with_ema_equals_uninterrupted(setup):
    """train.ema: the average and its step count come back from the checkpoint; killed in the
    cached head phase, the resumed run's averaged validation figures and saved best weights
    (the average at the best epoch) equal an uninterrupted run's."""
    base, _ = setup
    doc = yaml.safe_load((base / "recipe.yaml").read_text())
    doc["train"]["ema"] = 0.8
    recipe = base / "ema.yaml"
    recipe.write_text(yaml.safe_dump(doc))
    runs = base / "runs"
    _cli(str(recipe), "--out", str(runs), "--name", "ema-reference")
    killed = _cli(str(recipe), "--out", str(runs), "--name", "ema-killed", fault="epoch:1", check=False)
    assert killed.returncode == -signal.SIGKILL
    _cli("--resume", str(runs / "ema-killed"))
    ref, hist = _history(runs / "ema-reference"), _history(runs / "ema-killed")
    assert len(hist) == len(ref) == sum(EPOCHS)
    for a, b in zip(hist, ref):
        assert float(a["val_loss"]) == pytest.approx(float(b["val_loss"]), rel=1e-4, abs=1e-5)
        assert float(a["val_accuracy"]) == pytest.approx(float(b["val_accuracy"]), abs=1e-6)
    with np.load(runs / "ema-reference" / "checkpoint" / "best.npz") as r, \
            np.load(runs / "ema-killed" / "checkpoint" / "best.npz") as k:
        assert sorted(r.files) == sorted(k.files)
        for key in r.files:
            np.testing.assert_allclose(k[key], r[key], rtol=1e-4, atol=1e-5)
    with np.load(runs / "ema-killed" / "checkpoint" / "last.npz") as z:
        assert json.loads(str(z["state"]))["ema_updates"] == sum(EPOCHS) * BATCHES_PER_EPOCH
