"""`resnet-tl data audit` as a user runs it: flipped labels and a copy across splits planted in a folder."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

from PIL import Image
from typer.testing import CliRunner

from resnet_tl.cli import app

runner = CliRunner()


def _planted(shared_data: Path, root: Path) -> tuple[Path, list[Path], Path, Path]:
    """shared_data with two hbar training images moved into vbar/ and a 2x upscaled copy of one put in val/."""
    data = root / "bars"
    shutil.copytree(shared_data, data)
    flipped = []
    for name in ("03.png", "11.png"):
        dest = data / "train" / "vbar" / f"flipped_{name}"
        (data / "train" / "hbar" / name).rename(dest)
        flipped.append(dest)
    original = data / "train" / "hbar" / "07.png"
    copy = data / "val" / "hbar" / "copy_of_07.png"
    Image.open(original).resize((32, 32), Image.Resampling.BICUBIC).save(copy)
    return data, flipped, original, copy


def test_audit_finds_planted_flips_and_a_copy_across_splits_and_links_them(shared_data, shared_run, tmp_path):
    data, flipped, original, copy = _planted(shared_data, tmp_path)
    out = tmp_path / "audit"
    res = runner.invoke(app, ["data", "audit", str(data), "--run", str(shared_run), "--out", str(out), "--json"])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert doc["images"] == 40 * 2 + 16 * 2 + 12 * 2 + 1 and doc["features_cached"] is False
    errors = {Path(r["path"]).name: r for r in doc["label_errors"]}
    for f in flipped:
        assert errors[f.name]["given"] == "vbar" and errors[f.name]["suggested"] == "hbar", errors.keys()
        (link,) = (out / "label_errors" / "vbar__as__hbar").glob(f"*_{f.name}")
        assert link.resolve() == f.resolve()
    assert len(errors) <= 2 * len(flipped)  # precision on a folder the model separates
    pairs = {frozenset((Path(d["path"]).name, Path(d["other_path"]).name)): d for d in doc["duplicates"]}
    pair = pairs[frozenset((original.name, copy.name))]
    assert pair["across_splits"] and {pair["split"], pair["other_split"]} == {"train", "val"}
    folder = out / "duplicates" / f"{pair['rank']:04d}_{pair['split']}-{pair['other_split']}"
    assert {p.resolve() for p in folder.iterdir()} == {original.resolve(), copy.resolve()}
    with open(out / "audit.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert {r["finding"] for r in rows} >= {"label_error", "duplicate"} and len(rows) == sum(doc["counts"][k] for k in ("label_errors", "duplicates", "outliers"))
    assert all((out / r["thumb"]).is_file() for r in doc["label_errors"])
    again = runner.invoke(app, ["data", "audit", str(data), "--run", str(shared_run), "--out", str(out), "--json"])
    assert json.loads(again.stdout)["features_cached"] is True


def test_audit_wants_one_source_of_features(shared_data):
    res = runner.invoke(app, ["data", "audit", str(shared_data)])
    assert res.exit_code == 2 and "neither --run nor --backbone" in res.output and "Traceback" not in res.output


def test_audit_of_a_run_goes_into_its_report(shared_data, shared_run, tmp_path):
    data, flipped, _, _ = _planted(shared_data, tmp_path)
    run = tmp_path / "run"
    shutil.copytree(shared_run, run)
    res = runner.invoke(app, ["data", "audit", str(data), "--run", str(run)])
    assert res.exit_code == 0, res.output
    assert "suspected label errors" in res.output and (run / "audit" / "audit.csv").is_file()
    html = (run / "report.html").read_text()
    section = html[html.index("<section id='audit'>"):]
    assert "Suspected label errors" in section and flipped[0].name in section and section.count("<img") >= 2
