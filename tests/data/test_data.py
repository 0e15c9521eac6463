"""resnet_tl.data: decoding, scanning, the decode-once cache, batches, report and `data check`."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from helpers import ROOT
import typer
from typer.testing import CliRunner

from images import MESSY_EXPECTED, make_class_folder, noise, save
from resnet_tl.data import decode_bytes, decode_image, load_dataset, scan_folder
from resnet_tl.data.batches import ArrayBatches, class_weights
from resnet_tl.data.arrays import materialize
from resnet_tl.data.cache import DecodeCache
from resnet_tl.data.data_report import data_report
from resnet_tl.errors import UserError
from resnet_tl.recipe import DataConfig


def cfg_for(root: Path, tmp_path: Path, **kw) -> DataConfig:
    kw.setdefault("image_size", 8)
    return DataConfig(dir=str(root), cache_dir=str(tmp_path / "cache"), **kw)


def used_and_skipped(scan):
    used = {it.relpath for items in scan.items.values() for it in items}
    skipped = {Path(s.path).relative_to(scan.root).as_posix(): s.reason for s in scan.skipped}
    return used, skipped


# ---------------------------------------------------------------- decode
def test_decode_handles_every_mode(messy_folder):
    cat, dog = messy_folder / "cat", messy_folder / "dog"
    px = lambda p: decode_image(p, 8)[4, 4].tolist()  # noqa: E731
    assert px(dog / "anim.gif") == [0, 255, 0]  # first frame, not the red second one
    assert px(cat / "rgba.png") == [255, 255, 255]  # transparent -> white background
    assert px(dog / "i16.png") in ([127, 127, 127], [128, 128, 128])  # 32768 / 257, not clipped to 255
    assert px(dog / "palette.png") == [0, 0, 255]
    assert px(dog / "gray.png") == [100, 100, 100]
    r, g, b = px(cat / "cmyk.jpg")
    assert r > 200 and g < 50 and b < 50
    assert decode_image(dog / "big.JPEG", 32).shape == (32, 32, 3)
    assert decode_image(cat / "bmp_named.jpg", 8).dtype == np.uint8


def test_exif_orientation_is_applied(messy_folder):
    # Stored 40x20, left blue / right red; orientation 6 turns it clockwise: blue on top.
    out = decode_image(messy_folder / "cat" / "exif6.jpg", 8).astype(int)
    top, bottom = out[1, 4], out[6, 4]
    assert top[2] > 200 and top[0] < 60, top
    assert bottom[0] > 200 and bottom[2] < 60, bottom


def test_decode_bytes_matches_decode_image(messy_folder):
    p = messy_folder / "cat" / "good.jpg"
    np.testing.assert_array_equal(decode_bytes(p.read_bytes(), 16), decode_image(p, 16))


# ------------------------------------------------------------------ scan
def test_messy_folder_every_file_accounted_for(messy_folder, tmp_path):
    scan = scan_folder(messy_folder, cfg_for(messy_folder, tmp_path, skip_empty_classes=True, few_images_warning=0))
    used, skipped = used_and_skipped(scan)
    assert used == {p for p, r in MESSY_EXPECTED.items() if r == "used"}
    assert skipped == {p: r for p, r in MESSY_EXPECTED.items() if r != "used"}
    assert scan.ignored == {"hidden": 2, "not_image_extension": 1, "outside_class_folders": 0}
    assert scan.classes == ["cat", "dog"]
    assert any("bird" in w and "skip_empty_classes" in w for w in scan.warnings)
    assert scan.ok
    big = next(it for it in scan.items["train"] + scan.items["val"] if it.relpath == "dog/big.JPEG")
    assert (big.width, big.height) == (2000, 1500)
    exif = next(it for it in scan.items["train"] + scan.items["val"] if it.relpath.endswith("exif6.jpg"))
    assert (exif.width, exif.height) == (20, 40)


def test_empty_class_is_an_error_naming_the_folder(messy_folder, tmp_path):
    with pytest.raises(UserError, match=r"class folder '.*bird' has no usable image \(1 skipped: 1 not_an_image\).*skip_empty_classes"):
        scan_folder(messy_folder, cfg_for(messy_folder, tmp_path))


def test_missing_root_and_cache_inside_dataset(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        scan_folder(tmp_path / "nope", cfg_for(tmp_path / "nope", tmp_path))
    (tmp_path / "file.txt").write_text("x")
    with pytest.raises(UserError, match="is a file"):
        scan_folder(tmp_path / "file.txt", cfg_for(tmp_path, tmp_path))
    root = make_class_folder(tmp_path / "ds", {"a": 2, "b": 2})
    with pytest.raises(UserError, match="cache_dir .* inside the image folder"):
        scan_folder(root, DataConfig(dir=str(root), cache_dir=str(root / "cache")))


def test_one_class_is_a_blocking_problem(tmp_path):
    root = make_class_folder(tmp_path / "ds", {"only": 4})
    scan = scan_folder(root, cfg_for(root, tmp_path))
    assert not scan.ok and "at least 2" in scan.problems[0]
    with pytest.raises(UserError, match="at least 2"):
        load_dataset(cfg_for(root, tmp_path))


def test_split_is_stratified_deterministic_and_independent_of_listing(tmp_path):
    counts = {"a": 10, "b": 20, "c": 30}
    r1 = make_class_folder(tmp_path / "one", counts)
    # Same files, created in the opposite order: directory listing order differs.
    r2 = tmp_path / "two"
    for p in sorted(r1.rglob("*.png"), reverse=True):
        (r2 / p.relative_to(r1)).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(p, r2 / p.relative_to(r1))
    s1 = scan_folder(r1, cfg_for(r1, tmp_path, val_split=0.2))
    s2 = scan_folder(r2, cfg_for(r2, tmp_path, val_split=0.2))
    val_counts = np.bincount([it.label for it in s1.items["val"]], minlength=3)
    assert val_counts.tolist() == [2, 4, 6]
    assert [it.relpath for it in s1.items["val"]] == [it.relpath for it in s2.items["val"]]
    s3 = scan_folder(r1, cfg_for(r1, tmp_path, val_split=0.2, seed=7))
    assert [it.relpath for it in s3.items["val"]] != [it.relpath for it in s1.items["val"]]


def test_split_folders_leakage_and_duplicates(tmp_path):
    root = tmp_path / "ds"
    make_class_folder(root / "train", {"a": 4, "b": 4})
    make_class_folder(root / "valid", {"a": 2, "b": 2}, seed=1)
    make_class_folder(root / "test", {"a": 1}, seed=2)
    shutil.copy(root / "train" / "a" / "000.png", root / "valid" / "b" / "leaked.png")
    shutil.copy(root / "train" / "b" / "000.png", root / "train" / "b" / "copy.png")
    scan = scan_folder(root, cfg_for(root, tmp_path))
    assert scan.layout == "split_folders"
    assert {s: len(v) for s, v in scan.items.items()} == {"train": 9, "val": 5, "test": 1}
    assert len(scan.leakage) == 1 and scan.leakage[0]["splits"] == ["train", "val"]
    assert sorted(Path(p).name for p in scan.leakage[0]["paths"]) == ["000.png", "leaked.png"]
    assert len(scan.duplicates) == 1 and scan.duplicates[0]["split"] == "train"
    assert not any("no validation images" in w for w in scan.warnings)
    assert any("leakage" in w for w in scan.warnings)


def test_class_missing_from_val_is_a_warning(tmp_path):
    root = tmp_path / "ds"
    make_class_folder(root / "train", {"a": 3, "b": 3})
    make_class_folder(root / "val", {"a": 2}, seed=1)
    scan = scan_folder(root, cfg_for(root, tmp_path))
    assert scan.ok and scan.classes == ["a", "b"]
    assert any("'b' has no validation images" in w for w in scan.warnings)


# ----------------------------------------------------------------- cache
def test_second_load_decodes_nothing_and_arrays_match(tmp_path):
    root = make_class_folder(tmp_path / "ds", {"a": 6, "b": 6}, size=20)
    cfg = cfg_for(root, tmp_path)
    first = load_dataset(cfg)
    assert first.stats["decoded"] == 12 and first.stats["reused"] == 0
    assert first.stats["copied"] == 0  # new files are decoded in split order: no rearranging
    second = load_dataset(cfg)
    assert second.stats == {"hashed": 0, "decoded": 0, "reused": 12, "copied": 0}
    assert isinstance(second.x_train, np.memmap) and second.x_train.dtype == np.uint8
    assert second.x_train.shape == (len(second.y_train), 8, 8, 3)
    for x, paths in ((second.x_train, second.paths_train), (second.x_val, second.paths_val)):
        for row, p in zip(x, paths):
            np.testing.assert_array_equal(row, decode_image(p, 8))


def test_changes_invalidate_exactly_what_they_must(tmp_path):
    root = make_class_folder(tmp_path / "ds", {"a": 5, "b": 5}, size=20)
    cfg = cfg_for(root, tmp_path)
    load_dataset(cfg)
    target = root / "a" / "001.png"

    os.utime(target, ns=(1, 1))  # touched, same content: re-hashed only
    assert load_dataset(cfg).stats["hashed"] == 1 and load_dataset(cfg).stats["decoded"] == 0

    save(noise(20, 20, 999), target)  # new content: only this file is decoded
    ds = load_dataset(cfg)
    assert (ds.stats["hashed"], ds.stats["decoded"]) == (1, 1)
    paths = ds.paths_train + ds.paths_val
    x = np.concatenate([ds.x_train, ds.x_val])
    np.testing.assert_array_equal(x[paths.index(target)], decode_image(target, 8))

    save(noise(20, 20, 1234), root / "b" / "new.png")  # added
    ds = load_dataset(cfg)
    assert ds.stats["decoded"] == 1 and len(ds.y_train) + len(ds.y_val) == 11

    (root / "a" / "002.png").unlink()  # removed
    ds = load_dataset(cfg)
    assert ds.stats["decoded"] == 0 and len(ds.y_train) + len(ds.y_val) == 10
    assert root / "a" / "002.png" not in ds.paths_train + ds.paths_val

    ds = load_dataset(cfg_for(root, tmp_path, image_size=16))  # a new size decodes again
    assert ds.stats["decoded"] == 10 and ds.x_train.shape[1:] == (16, 16, 3)


def test_interrupted_index_write_leaves_a_usable_cache(tmp_path, monkeypatch):
    root = make_class_folder(tmp_path / "ds", {"a": 4, "b": 4}, size=20)
    cfg = cfg_for(root, tmp_path)
    load_dataset(cfg)
    save(noise(20, 20, 77), root / "a" / "000.png")
    save(noise(20, 20, 78), root / "b" / "extra.png")

    import resnet_tl.fileio as rio

    def crash(*a, **k):
        raise KeyboardInterrupt("killed between data write and index replace")

    monkeypatch.setattr(rio.os, "replace", crash)
    with pytest.raises(KeyboardInterrupt):
        load_dataset(cfg)
    monkeypatch.undo()
    # Simulate a SIGKILL mid-append too: junk past the committed rows.
    store_dir = DecodeCache(root, cfg.cache_dir).folder / "8px"
    rows = next(store_dir.glob("rows-*.u8"))
    with open(rows, "ab") as f:
        f.write(b"\xff" * 1000)

    ds = load_dataset(cfg)
    assert ds.stats["decoded"] == 2
    for x, paths in ((ds.x_train, ds.paths_train), (ds.x_val, ds.paths_val)):
        for row, p in zip(x, paths):
            np.testing.assert_array_equal(row, decode_image(p, 8))
    assert load_dataset(cfg).stats["decoded"] == 0


def test_bad_files_are_not_reopened(messy_folder, tmp_path):
    cfg = cfg_for(messy_folder, tmp_path, skip_empty_classes=True)
    first = scan_folder(messy_folder, cfg)
    second = scan_folder(messy_folder, cfg)
    assert second.counters.hashed == 0 and second.counters.decoded == 0
    assert used_and_skipped(first) == used_and_skipped(second)
    arrays = materialize(second, 8, cfg)
    assert arrays.x["train"].shape[0] + arrays.x["val"].shape[0] == 14


# --------------------------------------------------------------- batches
def test_class_weights():
    y = np.array([0, 0, 0, 1])
    w = class_weights(y, ["a", "b"], "balanced")
    assert w == pytest.approx({0: 4 / 6, 1: 2.0})
    assert class_weights(y, ["a", "b"], "none") is None
    assert class_weights(y, ["a", "b"], {"b": 3}) == {0: 1.0, 1: 3.0}
    with pytest.raises(UserError, match=r"unknown class 'bb'.*allowed: a, b.*did you mean 'b'"):
        class_weights(y, ["a", "b"], {"bb": 2})


def test_array_batches_cover_every_sample_once_and_reshuffle():
    n = 23
    x = np.arange(n, dtype=np.uint8)[:, None, None, None] * np.ones((1, 2, 2, 3), np.uint8)
    y = np.arange(n, dtype=np.int32) % 3
    b = ArrayBatches(x, y, batch_size=5, seed=1)
    assert len(b) == 5
    epochs = []
    for _ in range(2):
        seen = []
        for xb, yb in b:
            assert xb.dtype == np.float32 and yb.dtype == np.int32
            ids = xb[:, 0, 0, 0].astype(int)
            np.testing.assert_array_equal(yb, ids % 3)
            seen += ids.tolist()
        assert sorted(seen) == list(range(n))
        epochs.append(seen)
    assert epochs[0] != epochs[1]
    assert b.order(0).tolist() == ArrayBatches(x, y, batch_size=5, seed=1).order(0).tolist()

    shards = [ArrayBatches(x, y, 4, seed=1, shard_index=i, num_shards=3) for i in range(3)]
    parts = [set(s.order().tolist()) for s in shards]
    assert all(len(p) == 7 for p in parts) and not (parts[0] & parts[1] or parts[1] & parts[2])

    xb, yb, wb = ArrayBatches(x, y, 8, class_weight={0: 1.0, 1: 2.0, 2: 3.0})[0]
    np.testing.assert_allclose(wb, (yb + 1).astype(np.float32))

    xb, yb = ArrayBatches(x, y, 8, mixup=0.4, cutmix=1.0, num_classes=3, seed=3)[0]
    assert yb.shape == (8, 3) and np.allclose(yb.sum(1), 1.0)


# ----------------------------------------------------------- report + cli
def test_report_is_json_and_lists_every_skip(messy_folder, tmp_path):
    cfg = cfg_for(messy_folder, tmp_path, skip_empty_classes=True)
    rep = json.loads(json.dumps(data_report(scan_folder(messy_folder, cfg), cfg)))
    assert rep["ok"] is True
    assert rep["skipped_count"] == sum(r != "used" for r in MESSY_EXPECTED.values())
    assert rep["skipped_by_reason"]["not_an_image"] == 2
    assert set(rep["class_weights_balanced"]) == {"cat", "dog"}
    assert [c["total"] for c in rep["classes"]] == [7, 7]


def _cli():
    from resnet_tl.cli.data import app as data_app

    root = typer.Typer()
    root.add_typer(data_app, name="data")
    return root


def test_data_check_cli(messy_folder, tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    runner = CliRunner()
    good = make_class_folder(tmp_path / "good", {"a": 3, "b": 3})
    res = runner.invoke(_cli(), ["data", "check", str(good), "--image-size", "16"])
    assert res.exit_code == 0, res.output
    assert "training can proceed" in res.stdout

    res = runner.invoke(_cli(), ["data", "check", str(messy_folder), "--json"])
    assert res.exit_code == 2
    doc = json.loads(res.stdout)
    assert doc["ok"] is False and any("bird" in p for p in doc["problems"])

    res = runner.invoke(_cli(), ["data", "check", str(tmp_path / "missing")])
    assert res.exit_code == 2 and res.stderr.startswith("error: data.dir") and res.stdout == ""


def test_data_package_never_imports_tensorflow_or_keras():
    code = (
        "import sys, resnet_tl.data, resnet_tl.data.batches, resnet_tl.data.data_report, resnet_tl.cli.data;"
        "bad = [m for m in ('tensorflow', 'keras', 'jax') if m in sys.modules]; assert not bad, bad"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    subprocess.run([sys.executable, "-c", code], check=True, env=env)


def test_keras_pydataset_trains_under_jax_backend(tmp_path):
    """The input path needs no TensorFlow: fit a tiny model from ArrayBatches with KERAS_BACKEND=jax."""
    code = """
