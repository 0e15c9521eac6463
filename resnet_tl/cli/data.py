"""`resnet-tl data ...`: inspect image folders before training."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from resnet_tl.cli.common import cli_errors, emit_json, err, out

app = typer.Typer(help="Inspect image folders.", no_args_is_help=True)


@app.command("check")
@cli_errors
def check(
    directory: Annotated[Path, typer.Argument(metavar="DIR", help="Image folder: class subfolders, or train/ val/ [test/].")],
    image_size: Annotated[int, typer.Option("--image-size", min=8, max=1024, help="Side (px) the images are decoded at; warms the cache for training at this size.")] = 64,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON document on stdout, nothing else.")] = False,
) -> None:
    """Scan DIR: classes, splits, every skipped file and why, duplicates, leakage. Exit 0 when training could proceed, 2 when not."""
    from resnet_tl.data.data_report import data_report
    from resnet_tl.data.scan import scan_folder
    from resnet_tl.recipe import DataConfig

    cfg = DataConfig(dir=str(directory), image_size=image_size)
    scan = scan_folder(directory, cfg, strict=False, progress=None if as_json else _progress())
    report = data_report(scan, cfg)
    if as_json:
        emit_json(report)
    else:
        render_report(report, out)
    raise typer.Exit(0 if report["ok"] else 2)


def _progress():
    """A stderr progress line for slow first scans; silent when stderr is not a terminal."""
    if not sys.stderr.isatty():
        return None
    console = err
    state = {"status": None}

    def update(stage: str, done: int, total: int) -> None:
        if state["status"] is None:
            if done >= total:
                return
            state["status"] = console.status("")
            state["status"].start()
        state["status"].update(f"{stage} images {done}/{total}")
        if done >= total:
            state["status"].stop()
            state["status"] = None

    return update


def render_report(report: dict, console) -> None:
    """Print `report` (from data_report) with rich tables."""
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
