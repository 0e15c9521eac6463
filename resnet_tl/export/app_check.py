"""The app runtime's view of a `.tflite`: MediaPipe Tasks' ImageClassifier, given image files.

    mediapipe_parity(tflite, files, labels, reference, y) -> parity dict (as export's other rows)
    app_row(art, ...) -> the "└ mediapipe" row export adds under each checked .tflite

This is what an Android, iOS or web app runs: the model's own metadata says how
to normalise the input and names the categories; MediaPipe decodes the file and
resizes it itself. So the check uses the image FILES, not our decoded arrays,
and reads top-1 as category NAMES from the model. Its agreement is with the
Keras model on our decoder's pixels, so any difference in decoding or resizing
shows up here rather than being hidden.

What MediaPipe's CPU preprocessing does (image_preprocessing_graph.cc and
image_to_tensor_converter_opencv.cc in google-ai-edge/mediapipe): the whole
image is stretched to the input size (no crop, no aspect-ratio padding, like
our decoder) with OpenCV's bilinear `warpPerspective`, which does NOT
antialias when shrinking (Pillow's BILINEAR does), and an RGBA image loses its
alpha channel (we composite on white). `mp.Image.create_from_file` applies
EXIF orientation, as we do. BENCHMARKS.md measures the effect.
"""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from resnet_tl.errors import UserError
from resnet_tl.export.parity import counts, gates, threshold
from resnet_tl.formats.tflite_metadata import app_input_problem
from resnet_tl.kerasenv import fd2_silenced
from PIL import Image


def _mediapipe():
    try:
        with fd2_silenced():  # absl's start-up banner
            import mediapipe as mp
            from mediapipe.tasks.python import vision
            from mediapipe.tasks.python.core.base_options import BaseOptions
    except ImportError:
        raise UserError("the app-runtime check needs MediaPipe: pip install mediapipe") from None
    return mp, vision, BaseOptions


class MediaPipeClassifier:
    """A `.tflite` with metadata in MediaPipe's ImageClassifier: file -> (category name, scores by label)."""
    def __init__(self, path: str | Path, labels: list[str]):
        self.mp, vision, BaseOptions = _mediapipe()
        self.labels = labels
        options = vision.ImageClassifierOptions(base_options=BaseOptions(model_asset_path=str(path)), max_results=-1)
        with fd2_silenced():  # XNNPACK delegate banner
            self._classifier = vision.ImageClassifier.create_from_options(options)

    def __call__(self, file: str | Path) -> tuple[str, np.ndarray]:
        """(top-1 category name, float32 (C,) scores placed by category name; NaN where a name is unknown)."""
        result = self._classifier.classify(self.mp.Image.create_from_file(str(file)))
        categories = result.classifications[0].categories
        scores = np.full(len(self.labels), np.nan, np.float32)
        index = {name: i for i, name in enumerate(self.labels)}
        for c in categories:
            if c.category_name in index:
                scores[index[c.category_name]] = c.score
        top = max(categories, key=lambda c: c.score)
        return top.category_name or "", scores

    def close(self) -> None:
        self._classifier.close()


def mediapipe_parity(path: str | Path, files: list[str | Path], labels: list[str], reference: np.ndarray,
                     y: np.ndarray, latency_images: int = 20, same_pixels: list[str | Path] | None = None) -> dict:
    """Top-1 agreement (by category name) of MediaPipe on `files` with the Keras `reference` probabilities (N, C).

    Keys as the other parity rows, plus ``names_from_model`` (every top-1 name
    is one of the run's labels), ``unreadable`` (files MediaPipe could not
    decode, counted as disagreements) and, given `same_pixels` (our decoder's
    pixels as lossless files of the input size, one per file),
    ``agreement_same_pixels``: the runtime alone, without MediaPipe's own
    decoding and resizing.
    """
    clf = MediaPipeClassifier(path, labels)
    try:
        names, probs, unreadable = _classify_all(clf, files, len(labels))
        same = _classify_all(clf, same_pixels, len(labels))[0] if same_pixels is not None else None
        decoded = [f for f, name in zip(files, names) if name != ""]
        ms = _latency_ms(clf, decoded, latency_images) if decoded else None
    finally:
        clf.close()
    ref_names = np.asarray(labels)[reference.argmax(1)]
    truth = np.asarray(labels)[np.asarray(y)]
    row = {
        **counts(names, ref_names, truth),
        "max_abs_diff": float(np.nanmax(np.abs(probs - reference))) if np.isfinite(probs).any() else float("nan"),
        "predicted_classes": int(len(set(names) - {""})),
        "latency_ms": ms,
        "names_from_model": bool(all(n in labels for n in names if n) and any(names)),
        "unreadable": len(unreadable),
        "skipped": skipped_summary(unreadable),
    }
    if same is not None:
        row["agreement_same_pixels"] = float(np.mean(same == ref_names))
    return row


