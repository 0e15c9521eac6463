"""PNG figures: training curves, confusion matrices, reliability diagrams (matplotlib).

Each function returns PNG bytes; callers write them atomically. Nothing is
imported at module level beyond numpy, so the CLI stays fast. Figures are
`matplotlib.figure.Figure` objects drawn straight to PNG, without pyplot:
the caller's matplotlib backend and pyplot's figure list stay untouched.
"""

from __future__ import annotations

import io

import numpy as np
from matplotlib.figure import Figure


def _figure(figsize):
    return Figure(figsize=figsize)


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    return buf.getvalue()


def plot_curves(history: list[dict]) -> bytes:
    """Loss and accuracy per epoch (train solid, val dashed), phase boundaries as labelled vertical lines.

    `history` rows are those of history.csv (phase, epoch, loss, accuracy, val_loss, val_accuracy).
    """
    fig = _figure((11, 4))
    axes = fig.subplots(1, 2)
    epochs = [int(r["epoch"]) for r in history]
    marker = "o" if len(history) <= 30 else None
    for ax, key, title in ((axes[0], "loss", "loss"), (axes[1], "accuracy", "accuracy")):
        seen = []
        for col, style, label in ((key, "-", "train"), (f"val_{key}", "--", "val")):
            values = [_num(r.get(col)) for r in history]
            seen += [v for v in values if v == v and v > 0]
            ax.plot(epochs, values, style, marker=marker, markersize=4, label=label)
        # One wild early epoch (fresh BatchNorm statistics) would flatten the
        # rest of a linear loss axis.
        if key == "loss" and seen and max(seen) / min(seen) > 100:
            ax.set_yscale("log")
        ax.set_title(title, pad=16)
        ax.xaxis.get_major_locator().set_params(integer=True)
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
        if key == "accuracy":
            ax.set_ylim(-0.02, 1.02)
        _mark_phases(ax, history)
        ax.legend(loc="best", fontsize=8)
    if epochs:
        for ax in axes:
            ax.set_xlim(min(epochs) - 0.6, max(epochs) + 0.6)
    fig.tight_layout()
    return _png(fig)


def _num(v) -> float:
    try:
        return float(v)
    except (TypeError, ValueError):
        return float("nan")


def _mark_phases(ax, history: list[dict]) -> None:
    """A vertical line before each phase but the first; every phase's name at the top of its span."""
    spans: list[list] = []  # [name, first epoch, last epoch]
    for r in history:
        if spans and spans[-1][0] == r["phase"]:
            spans[-1][2] = int(r["epoch"])
        else:
            spans.append([r["phase"], int(r["epoch"]), int(r["epoch"])])
    trans = ax.get_xaxis_transform()  # x in data units, y in axes fraction
    for i, (name, first, last) in enumerate(spans):
        if i:
            ax.axvline(first - 0.5, color="0.4", linestyle=":", linewidth=1)
        ax.text((first + last) / 2, 1.005, str(name), transform=trans, ha="center", va="bottom", fontsize=8, color="0.3", clip_on=False)


def plot_confusion(cm: np.ndarray, classes: list[str]) -> bytes:
    """Two panels: counts and row-normalised (each true class sums to 1)."""
    cm = np.asarray(cm, dtype=np.int64)
    n = len(classes)
    rows = cm.sum(axis=1, keepdims=True)
    norm = np.divide(cm, rows, out=np.zeros(cm.shape, np.float64), where=rows > 0)
    side = min(max(3.0, 0.45 * n + 2.0), 14.0)
    fig = _figure((2 * side + 1.5, side))
    axes = fig.subplots(1, 2)
    # "$" would start matplotlib mathtext in a class name.
    names = [(c if len(c) <= 18 else c[:17] + "\u2026").replace("$", r"\$") for c in classes]
    font = max(4, min(9, int(160 / max(n, 1))))
    for ax, values, title, fmt in ((axes[0], cm, "counts", "d"), (axes[1], norm, "row-normalised (recall on the diagonal)", ".2f")):
        im = ax.imshow(values, cmap="Blues", vmin=0, vmax=(values.max() if values.size and values.max() > 0 else 1))
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
        ax.set_xticks(range(n), names, rotation=90 if n > 6 else 45, ha="right" if 6 >= n > 0 else "center", fontsize=font)
        ax.set_yticks(range(n), names, fontsize=font)
        if n <= 30:
            hi = values.max() if values.size else 0
            for i in range(n):
                for j in range(n):
                    v = values[i, j]
                    ax.text(j, i, format(v, fmt), ha="center", va="center", fontsize=font,
                            color="white" if hi and v > hi / 2 else "black")
        fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    fig.tight_layout()
    return _png(fig)


def plot_reliability(before: dict, after: dict | None, temperature: float | None) -> bytes:
    """Reliability diagrams (Guo et al. 2017, fig. 1): per confidence bin, the
    accuracy (bars) against the diagonal a calibrated model would follow, the
    gap to mean confidence shaded; one panel before and one after temperature
    scaling. `before` / `after` are `calibration.reliability_curve` dicts."""
    panels = [(before, "model output")] + ([(after, f"temperature scaled (T = {temperature:.3g})")] if after else [])
    fig = _figure((4.6 * len(panels), 4.4))
    axes = fig.subplots(1, len(panels), squeeze=False)
    for ax, (curve, title) in zip(axes[0], panels):
        edges = np.asarray(curve["edges"])
        width = np.diff(edges)
        filled = [i for i, c in enumerate(curve["count"]) if c]
        acc = np.array([curve["accuracy"][i] for i in filled])
        conf = np.array([curve["confidence"][i] for i in filled])
        left = edges[filled]
        ax.bar(left, acc, width=width[filled], align="edge", color="#4c78a8", edgecolor="white", label="accuracy")
        # The gap between each bin's mean confidence and its accuracy: what ECE averages.
        ax.bar(left, conf - acc, bottom=acc, width=width[filled], align="edge", color="#e45756", alpha=0.35,
               edgecolor="#e45756", hatch="//", label="gap to confidence")
        ax.plot([0, 1], [0, 1], "--", color="0.3", linewidth=1, label="calibrated")
        ece = curve.get("ece")
        ax.set_title(f"{title}\nECE {ece:.4f} over {curve['n']} images" if ece is not None else title, fontsize=10)
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.set_aspect("equal")
        ax.set_xlabel("top-1 confidence")
        ax.set_ylabel("accuracy")
        ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    return _png(fig)


def plot_lr_find(lrs, losses, smoothed, suggestion: float, min_div_10: float, title: str) -> bytes:
    """lr-find's range test: loss against learning rate (log x), raw (faint) and smoothed,
    the suggestion and the minimum / 10 marked as vertical lines."""
    fig = _figure((6.4, 4.2))
    ax = fig.subplots()
    ax.plot(lrs, losses, color="#4c78a8", alpha=0.3, linewidth=1, label="loss")
    ax.plot(lrs, smoothed, color="#4c78a8", linewidth=2, label="smoothed")
    ax.axvline(suggestion, color="#e45756", linestyle="--", label=f"suggestion {suggestion:.3g} (steepest)")
    ax.axvline(min_div_10, color="0.4", linestyle=":", label=f"minimum / 10: {min_div_10:.3g}")
    ax.set_xscale("log")
    finite = [s for s in smoothed if np.isfinite(s)]
    if finite:  # a diverging tail would squash the useful part of the curve
        ax.set_ylim(min(finite) * 0.95 if min(finite) > 0 else min(finite), max(finite[0], min(finite)) * 1.5)
    ax.set_xlabel("learning rate")
    ax.set_ylabel("training loss")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return _png(fig)