import sys, numpy as np, keras
from resnet_tl.data.batches import ArrayBatches
from resnet_tl.training.batches import as_keras_dataset
x = np.random.default_rng(0).integers(0, 256, (40, 8, 8, 3), dtype=np.uint8)
y = (x.mean(axis=(1, 2, 3)) > 127).astype(np.int32)
ds = as_keras_dataset(ArrayBatches(x, y, 16, seed=0, class_weight={0: 1.0, 1: 2.0}))
model = keras.Sequential([keras.Input((8, 8, 3)), keras.layers.Rescaling(1 / 255), keras.layers.Flatten(), keras.layers.Dense(2)])
model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
model.fit(ds, epochs=2, verbose=0)
assert ds.batches.epoch >= 1, ds.batches.epoch  # reshuffled (fit may begin one extra epoch to build)
assert "tensorflow" not in sys.modules, "tensorflow was imported"
"""
    env = {**os.environ, "KERAS_BACKEND": "jax", "PYTHONPATH": str(ROOT)}
    res = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert res.returncode == 0, res.stderr[-2000:]


def test_other_image_extensions_are_counted_and_named(tmp_path):
    root = make_class_folder(tmp_path / "ds", {"a": 2, "b": 2})
    (root / "a" / "phone.HEIC").write_bytes(b"x")
    (root / "b" / "scan.tif").write_bytes(b"x")
    scan = scan_folder(root, cfg_for(root, tmp_path))
    assert scan.ignored["not_image_extension"] == 2
    assert any("'.heic' file(s) ignored" in w for w in scan.warnings)
    assert set(scan.ignored) == {"hidden", "not_image_extension", "outside_class_folders"}
