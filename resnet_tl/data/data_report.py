"""What a scan found, as plain data (for --json) and as rich tables."""

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


def render_report(report: dict, console) -> None:
    """Print `report` (from data_report) with rich tables."""
    from rich.table import Table

    splits = list(report["splits"])
    console.print(f"[bold]{report['root']}[/] ({report['layout'].replace('_', ' ')}, {report['image_size']} px)")
    t = Table(title="Classes", title_justify="left")
    t.add_column("#", justify="right")
    t.add_column("class")
    for s in splits:
        t.add_column(s, justify="right")
    t.add_column("balanced weight", justify="right")
    for c in report["classes"]:
        w = report["class_weights_balanced"].get(c["name"])
        t.add_row(str(c["index"]), c["name"], *[str(c[s]) for s in splits], f"{w:.3f}" if w is not None else "-")
    t.add_row("", "[bold]total[/]", *[f"[bold]{report['splits'][s]}[/]" for s in splits], "")
    console.print(t)

    st = report["image_stats"]
    if st.get("count"):
        console.print(
            f"Image sizes (px): width {st['width']['min']}..{st['width']['max']} (median {st['width']['median']:g}), "
            f"height {st['height']['min']}..{st['height']['max']} (median {st['height']['median']:g}); "
            f"formats {_counts(st['formats'])}; modes {_counts(st['modes'])}"
        )
    ign = {k: v for k, v in report["ignored"].items() if v}
    if ign:
        console.print("Ignored files: " + _counts(ign))
    if report["skipped"]:
        t = Table(title=f"Skipped files ({report['skipped_count']}: {_counts(report['skipped_by_reason'])})", title_justify="left")
        t.add_column("file", overflow="fold")
        t.add_column("reason")
        t.add_column("detail", overflow="fold")
        for s in report["skipped"]:
            t.add_row(s["path"], s["reason"], s["detail"])
        console.print(t)
    for kind, rows in (("Leakage (same image in several splits)", report["leakage"]),
                       ("Duplicates within a split", report["duplicates"])):
        if rows:
            t = Table(title=f"{kind}: {len(rows)}", title_justify="left")
            t.add_column("sha1")
            t.add_column("where")
            t.add_column("files", overflow="fold")
            for r in rows:
                where = ", ".join(r["splits"]) if "splits" in r else f"{r['split']}: {', '.join(sorted(set(r['classes'])))}"
                t.add_row(r["hash"][:12], where, "\n".join(r["paths"]))
            console.print(t)
    for w in report["warnings"]:
        console.print(f"[yellow]warning:[/] {w}", highlight=False)
    for p in report["problems"]:
        console.print(f"[red]problem:[/] {p}", highlight=False)
    verdict = "[green]ok: training can proceed[/]" if report["ok"] else "[red]not ok: training cannot proceed[/]"
    console.print(f"{report['used']} images used, {report['skipped_count']} skipped. {verdict}")


def _counts(d: dict) -> str:
    return ", ".join(f"{k} {v}" for k, v in d.items())
