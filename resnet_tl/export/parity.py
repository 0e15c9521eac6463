"""The parity check: an artifact run in its own runtime against the Keras model, and the gates it must pass.

Two gates per artifact: its top-1 agreement with the Keras model must reach
``export.min_agreement_float`` (``min_agreement_int8`` for the int8-weight
TFLite models: dynamic-range and full int8), and its accuracy on the labels may
fall at most ``export.max_accuracy_drop`` below the Keras model's. Both are
judged with the sample's uncertainty (`resnet_tl.export.gate_stats`): a gate
fails only when a one-sided 95% bound shows the artifact worse than the limit,
and records n, the interval and how many images would prove the limit.
Agreement alone passes a model that always predicts one class (it agrees with
itself however badly it is quantised), so that case is also warned about.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from resnet_tl.export.gate_stats import CONFIDENCE, agreement_bounds, drop_bounds, images_needed
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
        **counts(pred, ref, y),
        "max_abs_diff": float(np.max(np.abs(probs - reference))),
        "predicted_classes": int(len(np.unique(pred))),
        "latency_ms": latency_ms(predictor, x, latency_images),
    }


def counts(pred: np.ndarray, ref: np.ndarray, y: np.ndarray) -> dict:
    """Agreement and accuracies of artifact answers `pred` against Keras's `ref` and the labels `y`
    (class indices or names, (N,) each), with the counts the gates' bounds need: n images, ``agreed``,
    ``newly_wrong`` (Keras right, artifact wrong) and ``newly_right`` (the reverse)."""
    pred, ref, y = np.asarray(pred), np.asarray(ref), np.asarray(y)
    n = len(y)
    right, keras_right = pred == y, ref == y
    return {
        "n": int(n),
        "agreement": float(np.mean(pred == ref)) if n else 1.0,
        "accuracy": float(np.mean(right)) if n else 0.0,
        "keras_accuracy": float(np.mean(keras_right)) if n else 0.0,
        "agreed": int(np.sum(pred == ref)),
        "newly_wrong": int(np.sum(keras_right & ~right)),
        "newly_right": int(np.sum(right & ~keras_right)),
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


def threshold_key(quantize: str) -> str:
    """The recipe key that holds `threshold`'s value for this quantisation."""
    return "export.min_agreement_int8" if quantize in INT8_WEIGHTS else "export.min_agreement_float"


def gates(parity_row: dict, cfg: ExportConfig, quantize: str) -> dict:
    """The gated figures of one artifact's parity: {name: {value, limit, passed, n, interval, confidence, images_needed}}.

    interval: [lower, upper], each a one-sided `CONFIDENCE` bound. Agreement fails when even its upper
    bound is under the limit; the accuracy drop when even its lower bound is over the limit.
    images_needed: how many images a flawless sample needs to prove the limit rather than not refute it.
    """
    n = parity_row["n"]
    need = threshold(cfg, quantize)
    a_lo, a_hi = agreement_bounds(parity_row["agreed"], n)
    drop = parity_row["keras_accuracy"] - parity_row["accuracy"]
    d_lo, d_hi = drop_bounds(parity_row["newly_wrong"], parity_row["newly_right"], n)
    limit = cfg.max_accuracy_drop
    return {
        "agreement": {"value": round(parity_row["agreement"], 6), "limit": need, "key": threshold_key(quantize),
                      "passed": a_hi >= need, "n": n,
                      "interval": [round(a_lo, 6), round(a_hi, 6)], "confidence": CONFIDENCE,
                      "images_needed": images_needed(1 - need)},
        # A small epsilon: bounds of counts, and 0.95 - 0.94 is not exactly 0.01 in floats.
        "accuracy_drop": {"value": round(drop, 6), "limit": limit, "key": "export.max_accuracy_drop",
                          "passed": d_lo <= limit + 1e-9, "n": n,
                          "interval": [round(d_lo, 6), round(d_hi, 6)], "confidence": CONFIDENCE,
                          "images_needed": images_needed(limit)},
    }


def describe_gate(name: str, g: dict) -> str:
    """One failed gate as a phrase of the error line: by how much, with what confidence, on how many images."""
    lo, hi = g["interval"]
    conf = f"{g['confidence']:.0%}"
    if name == "agreement":
        return (f"top-1 agreement {g['value']:.4f} < {g['limit']} ({g['key']}): with {conf} confidence "
                f"at most {hi:.4f}, {g['limit'] - hi:.4f} under the limit (n={g['n']})")
    return (f"accuracy drop {g['value']:.4f} > {g['limit']} ({g['key']}): with {conf} confidence "
            f"at least {lo:.4f}, {lo - g['limit']:.4f} over the limit (n={g['n']})")


def how_to_go_on(run_dir) -> str:
    """What a user whose export failed a gate can do next (issue 28.9)."""
    return (f"To accept a larger difference for this export: resnet-tl export {run_dir} --set export.max_accuracy_drop=VALUE "
            f"(or export.min_agreement_float / export.min_agreement_int8; the stored recipe is {run_dir}/recipe.yaml); "
            "to write the files without checking: --no-check")


def resolution(g: dict) -> str:
    """'n=96 (0.995 needs 598)' when the sample is too small to prove the limit, else 'n=1200'."""
    if g["n"] >= g["images_needed"]:
        return f"n={g['n']}"
    return f"n={g['n']} ({g['limit']} needs {g['images_needed']})"


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
