"""Scale-out: cluster flags and environment, mode resolution, mirrored training
on two logical CPUs (TensorFlow) and a two-process multi-worker run (JAX CPU)."""

from __future__ import annotations

import importlib.util
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from helpers import ROOT

from resnet_tl.training.distribute import Cluster, check_batch_size, cluster_from, resolve_distribute
from resnet_tl.errors import UserError

WORKER = ROOT / "tests" / "scaleout_worker.py"
needs_jax = pytest.mark.skipif(importlib.util.find_spec("jax") is None, reason="jax is not installed (pip install 'resnet-tl[jax]')")
ENV = {"RESNET_TL_COORDINATOR": "10.0.0.1:1234", "RESNET_TL_NUM_PROCESSES": "4", "RESNET_TL_PROCESS_ID": "3"}


def test_cluster_from_flags_env_or_nothing():
    assert cluster_from(env={}) is None
    assert cluster_from(env=ENV) == Cluster("10.0.0.1:1234", 4, 3)
    assert cluster_from("h:1", 2, 0, env=ENV) == Cluster("h:1", 2, 0)  # flags win
    assert cluster_from(process_id=1, env=ENV) == Cluster("10.0.0.1:1234", 4, 1)


@pytest.mark.parametrize("args, match", [
    (("h:1", 2, None), "--process-id not given"),
    (("nohost", 2, 0), "--coordinator: received 'nohost'"),
    (("h:1", 2, 2), r"--process-id: received 2; allowed: 0..1"),
    (("h:1", 0, 0), "--num-processes: received 0"),
])
def test_bad_clusters_are_user_errors(args, match):
    with pytest.raises(UserError, match=match):
        cluster_from(*args, env={})


def test_bad_environment_value_is_named():
    with pytest.raises(UserError, match="RESNET_TL_NUM_PROCESSES: received 'two'"):
        cluster_from(env={**ENV, "RESNET_TL_NUM_PROCESSES": "two"})


@pytest.mark.parametrize("requested, backend, n_acc, cluster, expected", [
    ("auto", "tensorflow", 0, None, "none"),
    ("auto", "tensorflow", 1, None, "none"),
    ("auto", "tensorflow", 2, None, "mirrored"),
    ("auto", "jax", 4, None, "mirrored"),
    ("auto", "jax", 1, Cluster("h:1", 2, 0), "multi-worker"),
    ("multi-worker", "jax", 0, Cluster("h:1", 2, 1), "multi-worker"),
    ("mirrored", "tensorflow", 0, None, "mirrored"),
    ("none", "jax", 8, None, "none"),
])
def test_resolve_distribute(requested, backend, n_acc, cluster, expected):
    assert resolve_distribute(requested, backend, n_acc, cluster) == expected


def test_multi_worker_under_tensorflow_says_why_not():
    with pytest.raises(UserError, match=r"multi-worker needs KERAS_BACKEND=jax.*keras-team/keras#20585"):
        resolve_distribute("multi-worker", "tensorflow", 0, Cluster("h:1", 2, 0))
    with pytest.raises(UserError, match="needs KERAS_BACKEND=jax"):
        resolve_distribute("auto", "tensorflow", 0, Cluster("h:1", 2, 0))
    with pytest.raises(UserError, match="needs --coordinator"):
        resolve_distribute("multi-worker", "jax", 0, None)


def test_global_batch_must_split_across_devices():
    check_batch_size(32, 4, 2)
    with pytest.raises(UserError, match="train.batch_size: received 30; with 4 devices"):
        check_batch_size(30, 4, 1)


def test_cli_refuses_multi_worker_under_tensorflow(tmp_path):
    """In-process (CliRunner): the refusal comes before any training, under the suite's backend, TensorFlow."""
    import keras
    from typer.testing import CliRunner

    from resnet_tl.cli import app

    assert keras.backend.backend() == "tensorflow"
    r = CliRunner().invoke(app, ["train", "--out", str(tmp_path), "--set", "train.distribute=multi-worker",
                                 "--coordinator", "127.0.0.1:1", "--num-processes", "2", "--process-id", "0"])
    assert r.exit_code == 2, r.output
    assert "multi-worker needs KERAS_BACKEND=jax" in r.output and "Traceback" not in r.output
    assert not list(tmp_path.iterdir())  # refused before a run folder exists


def _worker(args, env_extra, log: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "3", **env_extra}
    return subprocess.Popen([sys.executable, str(WORKER), *args], cwd=ROOT, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT)


def _wait(procs, logs, timeout=300):
    for p, log in zip(procs, logs):
        try:
            rc = p.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            for q in procs:
                q.kill()
            pytest.fail(f"worker timed out; log:\n{log.read_text()[-3000:]}")
        assert rc == 0, log.read_text()[-3000:]


@pytest.mark.slow
def test_mirrored_on_two_logical_cpus_under_tensorflow(tmp_path):
    log = tmp_path / "w.log"
    p = _worker([str(tmp_path / "runs"), "m", str(tmp_path / "w.npz"), "--logical-cpus", "2", "--set", "train.distribute=mirrored"],
                {"KERAS_BACKEND": "tensorflow"}, log)
    _wait([p], [log])
    info = json.loads((tmp_path / "w.json").read_text())
    assert (info["distribute"], info["num_replicas"], info["backend"]) == ("mirrored", 2, "tensorflow")
    losses = [r["loss"] for r in info["history"]]
    assert np.isfinite(losses).all() and losses[-1] < losses[0]
    assert (tmp_path / "runs" / "m" / "model.keras").is_file()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
@needs_jax
def test_two_process_multi_worker_under_jax(tmp_path):
    port = _free_port()
    procs, logs = [], []
    for pid in (0, 1):
        log = tmp_path / f"w{pid}.log"
        env = {"KERAS_BACKEND": "jax", "RESNET_TL_COORDINATOR": f"127.0.0.1:{port}",
               "RESNET_TL_NUM_PROCESSES": "2", "RESNET_TL_PROCESS_ID": str(pid), "JAX_PLATFORMS": "cpu"}
        procs.append(_worker([str(tmp_path / "runs"), "mw", str(tmp_path / f"w{pid}.npz")], env, log))
        logs.append(log)
    _wait(procs, logs)
    infos = [json.loads((tmp_path / f"w{pid}.json").read_text()) for pid in (0, 1)]
    for pid, info in enumerate(infos):
        assert (info["distribute"], info["process_id"], info["num_processes"], info["num_replicas"]) == ("multi-worker", pid, 2, 2)
    # Each process read its own shard, yet the all-reduced steps keep them in lockstep.
    assert infos[0]["history"][-1]["loss"] == infos[1]["history"][-1]["loss"]
    assert infos[0]["history"][-1]["loss"] < infos[0]["history"][0]["loss"]
    w0, w1 = np.load(tmp_path / "w0.npz"), np.load(tmp_path / "w1.npz")
    assert len(w0.files) == len(w1.files) > 30  # every weight array: resnet8's classifier has 37
    for k in w0.files:
        np.testing.assert_array_equal(w0[k], w1[k])
    # Only process 0 wrote a run folder.
    assert [p.name for p in (tmp_path / "runs").iterdir()] == ["mw"]
    assert json.loads((tmp_path / "runs" / "mw" / "status.json").read_text())["status"] == "complete"