def skipped_summary(unreadable: list[Path]) -> str:
    """'' or e.g. '3 files MediaPipe cannot decode (.webp: 3), counted as disagreements; latency from the rest'."""
    if not unreadable:
        return ""
    by_suffix: dict[str, int] = {}
    for f in unreadable:
        key = Path(f).suffix.lower() or "(no suffix)"
        by_suffix[key] = by_suffix.get(key, 0) + 1
    kinds = ", ".join(f"{k}: {v}" for k, v in sorted(by_suffix.items()))
    return (f"{len(unreadable)} file{'s' if len(unreadable) != 1 else ''} MediaPipe cannot decode ({kinds}), "
            "counted as disagreements; latency from the files it decoded")


def _classify_all(clf: MediaPipeClassifier, files, n_classes: int) -> tuple[np.ndarray, np.ndarray, list]:
    """(top-1 names, "" where MediaPipe refused the file; scores (N, C); the refused files)."""
    names, probs, unreadable = [], np.full((len(files), n_classes), np.nan, np.float32), []
    for i, f in enumerate(files):
        try:
            name, probs[i] = clf(f)
        except RuntimeError:  # MediaPipe's decoder refused the file (WebP, for one)
            name = ""
            unreadable.append(f)
        names.append(name)
    return np.asarray(names, dtype=object), probs, unreadable


def _latency_ms(clf: MediaPipeClassifier, files: list, n: int) -> float:
    """Mean wall time of one classify(file) call (decode + resize + inference), after one warm-up call.
    files: ones MediaPipe decoded (a refused file raises, and its time says nothing)."""
    clf(files[0])
    n = max(1, n)
    t = time.perf_counter()
    for i in range(n):
        clf(files[i % len(files)])
    return round((time.perf_counter() - t) / n * 1000.0, 3)


def files_for(dataset, scratch: Path) -> tuple[list[Path], list[Path] | None, str]:
    """(the validation split as files an app would open, our decoded pixels as PNG files or None, where they came from).

    The dataset's own files when it has them, plus its decoded pixels written
    as lossless PNGs of the input size (to tell runtime from resize); else
    (arrays only, e.g. tests) just those PNGs.
    """
    paths = [Path(p) for p in (getattr(dataset, "paths_val", None) or [])]
    pixels = pixel_files(np.asarray(dataset.x_val), scratch)
    if paths and len(paths) == len(dataset.y_val) and all(p.is_file() for p in paths):
        return paths, pixels, "files"
    return pixels, None, "arrays written as PNG"


def pixel_files(images: np.ndarray, folder: Path) -> list[Path]:
    """uint8 images (N, S, S, 3) written losslessly as folder/00000.png ...; MediaPipe reads them unresized."""
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for i, img in enumerate(images):
        out.append(folder / f"{i:05d}.png")
        if not out[-1].exists():
            Image.fromarray(img).save(out[-1])
    return out


def app_row(art, tflite: Path, labels: list[str], cfg, dataset, reference: np.ndarray, scratch: Path):
    """MediaPipe's parity row for a checked .tflite artifact `art`: its files, its decoder and resize,
    its category names; a copy of `art` with runtime "mediapipe", its own parity, gates and check."""
    row = replace(art, runtime="mediapipe", check="skipped", parity=None, gates={}, note="", repair=None)
    problem = app_input_problem(art.io)
    if problem:
        row.check, row.note = "failed", problem
        return row
    files, same_pixels, source = files_for(dataset, scratch / "val_png")
    p = mediapipe_parity(tflite, files, labels, reference, dataset.y_val, cfg.latency_images, same_pixels)
    p["images"] = source
    row.parity, need = p, threshold(cfg, art.quantize)
    row.gates = gates(p, cfg, art.quantize)
    row.check = "passed" if all(g["passed"] for g in row.gates.values()) and p["names_from_model"] else "failed"
    notes = [p["skipped"]] if p["skipped"] else []
    if not p["names_from_model"]:
        notes.append("MediaPipe returned no category names from the model's metadata")
    elif p["agreement"] < need and p.get("agreement_same_pixels", 0.0) >= need:
        notes.append(f"top-1 agreement {p['agreement']:.4f} < {need} on the image files, {p['agreement_same_pixels']:.4f} "
                    "on our decoder's pixels: MediaPipe's own resize (bilinear, no antialiasing) or dropped alpha "
                    "changes predictions; data.resize: bilinear trains on pixels like these (README 'In an app')")
    row.note = "; ".join(notes)
    return row
