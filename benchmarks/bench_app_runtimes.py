"""Exported files in the runtimes apps and servers use: size, latency, agreement with Keras.

    PYTHONPATH=. python benchmarks/bench_app_runtimes.py [--epochs N] [--json out.json]

Trains the quickstart recipe on data/sample (64 px), exports every TFLite
variant, OpenVINO IR and the SavedModel with the parity check, then measures
what the export check cannot see on 64 px files:

- MediaPipe's ImageClassifier on the validation images saved as an app would
  get them, larger than the model input (so MediaPipe resizes them itself):
  4x (256 px PNG), a 640x480 JPEG (stretched, like a camera frame), an
  EXIF-rotated JPEG (orientation 6) and an RGBA PNG with a transparent border.
  Agreement is with the Keras model on our decoder's pixels of the same file.
- The SavedModel's ``serving_bytes`` on the same files against
  ``resnet-tl predict`` (Pillow decoding).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from resnet_tl.export.app_check import MediaPipeClassifier  # noqa: E402
from resnet_tl.data.decode import decode_file  # noqa: E402
from resnet_tl.export.exporter import export_run  # noqa: E402
from resnet_tl.recipe import load_recipe  # noqa: E402
from resnet_tl.formats.predictor import load_predictor  # noqa: E402


def camera_copies(files: list[Path], out: Path) -> dict[str, list[Path]]:
    """Each validation file re-saved the ways apps and users produce images."""
    from PIL import Image

    kinds = {k: [] for k in ("as_is_64px", "png_4x", "jpeg_640x480", "jpeg_exif6", "rgba_png")}
    for k in kinds:
        (out / k).mkdir(parents=True, exist_ok=True)
    for f in files:
        img = Image.open(f).convert("RGB")
        stem = f.parent.name + "_" + f.stem
        kinds["as_is_64px"].append(f)
        big = img.resize((256, 256), Image.Resampling.BICUBIC)
        big.save(out / "png_4x" / f"{stem}.png")
        kinds["png_4x"].append(out / "png_4x" / f"{stem}.png")
        img.resize((640, 480), Image.Resampling.BICUBIC).save(out / "jpeg_640x480" / f"{stem}.jpg", quality=90)
        kinds["jpeg_640x480"].append(out / "jpeg_640x480" / f"{stem}.jpg")
        exif = Image.Exif()
        exif[0x0112] = 6  # stored rotated; viewers (and our decoder) turn it 90 degrees clockwise
        big.transpose(Image.Transpose.ROTATE_90).save(out / "jpeg_exif6" / f"{stem}.jpg", quality=90, exif=exif.tobytes())
        kinds["jpeg_exif6"].append(out / "jpeg_exif6" / f"{stem}.jpg")
        rgba = np.dstack([np.asarray(big), np.full((256, 256), 255, np.uint8)])
        rgba[:32, :, 3] = 0  # transparent top band: white for us, whatever colour hides under it for others
        rgba[:32, :, :3] = 0
        Image.fromarray(rgba, "RGBA").save(out / "rgba_png" / f"{stem}.png")
        kinds["rgba_png"].append(out / "rgba_png" / f"{stem}.png")
    return kinds


def serving_bytes_top1(savedmodel: Path, files: list[Path]) -> np.ndarray:
    import tensorflow as tf

    fn = tf.saved_model.load(str(savedmodel)).signatures["serving_bytes"]
    out = [fn(image_bytes=tf.constant([f.read_bytes() for f in files[i:i + 32]]))["probabilities"].numpy()
           for i in range(0, len(files), 32)]
    return np.concatenate(out).argmax(1)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--epochs", type=int, default=None)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    from resnet_tl.data import load_dataset
    from resnet_tl.training.train import train

    work = Path(tempfile.mkdtemp(prefix="bench-apps-"))
    overrides = [f"schedule.0.epochs={args.epochs}"] if args.epochs else []
    recipe = load_recipe("quickstart", overrides)
    run = train(recipe, out=work, name="quickstart").run_dir
    from resnet_tl.errors import ExportCheckFailed

    try:
        result = export_run(run, ["tflite", "openvino", "savedmodel"], ["none", "float16", "dynamic", "int8"])
    except ExportCheckFailed as e:  # the report shows which row failed
        result = e.result
    rows = [{"artifact": a.path, "runtime": a.runtime, "check": a.check, "MB": round(a.size_bytes / 1e6, 2),
             "latency_ms": a.parity["latency_ms"], "agreement": a.parity["agreement"],
             "agreement_same_pixels": a.parity.get("agreement_same_pixels")} for a in result.artifacts]

    ds = load_dataset(recipe.data)
    kinds = camera_copies([Path(p) for p in ds.paths_val], work / "camera")
    keras_model = load_predictor(run / "model.keras")
    labels = ds.classes
    effects = []
    for kind, files in kinds.items():
        ref = keras_model(np.stack([decode_file(f, 64).pixels for f in files])).argmax(1)
        row = {"images": kind, "n": len(files)}
        for variant in ("float32", "int8"):
            clf = MediaPipeClassifier(run / "export" / f"model_{variant}.tflite", labels)
            try:
                names = [clf(f)[0] for f in files]
            finally:
                clf.close()
            row[f"mediapipe_{variant}"] = float(np.mean(np.asarray(names) == np.asarray(labels)[ref]))
        row["serving_bytes_vs_predict"] = float(np.mean(serving_bytes_top1(run / "export" / "savedmodel", files) == ref))
        effects.append(row)

    report = {"keras_accuracy": result.artifacts[0].parity["keras_accuracy"], "n_val": len(ds.y_val),
              "artifacts": rows, "decode_and_resize": effects}
    print(json.dumps(report, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
