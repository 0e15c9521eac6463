"""The parity check: an artifact run in its own runtime against the Keras model, and the gates it must pass.

Two gates per artifact: its top-1 agreement with the Keras model must reach
``export.min_agreement_float`` (``min_agreement_int8`` for the int8-weight
TFLite models: dynamic-range and full int8), and its accuracy on the labels may
fall at most ``export.max_accuracy_drop`` below the Keras model's. Agreement
alone passes a model that always predicts one class (it agrees with itself
however badly it is quantised), so that case is also warned about.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from resnet_tl.formats.predictor import load_predictor
from resnet_tl.recipe import ExportConfig

# Formats whose weights are int8: they are held to the int8 threshold. A
# dynamic-range model flips near-tie predictions like a full-int8 one (seen:
# 1 of 120 on the sample run), which the float threshold would call a failure.
INT8_WEIGHTS = ("dynamic", "int8")


def parity(path: Path, x: np.ndarray, y: np.ndarray, reference: np.ndarray, latency_images: int) -> dict:
    """Run the artifact in its own runtime over (x, y) and compare with the Keras `reference` probabilities.

    x: uint8 (N, S, S, 3), a memmap is fine (read 64 images at a time); reference: float32 (N, C).
    """
    predictor = load_predictor(path, batch_size=64)
    probs = predictor(x)
    pred, ref = probs.argmax(1), reference.argmax(1)
    y = np.asarray(y)
    return {
        "agreement": float(np.mean(pred == ref)),
        "accuracy": float(np.mean(pred == y)),
        "keras_accuracy": float(np.mean(ref == y)),
        "max_abs_diff": float(np.max(np.abs(probs - reference))),
        "predicted_classes": int(len(np.unique(pred))),
        "latency_ms": latency_ms(predictor, x, latency_images),
    }


def latency_ms(predictor, x: np.ndarray, n: int) -> float:
    """Mean wall time (ms) of one single-image call, after one warm-up call."""
    single = np.asarray(x[:1])
    predictor(single)
    n = max(1, n)
    images = [np.asarray(x[i % len(x)][None]) for i in range(n)]
    t = time.perf_counter()
    for img in images:
        predictor(img)
    return round((time.perf_counter() - t) / n * 1000.0, 3)


def threshold(cfg: ExportConfig, quantize: str) -> float:
    """The least top-1 agreement an artifact of this quantisation must reach."""
    return cfg.min_agreement_int8 if quantize in INT8_WEIGHTS else cfg.min_agreement_float


def gates(parity_row: dict, cfg: ExportConfig, quantize: str) -> dict:
    """The gated figures of one artifact's parity: {name: {value, limit, passed}}."""
    agreement, drop = parity_row["agreement"], parity_row["keras_accuracy"] - parity_row["accuracy"]
    return {
        "agreement": {"value": agreement, "limit": threshold(cfg, quantize), "passed": agreement >= threshold(cfg, quantize)},
        # A small epsilon: accuracies are ratios of counts, and 0.95 - 0.94 is not exactly 0.01 in floats.
        "accuracy_drop": {"value": round(drop, 6), "limit": cfg.max_accuracy_drop, "passed": drop <= cfg.max_accuracy_drop + 1e-9},
    }


def describe_gate(name: str, g: dict) -> str:
    """One failed gate as a phrase of the error line."""
    if name == "agreement":
        return f"top-1 agreement {g['value']:.4f} < {g['limit']}"
    return f"accuracy drop {g['value']:.4f} > {g['limit']} (export.max_accuracy_drop)"


def degenerate_warnings(reference: np.ndarray, y: np.ndarray, labels: list[str]) -> list[str]:
    """Warnings when the Keras model predicts one class for every validation image (with several classes present)."""
    predicted = np.unique(reference.argmax(1)) if len(reference) else np.array([], int)
    if len(predicted) == 1 and len(np.unique(y)) > 1:
        return [f"the Keras model predicts '{labels[int(predicted[0])]}' for all {len(reference)} validation images: "
                "agreement with it says little; check the run before shipping these files"]
    return []


def overall(checks: set[str]) -> str:
    """failed if any artifact failed, skipped if none was checked, else passed."""
    return "failed" if "failed" in checks else ("skipped" if checks == {"skipped"} else "passed")
