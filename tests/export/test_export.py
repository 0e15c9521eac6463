"""Export: every format written, then run in its real runtime (Keras, TensorFlow, LiteRT, onnxruntime)."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from helpers import bars_dataset, tiny_recipe
from resnet_tl.errors import ExportCheckFailed, UserError
from resnet_tl.export.exporter import artifacts_to_write as plan_artifacts
from resnet_tl.formats import FORMATS, QUANT_NAMES as QUANTIZE

SCHEDULE = [{"name": "all", "epochs": 6, "train": "all", "lr": 3e-3, "batchnorm": "train"}]


def _train(out: Path, name: str, **sections):
    from resnet_tl.training.train import train

    ds = bars_dataset(n_per_class=48)
    result = train(tiny_recipe(SCHEDULE, **sections), out=out, name=name, dataset=ds)
    assert result.metrics["accuracy"] >= 0.9, result.metrics  # a learnable task, learnt
    return result.run_dir, ds


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    return _train(tmp_path_factory.mktemp("runs"), "bars")


@pytest.fixture(scope="module")
def exported(trained):
    from resnet_tl.export.exporter import export_run

    run, ds = trained
    # Every row of the format table: the round-trip tests below cover each one.
    result = export_run(run, ["all"], list(QUANTIZE), dataset=ds)
    return run, ds, result


def _keras_probs(run: Path, x: np.ndarray) -> np.ndarray:
    from resnet_tl.formats.predictor import load_predictor

    return load_predictor(run / "model.keras")(x)


def _png(img: np.ndarray, scale: int = 1) -> bytes:
    pil = Image.fromarray(img)
    if scale != 1:
        pil = pil.resize((img.shape[1] * scale, img.shape[0] * scale), Image.Resampling.NEAREST)
    b = io.BytesIO()
    pil.save(b, "PNG")
    return b.getvalue()


# ------------------------------------------------------------------ every format, parity
@pytest.mark.slow
def test_every_artifact_passes_parity_in_its_runtime(exported):
    run, ds, result = exported
    out = run / "export"
    names = {a.path for a in result.artifacts}
    assert names == {FORMATS[f].filename(q) for f, q in plan_artifacts(["all"], list(QUANTIZE))}
    assert {"model.keras", "savedmodel", "model_int8.tflite", "model.onnx"} <= names
    assert "model_openvino.xml" in names
    tflite = sorted(n for n in names if n.endswith(".tflite"))
    assert sorted(a.path for a in result.artifacts if a.runtime == "mediapipe") == tflite  # one app row per variant
    for a in result.artifacts:
        assert a.check == "passed", (a.path, a.runtime, a.parity, a.note)
        assert a.parity["agreement"] >= 0.97
        assert a.parity["latency_ms"] > 0 and a.size_bytes > 0
        assert (out / a.path).exists() and (out / a.sidecar).is_file()
    assert (out / "labels.txt").read_text().split() == ds.classes
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["check"] == "passed" and manifest["n_check_images"] == len(ds.y_val)
    assert {"tensorflow", "keras", "ai-edge-litert", "mediapipe"} <= set(manifest["versions"])
    assert {(a["path"], a["runtime"]) for a in manifest["artifacts"]} >= {(t, "mediapipe") for t in tflite}
    by_path = {a["path"]: a for a in manifest["artifacts"]}
    assert len(by_path["model_int8.tflite"]["sha256"]) == 64
    float32 = by_path["model_float32.tflite"]["size_bytes"]
    assert by_path["model_int8.tflite"]["size_bytes"] < 0.5 * float32


@pytest.mark.slow
def test_int8_agreement_is_measured_from_real_outputs(exported):
    from resnet_tl.formats.predictor import load_predictor

    run, ds, result = exported
    art = next(a for a in result.artifacts if a.quantize == "int8")
    side = json.loads((run / "export" / art.sidecar).read_text())
    assert side["input"]["dtype"] == "uint8" and side["input"]["quantization"]["scale"] > 0
    assert side["labels"] == ds.classes and side["image_size"] == 16
    p = load_predictor(run / "export" / art.path)
    assert p.format == "tflite" and p.labels == ds.classes and p.image_size == 16
    probs = p(ds.x_val)
    ref = _keras_probs(run, ds.x_val)
    pred = probs.argmax(1)
    assert len(np.unique(pred)) == len(ds.classes)  # not a single-class model
    assert art.parity["agreement"] == pytest.approx(float(np.mean(pred == ref.argmax(1))))
    assert art.parity["predicted_classes"] == len(ds.classes)
    assert np.abs(probs.sum(1) - 1).max() < 0.05


@pytest.mark.slow
def test_every_format_round_trips_through_one_interface(exported):
    from resnet_tl.formats.predictor import load_predictor

    run, ds, result = exported
    ref = _keras_probs(run, ds.x_val[:5])
    for a in result.artifacts:
        p = load_predictor(run / "export" / a.path)
        assert p.format == a.format and p.image_size == 16 and p.labels == ds.classes
        probs = p(ds.x_val[:5])
        assert probs.dtype == np.float32 and probs.shape == (5, 2)
        assert (probs.argmax(1) == ref.argmax(1)).all(), a.path
    with pytest.raises(UserError, match=r"\(B, 16, 16, 3\)"):
        p(np.zeros((1, 8, 8, 3), np.uint8))


# ------------------------------------------------------------------ apps: metadata, MediaPipe
@pytest.mark.slow
def test_every_tflite_carries_metadata_and_labels(exported):
    from resnet_tl.formats.tflite_metadata import read_metadata

    run, ds, result = exported
    for a in (a for a in result.artifacts if a.runtime == "litert"):
        md = read_metadata((run / "export" / a.path).read_bytes())
        assert md["labels"] == ds.classes and md["files"] == ["labels.txt"], a.path
        meta = md["metadata"]
        assert meta["name"] == "t" and meta["version"] == run.name and "resnet8" in meta["description"]
        assert meta["min_parser_version"] == "1.0.0"  # nothing newer than schema 1.0.0 is used
        (sub,) = meta["subgraph_metadata"]
        (inp,), (outp,) = sub["input_tensor_metadata"], sub["output_tensor_metadata"]
        assert inp["content"]["content_properties"]["color_space"] == "RGB"
        assert inp["process_units"][0]["options"] == {"mean": [0.0], "std": [1.0]}  # pixels 0..255 as they are
        assert outp["associated_files"][0]["type"] == "TENSOR_AXIS_LABELS"
        if a.quantize == "int8":  # an app feeds raw uint8 pixels: the input must be quantised as scale 1, zero 0
            assert a.io["input"]["dtype"] == "uint8" and a.io["input"]["quantization"] == {"scale": 1.0, "zero_point": 0}


@pytest.mark.slow
def test_mediapipe_reads_category_names_from_every_variant(exported):
    """MediaPipe's own ImageClassifier, given image files: names come out of the model and agree with Keras."""
    from resnet_tl.export.app_check import MediaPipeClassifier

    run, ds, result = exported
    rows = [a for a in result.artifacts if a.runtime == "mediapipe"]
    assert {a.quantize for a in rows} == {"none", "float16", "dynamic", "int8"}
    for a in rows:
        assert a.check == "passed" and a.parity["names_from_model"] and a.parity["unreadable"] == 0, (a.path, a.parity)
        assert a.parity["images"] == "arrays written as PNG" and a.parity["predicted_classes"] == 2
    # Independently of the export code: one file, through MediaPipe, by name.
    ref = _keras_probs(run, ds.x_val)
    f = run / "one.png"
    f.write_bytes(_png(ds.x_val[0]))
    clf = MediaPipeClassifier(run / "export" / "model_int8.tflite", ["?", "?"])  # names must come from the model
    try:
        name, _ = clf(f)
    finally:
        clf.close()
    assert name == ds.classes[ref[0].argmax()]


