"""Calibrated confidence: temperature scaling, calibration error, abstention thresholds.

Pure numpy. A model's top-1 probability is not the chance it is right; a
fine-tuned ResNet is usually too sure. Temperature scaling (Guo et al. 2017,
"On Calibration of Modern Neural Networks") fits one number T > 0 on the
validation split and replaces probabilities p by softmax(log(p) / T): the
predicted class never changes, only how sure the model says it is.

    T = fit_temperature(val_probs, y_val)
    expected_calibration_error(val_probs, y_val)            # before
    Calibration(T).apply(probs)                             # calibrated probabilities
    threshold_for_precision(calibrated, y_val, 0.95)        # abstain below this

`train` writes RUN/calibration.json (`fit_calibration`); exports copy the
temperature into each sidecar JSON; `load_calibration` reads either.
Temperature scaling is not an out-of-distribution detector: an image of a
class the model never saw can still get a high calibrated confidence.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from resnet_tl.errors import UserError
from resnet_tl.formats import detect_format
from resnet_tl.formats.predictor import read_sidecar
from resnet_tl.runs import RunPaths, is_run

ECE_BINS = 15  # Guo et al.'s bin count
T_BOUNDS = (0.05, 20.0)  # the search range of T; sharpening beyond 20x or flattening beyond 20x is never sane
# min_precision values whose thresholds are precomputed, for model files that
# carry no validation confidences (their sidecar has only this table).
PRECISION_GRID = (0.5, 0.6, 0.7, 0.8, 0.85, 0.9, 0.95, 0.97, 0.98, 0.99, 0.995, 0.999)
_TINY = float(np.finfo(np.float32).tiny)  # the smallest probability a float32 model can output


# ------------------------------------------------------------------ basics
def log_probs(probs_or_logits, logits: bool | None = None) -> np.ndarray:
    """(N, C) float64 log-probabilities up to a per-row constant.

    logits: True for raw scores, False for probabilities, None to tell from
    the values (rows in [0, 1] summing to ~1 are probabilities; the tolerance
    admits int8 models' dequantised outputs). softmax(z / T) of logits z
    equals softmax(log(p) / T) of their probabilities, so both give one T.
    """
    x = np.asarray(probs_or_logits, dtype=np.float64)
    if x.ndim != 2:
        raise ValueError(f"probs: received shape {x.shape}; expected (N, C)")
    if logits is None:
        logits = not (x.size and x.min() >= 0 and x.max() <= 1 and np.all(np.abs(x.sum(axis=1) - 1) < 0.05))
    return x if logits else np.log(np.clip(x, _TINY, 1.0))


def softmax(z: np.ndarray) -> np.ndarray:
    z = np.asarray(z, dtype=np.float64)
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def temperature_scale(probs, temperature: float, logits: bool | None = None) -> np.ndarray:
    """softmax(log(p) / T) as float32 (N, C); T = 1 returns the probabilities unchanged."""
    return softmax(log_probs(probs, logits) / float(temperature)).astype(np.float32)


def nll(probs_or_logits, y, temperature: float = 1.0, logits: bool | None = None) -> float:
    """Mean negative log-likelihood (nats) of labels y (N,) under softmax(log(p) / T)."""
    return _nll(log_probs(probs_or_logits, logits), np.asarray(y, dtype=np.int64), 1.0 / float(temperature))


def _nll(z: np.ndarray, y: np.ndarray, beta: float) -> float:
    s = beta * z
    m = s.max(axis=1)
    lse = m + np.log(np.exp(s - m[:, None]).sum(axis=1))
    return float(np.mean(lse - s[np.arange(len(y)), y]))


# --------------------------------------------------------------- fitting
def fit_temperature(probs_or_logits, y, logits: bool | None = None, bounds: tuple[float, float] = T_BOUNDS) -> float:
    """The T in `bounds` that minimises the NLL of softmax(log(p) / T) on (probs, y).

    The NLL is convex in 1/T, hence unimodal in log T: a golden-section
    search over log T finds its minimum to ~1e-9 relative. With no wrong
    prediction at all the NLL keeps falling as T shrinks and the lower bound
    is returned (the model looks "too unsure" on a split it never gets
    wrong); an empty split returns 1.0.
    """
    z = log_probs(probs_or_logits, logits)
    y = np.asarray(y, dtype=np.int64)
    if len(y) != len(z):
        raise ValueError(f"y: received {len(y)} labels for {len(z)} rows")
    if not len(y):
        return 1.0
    f = lambda u: _nll(z, y, float(np.exp(-u)))  # noqa: E731 - u = log T
    a, b = np.log(bounds[0]), np.log(bounds[1])
    g = (np.sqrt(5.0) - 1) / 2
    c, d = b - g * (b - a), a + g * (b - a)
    fc, fd = f(c), f(d)
    for _ in range(80):  # shrinks the interval by 0.618**80 ~ 2e-17
        if fc <= fd:
            b, d, fd = d, c, fc
            c = b - g * (b - a)
            fc = f(c)
        else:
            a, c, fc = c, d, fd
            d = a + g * (b - a)
            fd = f(d)
    best = min(((fc, c), (fd, d), (f(np.log(bounds[0])), np.log(bounds[0])), (f(np.log(bounds[1])), np.log(bounds[1]))))
    return float(np.exp(best[1]))


# ----------------------------------------------------------- calibration error
def _top1(probs, y) -> tuple[np.ndarray, np.ndarray]:
    p = np.asarray(probs, dtype=np.float64)
    y = np.asarray(y, dtype=np.int64)
    if p.ndim != 2 or len(p) != len(y):
        raise ValueError(f"probs: received shape {p.shape} for {len(y)} labels; expected (N, C)")
    if not len(y):
        return np.zeros(0), np.zeros(0, bool)
    return p.max(axis=1), p.argmax(axis=1) == y


def reliability_curve(probs, y, bins: int = ECE_BINS) -> dict:
    """Top-1 confidence vs accuracy in `bins` equal-width bins of (0, 1].

    Bin m holds confidences in ((m-1)/bins, m/bins] (Guo et al.). Returns
    {"bins", "edges" (bins+1), "count", "confidence" (mean per bin, None if
    empty), "accuracy" (None if empty), "ece", "n"}.
    """
    conf, correct = _top1(probs, y)
    return _curve(conf, correct, bins)


def _curve(conf: np.ndarray, correct: np.ndarray, bins: int) -> dict:
    if bins < 1:
        raise ValueError(f"bins: received {bins}; allowed: 1 or more")
    edges = np.linspace(0.0, 1.0, bins + 1)
    idx = np.searchsorted(edges[1:-1], conf, side="left")  # right-inclusive bins
    count = np.bincount(idx, minlength=bins)
    sum_conf = np.bincount(idx, weights=conf, minlength=bins)
    sum_acc = np.bincount(idx, weights=correct.astype(np.float64), minlength=bins)
    n = len(conf)
    mean_conf = [float(s / c) if c else None for s, c in zip(sum_conf, count)]
    mean_acc = [float(s / c) if c else None for s, c in zip(sum_acc, count)]
    ece = float(np.abs(sum_acc - sum_conf).sum() / n) if n else None
    return {"bins": int(bins), "edges": [float(e) for e in edges], "count": [int(c) for c in count],
            "confidence": mean_conf, "accuracy": mean_acc, "ece": ece, "n": int(n)}


def expected_calibration_error(probs, y, bins: int = ECE_BINS) -> float | None:
    """ECE = sum over bins of (n_bin / N) * |accuracy_bin - mean confidence_bin|; None for no images."""
    return reliability_curve(probs, y, bins)["ece"]


# ---------------------------------------------------------------- thresholds
def threshold_for_precision(probs, y, min_precision: float) -> float | None:
    """The lowest confidence threshold t such that the top-1 predictions with
    confidence >= t are right at least `min_precision` of the time on (probs, y).

    Candidates are the confidences that occur, so the lowest t keeps the most
    images. None when no threshold reaches the precision (or there are no
    images). Pass calibrated probabilities to get a calibrated threshold.
    """
    conf, correct = _top1(probs, y)
    return _threshold(conf, correct, min_precision)


def _threshold(conf: np.ndarray, correct: np.ndarray, min_precision: float) -> float | None:
    if not 0.0 < min_precision <= 1.0:
        raise UserError(f"--min-precision: received {min_precision}; allowed: a number in (0, 1]")
    if not len(conf):
        return None
    order = np.argsort(-conf, kind="stable")
    c, ok = conf[order], np.asarray(correct, dtype=np.float64)[order]
    precision = np.cumsum(ok) / np.arange(1, len(c) + 1)
    # A threshold keeps every image tied with it: only the last of each run of equal confidences counts.
    last_of_tie = np.append(c[1:] != c[:-1], True)
    reaching = np.flatnonzero(last_of_tie & (precision >= min_precision - 1e-12))
    return float(c[reaching[-1]]) if len(reaching) else None


def _coverage(conf: np.ndarray, correct: np.ndarray, t: float | None) -> tuple[float, float | None]:
    """(share of images kept, precision of the kept ones) at threshold t."""
    if t is None or not len(conf):
        return 0.0, None
    kept = conf >= t
    return float(kept.mean()), float(np.asarray(correct)[kept].mean()) if kept.any() else None


# ---------------------------------------------------------------- the object
@dataclass
class Calibration:
    """A fitted temperature and what is known about the validation split.

    val_confidence / val_correct: the validation split's calibrated top-1
    confidences (N,) and whether each top-1 was right (N,); present for a
    run folder, absent for a model file, which has only `thresholds`
    (min_precision -> threshold, precomputed on PRECISION_GRID).
    """
    temperature: float
    val_confidence: np.ndarray | None = None
    val_correct: np.ndarray | None = None
    thresholds: dict[float, float | None] = field(default_factory=dict)
    source: str = ""

    def apply(self, probs) -> np.ndarray:
        """Calibrated probabilities (N, C) float32 of probabilities (N, C)."""
        return temperature_scale(probs, self.temperature, logits=False)

    def threshold_for(self, min_precision: float) -> float | None:
        """The calibrated-confidence threshold that reaches `min_precision` on the validation split.

        Exact with the stored validation confidences; otherwise the
        precomputed threshold of the smallest grid precision >= min_precision
        (which reaches at least min_precision). None when unreachable.
        """
        if self.val_confidence is not None and self.val_correct is not None:
            return _threshold(self.val_confidence, self.val_correct, min_precision)
        if not 0.0 < min_precision <= 1.0:
            raise UserError(f"--min-precision: received {min_precision}; allowed: a number in (0, 1]")
        stricter = sorted(p for p in self.thresholds if p >= min_precision - 1e-12)
        if not stricter:
            raise UserError(
                f"--min-precision {min_precision}: {self.source or 'the model'} stores thresholds only up to "
                f"{max(self.thresholds, default=None)}; allowed: at most that, or use the run folder"
            )
        return self.thresholds[stricter[0]]


def bound_warning(temperature: float, bounds: tuple[float, float] = T_BOUNDS) -> str | None:
    """Why a fitted T that sits on a bound of its search range is not to be trusted; None inside the range."""
    lo, hi = bounds
    if temperature <= lo * (1 + 1e-6):
        return (f"temperature {temperature:.6g} is at the lower bound {lo:g} of its search range: no validation image "
                "was wrong enough to stop it, so every calibrated confidence is sharpened; use a larger validation split")
    if temperature >= hi * (1 - 1e-6):
        return (f"temperature {temperature:.6g} is at the upper bound {hi:g} of its search range: the model is barely "
                "better than chance on the validation split, so calibrated confidences are near uniform and "
                "thresholds mean little; train longer or check the labels")
    return None


def fit_calibration(probs, y, bins: int = ECE_BINS) -> dict:
    """calibration.json of a run from its validation probabilities (N, C) and labels (N,).

    {"method", "temperature", "warning" (`bound_warning`, or None), "ece_before", "ece_after", "nll_before",
    "nll_after", "bins", "n", "thresholds": [{"min_precision", "threshold",
    "coverage", "precision"}] over PRECISION_GRID, "validation":
    {"confidence", "correct"}} where `validation` holds the calibrated top-1
    confidence (6 decimals) and 0/1 correctness of every validation image,
    so any --min-precision can be answered later without the data.
    """
    y = np.asarray(y, dtype=np.int64)
    t = fit_temperature(probs, y, logits=False)
    cal = temperature_scale(probs, t, logits=False)
    conf, correct = _top1(cal, y)
    conf = np.round(conf, 6)  # what is stored is what thresholds are computed from
    rows = []
    for p in PRECISION_GRID:
        thr = _threshold(conf, correct, p)
        cov, prec = _coverage(conf, correct, thr)
        rows.append({"min_precision": p, "threshold": thr, "coverage": round(cov, 6),
                     "precision": None if prec is None else round(prec, 6)})
    return {
        "method": "temperature_scaling",
        "temperature": round(t, 6),
        "warning": bound_warning(t),
        "ece_before": expected_calibration_error(probs, y, bins),
        "ece_after": expected_calibration_error(cal, y, bins),
        "nll_before": nll(probs, y, 1.0, logits=False) if len(y) else None,
        "nll_after": nll(probs, y, t, logits=False) if len(y) else None,
        "bins": bins,
        "n": int(len(y)),
        "thresholds": rows,
        "validation": {"confidence": [float(c) for c in conf], "correct": [int(c) for c in correct]},
    }


def calibration_report(probs, y, temperature: float | None, bins: int = ECE_BINS) -> dict:
    """ECE and reliability curves of a split before and after scaling by `temperature`.

    {"temperature", "warning" (`bound_warning`), "bins", "ece_before", "ece_after", "reliability_before",
    "reliability_after"}; the "after" entries are None without a temperature.
    """
    before = reliability_curve(probs, y, bins)
    after = reliability_curve(temperature_scale(probs, temperature, logits=False), y, bins) if temperature else None
    return {"temperature": temperature, "warning": bound_warning(temperature) if temperature else None,
            "bins": bins, "ece_before": before["ece"],
            "ece_after": after["ece"] if after else None,
            "reliability_before": before, "reliability_after": after}


def sidecar_fields(cal: Calibration | None) -> dict:
    """What an export's sidecar JSON says about calibration (the model's outputs stay uncalibrated)."""
    if cal is None:
        return {"temperature": None}
    return {
        "temperature": cal.temperature,
        "confidence_thresholds": [{"min_precision": p, "threshold": t} for p, t in sorted(cal.thresholds.items())],
        "calibration_note": (
            "The model outputs uncalibrated probabilities p. Calibrated probabilities are softmax(log(p) / temperature) "
            "(for logits z: softmax(z / temperature)). confidence_thresholds apply to the calibrated top-1 probability."
        ),
    }


# ------------------------------------------------------------------ loading
def load_calibration(path: str | Path) -> Calibration | None:
    """The calibration of a run folder (RUN/calibration.json) or of a model
    file (the "temperature" key of its sidecar JSON); None when it has none."""
    p = Path(path)
    if is_run(p):
        f = RunPaths(p).calibration
        if not f.is_file():
            return None
        try:
            doc = json.loads(f.read_text(encoding="utf-8"))
        except (OSError, ValueError) as e:
            raise UserError(f"'{f}': not readable JSON ({e})") from None
        return _from_doc(doc, str(f))

    doc = read_sidecar(p, detect_format(p)) or {}
    return _from_doc(doc, f"the sidecar of '{p}'") if doc.get("temperature") else None


def _from_doc(doc: dict, source: str) -> Calibration:
    t = doc.get("temperature")
    if not isinstance(t, (int, float)) or not t > 0:
        raise UserError(f"{source}: 'temperature' received {t!r}; allowed: a number > 0")
    rows = doc.get("thresholds") or doc.get("confidence_thresholds") or []
    thresholds = {float(r["min_precision"]): (None if r.get("threshold") is None else float(r["threshold"])) for r in rows}
    val = doc.get("validation") or {}
    conf, correct = val.get("confidence"), val.get("correct")
    if conf is not None and correct is not None and len(conf) == len(correct):
        return Calibration(float(t), np.asarray(conf, np.float64), np.asarray(correct, bool), thresholds, source)
    return Calibration(float(t), None, None, thresholds, source)


def calibration_of(cal_doc: dict) -> Calibration:
    """A `Calibration` from the dict `fit_calibration` returns (no file round trip)."""
    return _from_doc(cal_doc, "calibration")


# -------------------------------------------------------------- abstention
def abstain(probs, calibration: Calibration | None, threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """(top-1 confidence (N,), unsure (N,) bool) of probabilities (N, C): the
    calibrated confidence when there is a calibration, unsure below `threshold`."""
    p = calibration.apply(probs) if calibration is not None else np.asarray(probs, np.float64)
    conf = np.round(p.max(axis=1).astype(np.float64), 6) if len(p) else np.zeros(0)
    return conf, conf < threshold
