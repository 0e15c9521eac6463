"""`train --exclude FILE`: the listed images leave the dataset, and the run records which."""

from __future__ import annotations

import json

import pytest
import yaml
from helpers import bars_folder
from typer.testing import CliRunner

from resnet_tl.cli import app
from resnet_tl.data import load_dataset
from resnet_tl.recipe import DataConfig

runner = CliRunner()


def test_an_audit_csv_or_a_path_list_leaves_images_out(tmp_path):
    data = bars_folder(tmp_path / "bars", n_per_class=10)
    out = [data / "hbar" / "01.png", data / "vbar" / "02.png"]
    csv_file = tmp_path / "audit.csv"
    csv_file.write_text("finding,rank,path,split\nlabel_error,1," + str(out[0]) + ",train\nduplicate,1,vbar/02.png,val\n")
    cfg = DataConfig(dir=str(data), image_size=16, cache_dir=str(tmp_path / "cache"), exclude=str(csv_file))
    ds = load_dataset(cfg)
    kept = {str(p) for p in [*ds.paths_train, *ds.paths_val]}
    assert len(kept) == 18 and not {str(p) for p in out} & kept
    assert sorted(ds.scan.excluded) == ["hbar/01.png", "vbar/02.png"]
    listing = tmp_path / "list.txt"
    listing.write_text(f"# keep these out\n{out[0]}\n\nnot/there.png\n")
    ds = load_dataset(cfg.model_copy(update={"exclude": str(listing)}))
    assert ds.scan.excluded == ["hbar/01.png"] and any("not/there.png" in w for w in ds.scan.warnings)


@pytest.mark.slow
def test_train_exclude_is_recorded_in_the_run(tmp_path):
    data = bars_folder(tmp_path / "bars", n_per_class=8)
    listing = tmp_path / "drop.txt"
    listing.write_text("hbar/00.png\nvbar/00.png\n")
    recipe = tmp_path / "r.yaml"
    recipe.write_text(yaml.safe_dump({
        "data": {"image_size": 16, "val_split": 0.25, "cache_dir": str(tmp_path / "cache"), "augment": {"flip": "none"}},
        "model": {"backbone": "resnet8", "weights": "none"},
        "schedule": [{"name": "all", "epochs": 1, "train": "all", "lr": 1e-3}],
        "train": {"batch_size": 8},
    }))
    res = runner.invoke(app, ["train", str(recipe), "--data", str(data), "--exclude", str(listing), "--out", str(tmp_path / "runs"),
                              "--name", "r", "--json"])
    assert res.exit_code == 0, res.output
    run = tmp_path / "runs" / "r"
    assert (run / "excluded.txt").read_text().split() == ["hbar/00.png", "vbar/00.png"]
    assert yaml.safe_load((run / "recipe.yaml").read_text())["data"]["exclude"] == str(listing.resolve())
    report = json.loads((run / "data_report.json").read_text())
    assert report["excluded"] == 2 and report["used"] == 14
    missing = runner.invoke(app, ["train", str(recipe), "--data", str(data), "--exclude", str(tmp_path / "nope.txt"), "--out", str(tmp_path / "runs")])
    assert missing.exit_code == 2 and "data.exclude: file" in missing.output and "Traceback" not in missing.output