# ------------------------------------------------------------------ SavedModel served without project code
@pytest.mark.slow
def test_saved_model_cli_serves_a_real_image(exported, tmp_path):
    from resnet_tl.data.decode import decode_file

    run, ds, _ = exported
    image = tmp_path / "vertical.png"
    image.write_bytes(_png(ds.x_val[0]))
    pixels = decode_file(image, 16).pixels[None]
    np.save(tmp_path / "x.npy", pixels)
    proc = subprocess.run(
        [sys.executable, "-m", "tensorflow.python.tools.saved_model_cli", "run", "--dir", str(run / "export" / "savedmodel"),
         "--tag_set", "serve", "--signature_def", "serving_default",
         "--inputs", f"images={tmp_path / 'x.npy'}", "--outdir", str(tmp_path / "out")],
        capture_output=True, text=True, timeout=300, cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    probs = np.load(tmp_path / "out" / "probabilities.npy")
    assert probs.shape == (1, 2)
    np.testing.assert_allclose(probs, _keras_probs(run, pixels), atol=1e-4)


@pytest.mark.slow
def test_bytes_signature_decodes_and_resizes_inside_the_graph(exported):
    import tensorflow as tf

    from resnet_tl.data.decode import decode_bytes

    run, ds, _ = exported
    loaded = tf.saved_model.load(str(run / "export" / "savedmodel"))
    blobs = [_png(ds.x_val[i], scale=4) for i in range(4)]  # 64x64 files, resized to 16 in the graph
    probs = loaded.signatures["serving_bytes"](image_bytes=tf.constant(blobs))["probabilities"].numpy()
    ref = _keras_probs(run, np.stack([decode_bytes(b, 16) for b in blobs]))
    assert probs.shape == (4, 2)
    assert (probs.argmax(1) == ref.argmax(1)).all()
    assert np.abs(probs - ref).max() < 0.05


def _awkward_files(folder: Path, images: np.ndarray) -> list[Path]:
    """Each image as a user's camera or editor might save it: upscaled PNG, JPEG, EXIF-rotated JPEG, RGBA PNG."""
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    files = []
    for i, img in enumerate(images):
        big = Image.fromarray(img).resize((48, 48), Image.Resampling.BICUBIC)
        big.save(folder / f"{i:03d}_png.png")
        big.save(folder / f"{i:03d}_jpeg.jpg", quality=95)
        # Stored rotated 90 degrees clockwise, tagged "rotate 90 counter-clockwise to view" (orientation 8):
        # only a decoder that applies EXIF sees the upright image. A bar flips class if it does not.
        exif = Image.Exif()
        exif[0x0112] = 8
        big.transpose(Image.Transpose.ROTATE_270).save(folder / f"{i:03d}_exif8.jpg", quality=95, exif=exif.tobytes())
        rgba = np.dstack([np.asarray(big), np.full((48, 48), 255, np.uint8)])
        rgba[:6, :, 3] = 0  # a transparent strip at the top: white after compositing
        Image.fromarray(rgba, "RGBA").save(folder / f"{i:03d}_rgba.png")
        files += sorted(folder.glob(f"{i:03d}_*"))
    return files


@pytest.mark.slow
def test_serving_bytes_agrees_with_predict_on_exif_and_rgba_files(exported, tmp_path):
    """The SavedModel decodes uploads in its graph; `resnet-tl predict` decodes with Pillow. Same top-1."""
    import tensorflow as tf

    run, ds, _ = exported
    files = _awkward_files(tmp_path / "uploads", ds.x_val)
    r = _cli(["predict", str(run), str(tmp_path / "uploads"), "--top-k", "1", "--json"])
    assert r.exit_code == 0, r.output
    by_predict = {Path(row["path"]).name: row["top"][0]["label"] for row in json.loads(r.stdout)["rows"]}
    assert len(by_predict) == len(files) == 4 * len(ds.y_val)
    loaded = tf.saved_model.load(str(run / "export" / "savedmodel"))
    probs = loaded.signatures["serving_bytes"](image_bytes=tf.constant([f.read_bytes() for f in files]))["probabilities"]
    by_graph = {f.name: ds.classes[k] for f, k in zip(files, probs.numpy().argmax(1))}
    agree = np.mean([by_graph[n] == by_predict[n] for n in by_predict])
    assert agree >= 0.995, {n: (by_graph[n], by_predict[n]) for n in by_predict if by_graph[n] != by_predict[n]}
    rotated = [f.name for f in files if "exif8" in f.name]
    assert [by_graph[n] for n in rotated] == [by_predict[n] for n in rotated]  # EXIF applied in the graph
    # Upright and rotated copies of one image get the same class: the rotation was undone, not ignored.
    assert [by_graph[n] for n in rotated] == [by_graph[n.replace("exif8", "jpeg")] for n in rotated]


# ------------------------------------------------------------------ mixed precision
@pytest.mark.slow
def test_mixed_bfloat16_model_exports_with_float32_compute(tmp_path):
    from resnet_tl.export.exporter import export_run
    from resnet_tl.models.saving import float32_copy, load_keras_model

    run, ds = _train(tmp_path, "bf16", train={"precision": "mixed_bfloat16"})
    result = export_run(run, ["savedmodel", "tflite"], ["none", "int8"], dataset=ds)
    assert [(a.runtime, a.check) for a in result.artifacts] == [
        ("tensorflow", "passed"), ("litert", "passed"), ("mediapipe", "passed"), ("litert", "passed"), ("mediapipe", "passed")]
    model = load_keras_model(run / "model.keras")
    copy = float32_copy(model)
    assert copy is not model
    assert {layer.dtype_policy.compute_dtype for layer in copy.layers} == {"float32"}
    x = ds.x_val[:8].astype(np.float32)  # the same function: bf16 rounding apart, the same probabilities
    np.testing.assert_allclose(np.asarray(copy(x)), np.asarray(model(x), np.float32), atol=2e-2)


# ------------------------------------------------------------------ CLI
def _cli(args):
    from resnet_tl.cli import app

    return CliRunner().invoke(app, args)


def test_cli_no_check_json_is_one_document(trained):
    run, _ = trained
    r = _cli(["export", str(run), "--format", "keras", "--no-check", "--json"])
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    assert doc["check"] == "skipped" and doc["artifacts"][0]["parity"] is None
    assert (run / "export" / "model.keras").is_file() and (run / "export" / "model.json").is_file()


def test_failed_check_exits_1_keeps_files_and_marks_them(trained, monkeypatch):
    import resnet_tl.export.exporter as export_mod
    from resnet_tl.export import parity

    run, ds = trained
    monkeypatch.setattr(export_mod, "load_dataset", lambda cfg: ds)  # the run's data folder is synthetic
    monkeypatch.setattr(parity, "threshold", lambda cfg, q: 1.01)  # no artifact can reach it
    r = _cli(["export", str(run), "--format", "tflite", "--json"])
    assert r.exit_code == 1, r.output
    doc = json.loads(r.stdout)
    assert doc["check"] == "failed"
    manifest = json.loads((run / "export" / "manifest.json").read_text())
    # Earlier exports' artifacts stay listed first (the manifest merges); this export's come last.
    art = [a for a in manifest["artifacts"] if a["runtime"] == "litert"][-1]
    assert art["check"] == "failed" and art["parity"]["agreement"] == 1.0
    assert (run / "export" / art["path"]).is_file()
    with pytest.raises(ExportCheckFailed, match="files kept"):
        export_mod.export_run(run, ["tflite"], ["none"], dataset=ds)


def test_user_errors_exit_2(trained, tmp_path):
    run, _ = trained
    assert _cli(["export", str(run), "--format", "pdf"]).exit_code == 2
    r = _cli(["export", str(run), "--format", "savedmodel", "--quantize", "int8"])
    assert r.exit_code == 2 and "tflite" in r.output
    assert _cli(["export", str(tmp_path / "missing")]).exit_code == 2


def test_plan_and_representative_sample():
    from resnet_tl.export.exporter import artifacts_to_write as plan_artifacts, representative_sample

    assert plan_artifacts(["savedmodel", "tflite"], ["none", "int8"]) == [
        ("savedmodel", "none"), ("tflite", "none"), ("tflite", "int8")]
    assert [f for f, _ in plan_artifacts(["all"], ["none"])] == ["keras", "savedmodel", "tflite", "onnx", "openvino"]
    y = np.array([0] * 90 + [1] * 10)
    x = np.arange(100)
    picked = representative_sample(x, y, 20)
    assert len(picked) == 20 and (y[picked] == 1).sum() == 10  # the rare class is not drowned out


def test_runtimes_reject_unknown_paths(tmp_path):
    from resnet_tl.formats.predictor import load_predictor

    with pytest.raises(UserError, match="no such file"):
        load_predictor(tmp_path / "nope.tflite")
    (tmp_path / "m.pt").write_bytes(b"x")
    with pytest.raises(UserError, match="allowed: .keras"):
        load_predictor(tmp_path / "m.pt")


# ------------------------------------------------------------------ ONNX (the [onnx] extra)
@pytest.mark.slow
def test_onnx_export_runs_in_onnxruntime(exported):
    run, ds, result = exported
    (art,) = [a for a in result.artifacts if a.format == "onnx"]
    assert art.path == "model.onnx" and art.runtime == "onnxruntime" and art.check == "passed", art.parity
    assert json.loads((run / "export" / "model_onnx.json").read_text())["labels"] == ds.classes


# ------------------------------------------------------------------ OpenVINO IR (the [openvino] extra; in [test])
@pytest.mark.slow
def test_openvino_ir_runs_in_openvino(exported):
    from resnet_tl.formats.predictor import load_predictor

    run, ds, result = exported
    (art,) = [a for a in result.artifacts if a.format == "openvino"]
    assert art.path == "model_openvino.xml" and art.runtime == "openvino" and art.check == "passed", art.parity
    assert (run / "export" / "model_openvino.bin").stat().st_size < art.size_bytes  # size counts graph + weights
    assert result.versions["openvino"]
    p = load_predictor(run / "export" / art.path)
    assert p.format == "openvino" and p.labels == ds.classes and p.image_size == 16
    np.testing.assert_allclose(p(ds.x_val), _keras_probs(run, ds.x_val), atol=1e-4)


# ------------------------------------------------------------------ the gates
def test_gates_hold_accuracy_drop_as_well_as_agreement():
    from resnet_tl.export.parity import counts, gates
    from resnet_tl.recipe import ExportConfig

    cfg = ExportConfig(min_agreement_int8=0.97, max_accuracy_drop=0.01)
    # 1,000 images, Keras right on all: 20 flips keep agreement at 0.98 (passes the int8 threshold),
    # yet cost 2 points of accuracy, and 20 of 20 discordant pairs prove it.
    y = np.zeros(1000, int)
    pred = y.copy()
    pred[:20] = 1
    g = gates(counts(pred, y, y), cfg, "int8")
    assert g["agreement"]["passed"] and not g["accuracy_drop"]["passed"]
    assert g["accuracy_drop"]["value"] == pytest.approx(0.02) and g["accuracy_drop"]["limit"] == 0.01
    # An artifact more accurate than Keras is no drop at all.
    better = counts(y, pred, y)  # Keras wrong on 20, the artifact right everywhere
    assert gates(better, cfg, "int8")["accuracy_drop"]["passed"] and gates(better, cfg, "int8")["accuracy_drop"]["value"] < 0


def _copy_run(run: Path, dest: Path) -> Path:
    import shutil

    shutil.copytree(run, dest, ignore=shutil.ignore_patterns("export"))
    return dest


def test_accuracy_drop_fails_the_export_even_when_agreement_passes(trained, tmp_path, monkeypatch):
    from scipy.stats import binomtest

    import resnet_tl.export.exporter as export_mod
    import resnet_tl.formats.predictor as runtimes
    from resnet_tl.export import parity

    run, ds = trained
    run = _copy_run(run, tmp_path / "run")
    real_load = runtimes.load_predictor
    y = np.asarray(ds.y_val)
    flipped = np.flatnonzero(_keras_probs(run, ds.x_val).argmax(1) == y)[:6]  # images Keras gets right
    wrong = np.eye(2, dtype=np.float32)[1 - y[flipped]]

    def six_wrong(path, **kw):
        # The artifact gets 6 of 16 wrong that Keras gets right: a drop of 6/16 that 16 images can show.
        predictor = real_load(path, **kw)
        run_batch = predictor._run_batch

        def run_batch_six_wrong(x):
            probs = run_batch(x)
            if len(x) == len(y):  # the parity pass (one batch of 16), not the latency calls
                probs[flipped] = wrong
            return probs

        predictor._run_batch = run_batch_six_wrong
        return predictor

    monkeypatch.setattr(parity, "load_predictor", six_wrong)
    monkeypatch.setattr(parity, "threshold", lambda cfg, q: 0.5)  # 10/16 agreement passes
    # 6 of 6 discordant pairs: scipy's exact one-sided 95% bound, translated to the drop.
    lo = 6 * (2 * binomtest(6, 6, alternative="greater").proportion_ci(0.95, method="exact").low - 1) / 16
    with pytest.raises(ExportCheckFailed, match=(
            r"model_float32.tflite \(litert\): accuracy drop 0\.3750 > 0\.01 \(export.max_accuracy_drop\): "
            rf"with 95% confidence at least {lo:.4f}, {lo - 0.01:.4f} over the limit \(n=16\).*"
            r"--set export.max_accuracy_drop=VALUE.*--no-check")):
        export_mod.export_run(run, ["keras", "tflite"], ["none"], dataset=ds)
    manifest = json.loads((run / "export" / "manifest.json").read_text())
    by_path = {a["path"]: a for a in manifest["artifacts"] if a["runtime"] != "mediapipe"}  # LiteRT's row of the .tflite
    tfl = by_path["model_float32.tflite"]
    assert tfl["check"] == "failed" and tfl["gates"]["agreement"]["passed"]
    drop = tfl["gates"]["accuracy_drop"]
    assert (drop["value"], drop["limit"], drop["passed"], drop["n"]) == (0.375, 0.01, False, 16)
    assert drop["interval"][0] == pytest.approx(lo, abs=1e-6) and drop["images_needed"] == 299
    # model.keras is the run's own file: run, but gated on nothing (agreement with itself proves nothing).
    assert by_path["model.keras"]["gates"] == {} and by_path["model.keras"]["check"] == "passed"
    assert manifest["thresholds"]["max_accuracy_drop"] == 0.01
    # The way on that the error names: a larger limit for this export, without editing the run.
    monkeypatch.setattr(export_mod, "load_dataset", lambda cfg: ds)  # the run's data folder is synthetic
    r = _cli(["export", str(run), "--format", "tflite", "--set", "export.max_accuracy_drop=0.5", "--json"])
    assert r.exit_code == 0, r.output
    assert {a["gates"]["accuracy_drop"]["limit"] for a in json.loads(r.stdout)["artifacts"]} == {0.5}
    r = _cli(["export", str(run), "--set", "model.backbone=resnet50"])
    assert r.exit_code == 2 and "allowed: export.* keys" in r.output


def test_a_one_class_model_is_warned_about(trained, tmp_path, monkeypatch):
    from resnet_tl.export.exporter import export_run
    from resnet_tl.models.saving import load_keras_model

    run, ds = trained
    run = _copy_run(run, tmp_path / "run")
    model = load_keras_model(run / "model.keras")
    kernel, bias = model.weights[-2], model.weights[-1]  # the output layer
    kernel.assign(np.zeros(kernel.shape, np.float32))
    bias.assign(np.array([4.0, 0.0], np.float32))  # always class 0
    model.save(run / "model.keras")
    result = export_run(run, ["tflite"], ["none"], dataset=ds)
    art = next(a for a in result.artifacts if a.runtime == "litert")
    # Quantisation cannot change a constant answer: agreement is perfect, and vacuous.
    assert art.parity["agreement"] == 1.0 and art.parity["predicted_classes"] == 1
    assert len(result.warnings) == 1 and f"predicts '{ds.classes[0]}' for all {len(ds.y_val)}" in result.warnings[0]
    assert json.loads((run / "export" / "manifest.json").read_text())["warnings"] == result.warnings
    monkeypatch.setattr("resnet_tl.export.exporter.load_dataset", lambda cfg: ds)  # the run's data folder is synthetic
    r = _cli(["export", str(run), "--format", "tflite", "--json"])
    assert r.exit_code == 0 and json.loads(r.stdout)["warnings"] == result.warnings


def test_parity_streams_a_memory_mapped_split(trained, tmp_path):
    # 8,000 validation images as a uint8 memmap (6 MB); as float32 they would be 25 MB.
    import tracemalloc

    from helpers import ArrayDataset
    from resnet_tl.export.exporter import export_run

    run, ds = trained
    n = 8000
    x = np.lib.format.open_memmap(tmp_path / "x_val.npy", mode="w+", dtype=np.uint8, shape=(n, 16, 16, 3))
    reps = -(-n // len(ds.y_val))
    x[:] = np.concatenate([ds.x_val] * reps)[:n]
    x.flush()
    x = np.load(tmp_path / "x_val.npy", mmap_mode="r")
    y = np.concatenate([ds.y_val] * reps)[:n]
    float32_bytes = n * 16 * 16 * 3 * 4

    def peak(split) -> int:
        tracemalloc.start()
        try:
            result = export_run(run, ["keras"], ["none"], dataset=split)
            return tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
            assert result.n_check_images == len(split.y_val) and result.artifacts[0].check == "passed"

    # What grows with the split, apart from what loading the model and writing the files cost anyway.
    base = peak(ds)
    grown = peak(ArrayDataset(ds.classes, ds.x_train, ds.y_train, x, y)) - base
    assert grown < 0.1 * float32_bytes, f"{grown / 1e6:.1f} MB more for a {float32_bytes / 1e6:.0f} MB float32 split"


def test_manifest_lists_the_artifacts_of_every_export(trained, tmp_path):
    # Issue 28.7: export RUN, then another --format, then another: the manifest lists them all.
    run = _copy_run(trained[0], tmp_path / "run")
    for fmt in ("keras", "savedmodel", "keras"):
        r = _cli(["export", str(run), "--format", fmt, "--no-check", "--json"])
        assert r.exit_code == 0, r.output
    manifest = json.loads((run / "export" / "manifest.json").read_text())
    listed = [(a["path"], a["runtime"]) for a in manifest["artifacts"]]
    assert sorted(listed) == [("model.keras", "keras"), ("savedmodel", "tensorflow")]  # re-exported: replaced, not doubled
    assert all(a["exported"] for a in manifest["artifacts"])


def test_webp_validation_files_do_not_crash_the_mediapipe_row(trained, tmp_path, monkeypatch):
    # Issue 24.11: MediaPipe's decoder refuses WebP; latency is measured on the files it decoded.
    from helpers import ArrayDataset

    run, ds = trained
    run = _copy_run(run, tmp_path / "run")
    files = []
    for i, img in enumerate(ds.x_val):
        files.append(tmp_path / "val" / (f"{i:02d}.webp" if i < 2 else f"{i:02d}.png"))
        files[-1].parent.mkdir(exist_ok=True)
        Image.fromarray(img).save(files[-1], lossless=True)
    split = ArrayDataset(ds.classes, ds.x_train, ds.y_train, ds.x_val, ds.y_val, paths_val=[str(f) for f in files])
    monkeypatch.setattr("resnet_tl.export.exporter.load_dataset", lambda cfg: split)
    r = _cli(["export", str(run), "--format", "tflite", "--json"])
    assert r.exit_code in (0, 1) and "Traceback" not in r.output, r.output
    (row,) = [a for a in json.loads(r.stdout)["artifacts"] if a["runtime"] == "mediapipe"]
    assert row["parity"]["unreadable"] == 2 and row["parity"]["latency_ms"] > 0
    assert row["note"].startswith("2 files MediaPipe cannot decode (.webp: 2), counted as disagreements")
    assert (run / "export" / "manifest.json").is_file()
