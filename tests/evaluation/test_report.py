"""report.html rendered by headless Chromium; curves and TensorBoard logs after training."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from helpers import bars_dataset, tiny_recipe
from resnet_tl.runs import RunPaths

HOSTILE = '<b>bold</b> & "quoted"'  # a class name that must reach the page as text


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    from resnet_tl.training.train import train

    ds = bars_dataset(n_per_class=12, n_val_per_class=6)
    ds.classes = [HOSTILE, "plain"]
    recipe = tiny_recipe([
        {"name": "head", "epochs": 1, "train": "head", "lr": 1e-2},
        {"name": "all", "epochs": 1, "train": "all", "lr": 1e-3},
    ])
    return train(recipe, out=tmp_path_factory.mktemp("report"), name="run", dataset=ds).run_dir


def _chromium(*args: str, tmp: Path) -> subprocess.CompletedProcess:
    exe = shutil.which("chromium") or shutil.which("chromium-browser")  # Debian, Ubuntu
    if exe is None:
        pytest.skip("chromium is not on PATH (Debian: apt-get install chromium, Ubuntu: chromium-browser; .ci/run installs it)")
    cmd = [exe, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync",
           f"--user-data-dir={tmp / 'chromium-profile'}", "--virtual-time-budget=5000", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120)


def test_report_renders_in_chromium_with_every_image_loaded(run_dir, tmp_path):
    report = run_dir / "report.html"
    page = report.read_text()
    # Self-contained: every image inline, nothing fetched.
    srcs = re.findall(r"<img [^>]*src='([^']*)'", page)
    assert len(srcs) >= 2 and all(s.startswith("data:image/png;base64,") for s in srcs)
    assert "http://" not in page and "https://" not in page
    # User-controlled text is escaped.
    assert "<b>bold</b>" not in page and "&lt;b&gt;bold&lt;/b&gt; &amp; &quot;quoted&quot;" in page

    res = _chromium("--dump-dom", report.as_uri(), tmp=tmp_path)
    dom = res.stdout
    m = re.search(r'data-images-loaded="(\d+)/(\d+)"', dom)
    assert m, f"the page's load script did not run; chromium stderr: {res.stderr[-2000:]}"
    loaded, total = int(m.group(1)), int(m.group(2))
    assert total == len(srcs) and loaded == total
    table = re.search(r'<table class="per-class" id="per-class-val">(.*?)</table>', dom, re.S)
    assert table, "per-class table missing"
    for col in ("precision", "recall", "F1", "support"):
        assert f"<th>{col}</th>" in table.group(1)
    assert "plain" in table.group(1) and "macro average" in table.group(1)

    shot = tmp_path / "report.png"
    _chromium(f"--screenshot={shot}", "--window-size=1200,2000", report.as_uri(), tmp=tmp_path)
    assert shot.is_file() and shot.stat().st_size > 10_000


def test_curves_and_tensorboard_scalars(run_dir):
    tf = pytest.importorskip("tensorflow")
    from PIL import Image

    with Image.open(run_dir / "plots" / "curves.png") as im:
        assert im.size[0] > 600
    seen = {}
    for sub in ("train", "validation"):
        (events,) = (run_dir / "tensorboard" / sub).glob("events.out.tfevents.*")
        for record in tf.data.TFRecordDataset(str(events)):
            event = tf.compat.v1.Event.FromString(record.numpy())
            for v in event.summary.value:
                seen.setdefault((sub, v.tag), []).append(event.step)
    assert seen[("train", "epoch_loss")] == [1, 2]
    assert seen[("validation", "epoch_accuracy")] == [1, 2]
    assert set(seen) == {("train", "epoch_loss"), ("train", "epoch_accuracy"), ("train", "epoch_learning_rate"),
                         ("validation", "epoch_loss"), ("validation", "epoch_accuracy")}


def test_without_tensorflow_the_report_says_so(run_dir, tmp_path, monkeypatch):
    import importlib.util

    from resnet_tl.evaluation import html_report as report

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "tensorflow" else real(name, *a))
    assert report.write_tensorboard([{"epoch": 1, "loss": 1.0}], tmp_path / "tb") is False
    assert not (tmp_path / "tb").exists()
    copy = tmp_path / "run"
    shutil.copytree(run_dir, copy, ignore=shutil.ignore_patterns("tensorboard"))
    assert "TensorFlow was not importable" in report.render_report(RunPaths(copy))
