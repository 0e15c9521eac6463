"""What the sorting tests share: a tiny real model file, photos, running `predict --sort-into` in and out of process."""

from __future__ import annotations

import csv
import hashlib
import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
from PIL import Image
from typer.testing import CliRunner


def colour_model(folder: Path) -> Path:
    """model.onnx (+ labels.txt): uint8 (N, 16, 16, 3) -> softmax of the mean red minus blue, classes red, blue.

    Built with onnx.helper and run by onnxruntime, a real runtime that a fresh
    process loads in well under a second (no Keras): the tests below start
    many real `resnet-tl predict` processes and kill some of them.
    """
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    w = np.array([[0.2, -0.2], [0.0, 0.0], [-0.2, 0.2]], np.float32)
    nodes = [helper.make_node("Cast", ["image"], ["xf"], to=TensorProto.FLOAT),
             helper.make_node("ReduceMean", ["xf", "axes"], ["mean"], keepdims=0),
             helper.make_node("MatMul", ["mean", "w"], ["logits"]),
             helper.make_node("Softmax", ["logits"], ["probs"], axis=1)]
    graph = helper.make_graph(
        nodes, "colour", [helper.make_tensor_value_info("image", TensorProto.UINT8, ["N", 16, 16, 3])],
        [helper.make_tensor_value_info("probs", TensorProto.FLOAT, ["N", 2])],
        [numpy_helper.from_array(np.array([1, 2], np.int64), "axes"), numpy_helper.from_array(w, "w")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    folder.mkdir(parents=True, exist_ok=True)
    onnx.save(model, folder / "model.onnx")
    (folder / "labels.txt").write_text("red\nblue\n")
    return folder / "model.onnx"


def photo(path: Path, seed: int, size: int = 16) -> bytes:
    """A distinct 16 px PNG, reddish for even seeds and bluish for odd ones; returns its bytes."""
    rng = np.random.default_rng(seed)
    px = rng.integers(0, 80, (size, size, 3), dtype=np.uint8)
    px[..., 0 if seed % 2 == 0 else 2] += 150
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(px).save(path)
    return path.read_bytes()


def photos(folder: Path, names: list[str], seed: int = 0) -> dict[str, bytes]:
    """Write `names` (relative to `folder`) as distinct photos; {sha256: bytes}."""
    out = {}
    for i, name in enumerate(names):
        data = photo(folder / name, seed * 1000 + i)
        out[sha(data)] = data
    return out


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def image_hashes(*roots: Path) -> Counter:
    """sha256 of every image file under `roots` (hidden names included: a temporary file there is a leak) -> count."""
    found = Counter()
    for root in roots:
        for p in root.rglob("*"):
            if p.is_file() and not p.is_symlink() and p.suffix == ".png":
                found[sha(p.read_bytes())] += 1
    return found


def cli(*args, cwd: Path | None = None):
    """`resnet-tl predict ARGS` in this process (CliRunner); cwd: run from there."""
    from resnet_tl.cli import app

    old = os.getcwd()
    if cwd is not None:
        os.chdir(cwd)
    try:
        return CliRunner().invoke(app, ["predict", *map(str, args)])
    finally:
        os.chdir(old)


def command(model: Path, *paths, dest, mode: str = "move") -> list[str]:
    return [sys.executable, "-m", "resnet_tl", "predict", str(model), *map(str, paths), "--sort-into", str(dest),
            "--mode", mode, "--batch-size", "2", "--json"]


def clean_env(fault: str | None = None) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "RESNET_TL_FAULT"}
    if fault is not None:
        env["RESNET_TL_FAULT"] = fault
    return env


def run(cmd: list[str], cwd: Path | None = None, fault: str | None = None) -> subprocess.CompletedProcess:
    """A real `resnet-tl predict` process (RESNET_TL_FAULT=fault kills or stops it at that point)."""
    return subprocess.run(cmd, cwd=cwd, env=clean_env(fault), capture_output=True, text=True, timeout=120)


def start_stopped(cmd: list[str], fault: str, cwd: Path | None = None) -> subprocess.Popen:
    """A real process that stops itself (SIGSTOP) at `fault`; returned once it is stopped there."""
    proc = subprocess.Popen(cmd, cwd=cwd, env=clean_env(fault + ":STOP"), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    _, status = os.waitpid(proc.pid, os.WUNTRACED)
    assert os.WIFSTOPPED(status), f"the process ended before {fault}: status {status}, {proc.stderr.read()}"
    return proc


def journal(dest: Path) -> list[dict]:
    return [json.loads(line) for line in (dest / ".resnet-tl-journal.jsonl").read_text().splitlines()]


def predictions(dest: Path) -> list[dict]:
    with open(dest / "predictions.csv", newline="", encoding="utf-8", errors="surrogateescape") as f:
        return list(csv.DictReader(f))
