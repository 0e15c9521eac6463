"""predict: files, folders and globs; unreadable files listed; csv/json; every model format agrees."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from helpers import bars_dataset, tiny_recipe


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny run that tells the bars apart, and its validation images as PNG/JPEG files."""
    from resnet_tl.train import train

    base = tmp_path_factory.mktemp("predict")
    ds = bars_dataset(n_per_class=16, n_val_per_class=4)
    recipe = tiny_recipe([{"name": "all", "epochs": 3, "train": "all", "lr": 3e-3, "batchnorm": "train"}])
    run = train(recipe, out=base / "runs", name="run", dataset=ds).run_dir
    imgs = base / "imgs"
    for i, (px, y) in enumerate(zip(ds.x_val, ds.y_val)):
        folder = imgs / ds.classes[y] / ("nested" if i % 3 == 0 else "")
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(px).save(folder / f"{i:02d}.png")
    Image.fromarray(ds.x_val[0]).save(imgs / "extra.jpg", quality=95)
    (imgs / "broken.png").write_bytes(b"\x89PNG not really")
    (imgs / "notes.txt").write_text("not an image\n")
    (imgs / ".hidden").mkdir()
    Image.fromarray(ds.x_val[1]).save(imgs / ".hidden" / "skip.png")
    return {"run": run, "imgs": imgs, "classes": list(ds.classes)}


def _cli(*args):
    from resnet_tl.cli import app

    return CliRunner().invoke(app, ["predict", *map(str, args)])


def test_files_folders_globs_and_an_unreadable_file(trained):
    from resnet_tl.predict import predict

    imgs = trained["imgs"]
    pngs = sorted(p for p in imgs.rglob("*.png") if ".hidden" not in p.parts and p.name != "broken.png")
    one = pngs[0]
    r = predict(trained["run"], [str(one), str(imgs / "vertical"), str(imgs / "*.jpg"), str(imgs / "broken.png"), str(imgs / "nope.png")],
                top_k=5, batch_size=3)
    paths = [row["path"] for row in r["rows"]]
    assert paths[0] == str(one)
    vertical = [p for p in pngs if "vertical" in p.parts and p != one]
    assert set(map(str, vertical)) <= set(paths)
    assert len(paths) == len(set(paths))  # the file named twice appears once
    assert str(imgs / "extra.jpg") in paths
    by_path = {row["path"]: row for row in r["rows"]}
    assert by_path[str(imgs / "broken.png")]["error"] == "not_an_image" and by_path[str(imgs / "broken.png")]["top"] == []
    assert by_path[str(imgs / "nope.png")]["error"] == "not_found"
    assert r["failed"] == 2 and r["predicted"] == len(paths) - 2
    assert r["top_k"] == 2 and r["labels"] == trained["classes"]  # top-5 of 2 classes is top-2
    for row in r["rows"]:
        if row["error"] is None:
            probs = [t["probability"] for t in row["top"]]
            assert probs == sorted(probs, reverse=True) and sum(probs) == pytest.approx(1.0, abs=1e-5)
    # A folder finds images recursively, but not hidden ones or non-images.
    r = predict(trained["run"], [str(imgs)], top_k=1)
    found = {Path(row["path"]).name for row in r["rows"]}
    assert "skip.png" not in found and "notes.txt" not in found and "broken.png" in found
    assert len(r["rows"]) == len(pngs) + 2  # + extra.jpg + broken.png


def test_csv_and_json_formats_and_output_file(trained, tmp_path):
    imgs = trained["imgs"]
    res = _cli(trained["run"], imgs, "--format", "json", "--top-k", "1")
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert doc["top_k"] == 1 and all(len(r["top"]) == (0 if r["error"] else 1) for r in doc["rows"])
    res = _cli(trained["run"], imgs, "--format", "csv")
    assert res.exit_code == 0, res.output
    rows = list(csv.DictReader(io.StringIO(res.stdout)))
    assert list(rows[0]) == ["path", "label_1", "probability_1", "label_2", "probability_2", "error", "detail"]
    broken = next(r for r in rows if r["path"].endswith("broken.png"))
    assert broken["error"] == "not_an_image" and broken["label_1"] == ""
    assert len(rows) == len(doc["rows"])
    # --output: the format from the suffix, nothing on stdout.
    out = tmp_path / "preds.json"
    res = _cli(trained["run"], imgs, "--output", out, "--top-k", "1")
    assert res.exit_code == 0 and res.stdout == "", res.output
    assert json.loads(out.read_text())["rows"] == doc["rows"]
    res = _cli(trained["run"], imgs, "--json")
    assert res.exit_code == 0 and json.loads(res.stdout)["predicted"] == doc["predicted"]


def test_output_never_overwrites_an_input_image(trained, tmp_path):
    target = trained["imgs"] / "extra.jpg"
    before = target.read_bytes()
    res = _cli(trained["run"], target, "--output", target)
    assert res.exit_code == 2 and "image file name" in res.stderr
    named = tmp_path / "a.csv"
    named.write_bytes(before)  # an input that is not named like an image
    res = _cli(trained["run"], named, "--output", named)
    assert res.exit_code == 2 and "one of the input images" in res.stderr
    assert target.read_bytes() == before and named.read_bytes() == before
    res = _cli(trained["run"], target, "--output", tmp_path / "missing" / "p.csv")
    assert res.exit_code == 2 and "does not exist" in res.stderr
    res = _cli(trained["run"], tmp_path / "nothing-here")
    assert res.exit_code == 2 and "found no image files" in res.stderr


@pytest.mark.slow
def test_every_model_format_gives_the_same_top1(trained):
    from resnet_tl.export import export_run
    from resnet_tl.predict import predict

    run = Path(trained["run"])
    export_run(run, ["keras", "savedmodel", "tflite"], ["none"], check=False)
    exp = run / "export"
    models = [run, exp / "model.keras", exp / "savedmodel", exp / "model_float32.tflite"]
    results = [predict(m, [str(trained["imgs"])], top_k=2, batch_size=4) for m in models]
    formats = [r["format"] for r in results]
    assert formats == ["keras", "keras", "savedmodel", "tflite"]
    ref = results[0]
    assert ref["predicted"] > 8
    for r in results[1:]:
        assert r["labels"] == ref["labels"]  # from the sidecars / labels.txt
        assert [row["path"] for row in r["rows"]] == [row["path"] for row in ref["rows"]]
        for a, b in zip(ref["rows"], r["rows"]):
            assert a["error"] == b["error"]
            if a["error"] is None:
                assert a["top"][0]["label"] == b["top"][0]["label"], (r["format"], a, b)
                np.testing.assert_allclose([t["probability"] for t in a["top"]], [t["probability"] for t in b["top"]], atol=1e-3)
