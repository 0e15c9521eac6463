"""benchmarks/gpu/bench_gpu.py --dry-run: every section of the GPU benchmark (issue 23) runs at toy sizes on
the CPU and its JSON adds up, so the script that needs a lent GPU cannot rot between loans.

The dry run's numbers are no performance figures: only their presence, sign and arithmetic are checked.
The PyTorch peers run where torch is installed (with or without torchvision); elsewhere, as in CI, the
JSON must say they were not run because torch is missing.
"""

from __future__ import annotations

import csv
import json
import os
import statistics
import subprocess
import sys
from datetime import datetime
from importlib import metadata
from importlib.util import find_spec
from pathlib import Path

import pytest

from helpers import ROOT
from PIL import Image

SCRIPT = ROOT / "benchmarks" / "gpu" / "bench_gpu.py"
TORCH_SECTIONS = {"torch_eager", "torch_compile_train", "torch_compile_infer"}
SECTIONS = ["machine", "train_step", "torch_eager", "torch_compile_train", "augmentation", "quickstart", "e2e_train",
            "predict_folder", "precision", "torch_compile_infer"]
HAVE_TORCH = find_spec("torch") is not None


def run_script(*args: str, timeout: float) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "KERAS_BACKEND"}
    return subprocess.run([sys.executable, str(SCRIPT), *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def dry(tmp_path_factory):
    out, work = tmp_path_factory.mktemp("gpu-out"), tmp_path_factory.mktemp("gpu-work")
    p = run_script("--dry-run", "--out", str(out), "--work", str(work), "--keep", timeout=1200)
    assert p.returncode == 0, p.stderr[-4000:]
    (work_dir,) = work.iterdir()
    return {"doc": json.loads((out / "gpu.json").read_text()), "out": out, "work": work_dir, "stdout": p.stdout}


@pytest.mark.slow
def test_every_section_ran_or_says_why_not(dry):
    sections = dry["doc"]["sections"]
    assert list(sections) == SECTIONS
    for name, s in sections.items():
        if name in TORCH_SECTIONS and not HAVE_TORCH:
            assert (s["status"], s["reason"]) == ("not run", "torch missing")
        else:
            assert s["status"] == "ok", (name, s.get("reason"))
            assert s["commands"] or name == "machine", name
            assert all(c["rc"] == 0 and not c["timed_out"] for c in s["commands"]), name
    peer = sections["predict_folder"]["result"]
    assert ("peer_images_per_s" in peer["figures"]) == HAVE_TORCH
    if not HAVE_TORCH:
        assert peer["peer"] == "not run: torch missing"


@pytest.mark.slow
def test_measured_figures_are_positive(dry):
    figs = {name: s["result"]["figures"] for name, s in dry["doc"]["sections"].items() if s["status"] == "ok" and name != "machine"}
    required = {
        "train_step": ["train_images_per_s", "inference_images_per_s", "input_images_per_s", "ceiling_images_per_s"],
        "augmentation": ["train_images_per_s"],
        "quickstart": ["run1_process_s", "run1_first_epoch_s", "run1_steady_epoch_s", "run2_first_epoch_s", "run2_steady_epoch_s"],
        "e2e_train": ["steady_images_per_s", "first_epoch_images_per_s"],
        "predict_folder": ["images_per_s", "process_s"],
        "precision": ["float16_train_images_per_s", "float16_steady_epoch_s", "bfloat16_steady_epoch_s"],
    }
    if HAVE_TORCH:
        required.update(torch_eager=["train_images_per_s", "infer_images_per_s"], torch_compile_train=["train_images_per_s"],
                        torch_compile_infer=["infer_images_per_s"])
    for name, keys in required.items():
        for k in keys:
            assert figs[name][k] > 0, (name, k)
    for key in ("float16_val_accuracy", "bfloat16_val_accuracy"):
        assert 0 <= figs["precision"][key] <= 1
    # resnet8 has no keras.applications model: bench reports no plain-Keras peer rather than inventing one.
    assert figs["train_step"]["keras_fit_images_per_s"] is None


@pytest.mark.slow
def test_ratios_are_computed_from_the_figures(dry):
    doc = dry["doc"]
    figs = {name: s.get("result", {}).get("figures", {}) for name, s in doc["sections"].items()}
    rows = doc["comparisons"]
    assert len(rows) == 16
    ratios = 0
    for r in rows:
        if r["ours"] is None or r["peer_value"] is None:
            assert r["ratio"] is None and r["missing"]
            continue
        ratios += 1
        assert r["ratio"] == pytest.approx(r["ours"] / r["peer_value"], rel=1e-3)
        if r["goal"]:
            op, bound = r["goal"].split()[-2:]
            assert r["met"] == (r["ratio"] >= float(bound) if op == ">=" else r["ratio"] <= float(bound))
    assert ratios >= (12 if HAVE_TORCH else 9)
    # Each side is the section's own figure, not a copy made elsewhere.
    step = figs["train_step"]
    aug = next(r for r in rows if r["figure"].startswith("training step with two-phase augmentation"))
    assert (aug["ours"], aug["peer_value"]) == (figs["augmentation"]["train_images_per_s"], step["train_images_per_s"])
    bench = doc["sections"]["train_step"]["result"]["bench"]["results"][0]
    assert (step["train_images_per_s"], step["inference_images_per_s"]) == (bench["train_images_per_s"], bench["inference_images_per_s"])
    # The ceiling: the dry run's CIFAR ResNet-8 (n = 1) counted as the published ResNet-20 figure is,
    # training = 3 x forward. The count, checked against ResNet-20's 40.8 M multiply-adds at 32 px first.
    def cifar_macs(n: int) -> int:  # 3x3 convs of depth 6n + 2 at 32 px: stem, then stages at 32, 16, 8 px
        stage = lambda side, c_in, c: side * side * 9 * (c_in * c + (2 * n - 1) * c * c)  # noqa: E731
        return 32 * 32 * 27 * 16 + stage(32, 16, 16) + stage(16, 16, 32) + stage(8, 32, 64)

    assert cifar_macs(3) == pytest.approx(40.8e6, rel=0.01)
    size = doc["sizes"]["image_size"]
    assert doc["sizes"]["backbone"] == "resnet8"
    assert step["ceiling_images_per_s"] == pytest.approx(790e12 / (3 * 2 * cifar_macs(1) * (size / 32) ** 2), rel=0.01)
    table = (dry["out"] / "gpu.md").read_text()
    assert table.count("\n| ") >= len(rows) + len(SECTIONS)


@pytest.mark.slow
def test_quickstart_and_training_figures_match_their_run_folders(dry):
    q = dry["doc"]["sections"]["quickstart"]["result"]
    for run in q["runs"]:
        with open(Path(run["run_dir"]) / "history.csv", newline="") as f:
            seconds = [float(r["seconds"]) for r in csv.DictReader(f)]
        assert run["epoch_s"] == seconds and len(seconds) == 3  # the dry run's schedule.0.epochs=3
        assert run["steady_epoch_s"] == statistics.median(seconds[1:])
        assert run["first_over_steady"] == pytest.approx(seconds[0] / run["steady_epoch_s"], abs=0.01)
    e2e = dry["doc"]["sections"]["e2e_train"]["result"]
    report = json.loads((dry["work"] / "runs" / "e2e" / "data_report.json").read_text())
    assert report["splits"]["train"] == e2e["n_train"] and sum(report["splits"].values()) == 40
    assert e2e["figures"]["steady_images_per_s"] == pytest.approx(e2e["n_train"] / statistics.median(e2e["epoch_s"][1:]), rel=1e-3)


@pytest.mark.slow
def test_folder_prediction_covers_every_generated_jpeg(dry):
    files = sorted((dry["work"] / "jpegs-predict").rglob("*.jpg"))
    assert len(files) == 40
    for f in files[:5]:
        with Image.open(f) as im:
            assert (im.format, im.size) == ("JPEG", (500, 375))
    for name, present in (("ours.csv", True), ("peer.csv", HAVE_TORCH)):
        path = dry["work"] / name
        assert path.exists() == present
        if present:
            with open(path, newline="") as f:
                rows = list(csv.DictReader(f))
            assert sorted(Path(r["path"]).resolve() for r in rows) == [p.resolve() for p in files]
            assert all(0 <= float(r["probability_1"]) <= 1 for r in rows)
    fig = dry["doc"]["sections"]["predict_folder"]["result"]["figures"]
    assert fig["rows"] == 40


@pytest.mark.slow
def test_machine_facts(dry):
    m = dry["doc"]["sections"]["machine"]["result"]
    assert datetime.fromisoformat(m["date"]).tzinfo is not None
    assert m["cpus"] == os.cpu_count() and m["cpu_model"]
    assert m["versions"]["keras"] == metadata.version("keras") and m["versions"]["jax"] == metadata.version("jax")
    assert m["resnet_tl_info"]["backend"] == "jax"  # the info command ran in a real process of its own
    assert dry["doc"]["sections"]["machine"]["commands"][0]["cmd"].split()[1:4] == ["-m", "resnet_tl", "info"]


def test_sections_that_do_not_fit_the_budget_are_skipped_with_the_reason(tmp_path):
    p = run_script("--dry-run", "--out", str(tmp_path), "--work", str(tmp_path), "--budget-s", "5", "--sections", "quickstart", timeout=120)
    assert p.returncode == 0, p.stderr[-2000:]
    doc = json.loads((tmp_path / "gpu.json").read_text())
    assert list(doc["sections"]) == ["machine", "quickstart"]
    for s in doc["sections"].values():
        assert s["status"] == "skipped" and "budget" in s["reason"] and s["commands"] == []
    assert "--sections quickstart" in doc["sections"]["quickstart"]["reason"]
    assert all(r["ratio"] is None for r in doc["comparisons"])
