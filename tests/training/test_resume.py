"""Interrupted runs resume; nothing is half-written.

Real training subprocesses are killed with SIGKILL at exact points (through
RESNET_TL_FAULT, see resnet_tl/faults.py), then resumed with
`resnet-tl train --resume`; the result must equal an uninterrupted run.
The state beyond the weights (augmentation views and RNG, EMA) is tested in
test_resume_state.py, a file of its own so a parallel run can start it on another worker.
"""

from __future__ import annotations

import json
import shutil
import signal

import numpy as np
import pytest
import yaml

from helpers import error_lines
from resumekit import assert_equals_reference, data_and_recipe, epochs_in_checkpoint, history, run_cli

from resnet_tl.errors import UserError

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    return data_and_recipe(tmp_path_factory.mktemp("resume"))


@pytest.fixture(scope="module")
def reference(setup):
    base, recipe = setup
    run_cli(str(recipe), "--out", str(base / "runs"), "--name", "reference")
    run = base / "runs" / "reference"
    return history(run), json.loads((run / "metrics.json").read_text())


# Each process of one run is stopped at the next point, then the run is resumed; RESNET_TL_FAULT counts
# within a process, so each count starts at the resumed epoch. One chain of real processes covers every
# point that separate kill-then-resume pairs did (and resumes a resumed run), with 6 processes instead of 9.
# (fault, what the process must leave: exit status, run status, epochs in last.npz)
KILL_CHAIN = [
    ("batch:2", -signal.SIGKILL, "running", 0),      # mid-epoch 1, in the first (cached-feature) phase
    # between epochs in the first phase: test_resume_state.py, the same point with more state to
    # restore (the cached augmented views, the EMA)
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
        p = run_cli(*args, fault=fault, check=False)
        assert p.returncode == code, (fault, p.stderr[-2000:])
        assert json.loads((run / "status.json").read_text())["status"] == status, fault
        assert epochs_in_checkpoint(run) == epochs, fault
        if code == 130:
            assert f"resnet-tl train --resume {run}" in p.stderr
            assert len(history(run)) == epochs
    run_cli("--resume", str(run))
    assert_equals_reference(run, reference)


def test_resume_refuses_edited_recipe_and_complete_runs(setup, reference, tmp_path):
    """The CLI's one-line refusals, on a copy of a real run marked interrupted as after a crash.

    In-process (CliRunner): each is refused before any training, so a process of its own would only add
    TensorFlow's import; test_missing_data_folder_is_exit_2 (test_cli.py) checks a real process's exit 2."""
    from typer.testing import CliRunner

    from resnet_tl.cli import app
    from resnet_tl.runs import RunPaths, write_status

    def train_cli(*args):
        r = CliRunner().invoke(app, ["train", *args])
        assert "Traceback" not in r.output and len(error_lines(r.output)) == 1, r.output
        return r

    base, recipe = setup
    run = tmp_path / "edited"
    shutil.copytree(base / "runs" / "reference", run)
    write_status(RunPaths(run), "interrupted")
    stored = run / "recipe.yaml"
    doc = yaml.safe_load(stored.read_text())
    doc["schedule"][1]["lr"] = 0.5
    stored.write_text(yaml.safe_dump(doc))
    r = train_cli("--resume", str(run))
    assert r.exit_code == 2 and "'schedule' was edited" in r.output
    done = base / "runs" / "reference"
    r = train_cli("--resume", str(done))
    assert r.exit_code == 2 and "is complete" in r.output
    r = train_cli(str(recipe), "--out", str(base / "runs"), "--name", "reference")
    assert r.exit_code == 2 and "already exists" in r.output
    assert json.loads((done / "status.json").read_text())["status"] == "complete"  # refused, not touched


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
