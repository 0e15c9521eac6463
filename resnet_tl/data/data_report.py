"""What a scan found, as plain data: data_report.json of a run, and `resnet-tl data check --json`."""

from __future__ import annotations

from collections import Counter

import numpy as np

from resnet_tl.data.batches import class_weights
from resnet_tl.data.scan import Scan
from resnet_tl.recipe import DataConfig


def data_report(scan: Scan, cfg: DataConfig) -> dict:
    """JSON-serialisable summary of a scan; `ok` is True when training could proceed."""
    splits = list(scan.items)
    by_split = {s: Counter(it.label for it in scan.items[s]) for s in splits}
    per_class = []
    for i, name in enumerate(scan.classes):
        counts = {s: by_split[s][i] for s in splits}
        per_class.append({"name": name, "index": i, **counts, "total": sum(counts.values())})
    y_train = np.array([it.label for it in scan.items.get("train", [])], dtype=np.int64)
    balanced = class_weights(y_train, scan.classes, "balanced") if len(y_train) else {}
    return {
        "root": str(scan.root),
        "layout": scan.layout,
        "image_size": scan.image_size,
        "ok": scan.ok,
        "classes": per_class,
        "splits": {s: len(scan.items[s]) for s in splits},
        "used": sum(len(v) for v in scan.items.values()),
        "excluded": len(scan.excluded),
        "skipped_count": len(scan.skipped),
        "skipped_by_reason": dict(sorted(Counter(s.reason for s in scan.skipped).items())),
        "skipped": [{"path": s.path, "reason": s.reason, "detail": s.detail} for s in scan.skipped],
        "ignored": dict(scan.ignored),
        "image_stats": scan.stats,
        "duplicates": scan.duplicates,
        "leakage": scan.leakage,
        "class_weights_balanced": {scan.classes[i]: round(w, 6) for i, w in (balanced or {}).items()},
        "warnings": list(scan.warnings),
        "problems": list(scan.problems),
        "cache": scan.counters.as_dict(),
    }


def data_summary(report: dict) -> dict:
    """The few facts `train` shows before training starts (stderr, and "data" in --json), from `data_report`."""
    conflicting = [d for d in report["duplicates"] if len(set(d["classes"])) > 1]
    return {
        "used": report["used"], "classes": len(report["classes"]), "splits": report["splits"],
        "skipped": report["skipped_count"], "skipped_by_reason": report["skipped_by_reason"],
        "duplicates": len(report["duplicates"]) - len(conflicting), "conflicting_labels": len(conflicting),
        "leakage": len(report["leakage"]), "warnings": report["warnings"],
    }
