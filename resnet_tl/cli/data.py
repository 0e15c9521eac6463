"""`resnet-tl data ...`: inspect image folders before training."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from resnet_tl.cli.common import cli_errors, emit_json, err, out
from resnet_tl.models.backbones import BACKBONES

console = out  # the `audit` command has an --out option of its own

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



@app.command("audit")
@cli_errors
def audit(
    directory: Annotated[Path, typer.Argument(metavar="DIR", help="Image folder: class subfolders, or train/ val/ (test/ optional).")],
    run: Annotated[str | None, typer.Option("--run", help="A finished run: its backbone's features, its image size and split.")] = None,
    backbone: Annotated[str | None, typer.Option("--backbone", help=f"Or a backbone: {', '.join(BACKBONES)}.")] = None,
    weights: Annotated[str, typer.Option("--weights", help="With --backbone: imagenet, none, or a weights file (as model.weights).")] = "imagenet",
    image_size: Annotated[int, typer.Option("--image-size", min=8, max=1024, help="With --backbone: side (px) images are decoded at.")] = 64,
    out: Annotated[str | None, typer.Option("--out", help="Output folder (default: RUN/audit with --run, else ./audit).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON document on stdout, nothing else.")] = False,
) -> None:
    """Suspected wrong labels, near-duplicates (within and across splits) and outliers; writes audit.csv and audit/ folders of links."""
    from resnet_tl.evaluation.audit import audit_folder

    result = audit_folder(directory, run=run, backbone=backbone, weights=weights, image_size=image_size, out=out,
                          progress=None if as_json else _progress())
    if as_json:
        emit_json(result)
        return
    render_audit(result, console)


def render_audit(result: dict, console, limit: int = 15) -> None:
    """Print the first findings of `audit_folder`'s result and where the rest is."""
    c = result["counts"]
    console.print(f"[bold]{result['root']}[/]: {result['images']} images, features of {result['model']}", highlight=False)
    for kind, title, cols in (
        ("label_errors", "Suspected label errors", ("path", "given", "suggested", "given_probability")),
        ("duplicates", "Near-duplicates", ("path", "other_path", "split", "other_split", "cosine", "by")),
        ("outliers", "Outliers", ("path", "given", "similarity")),
    ):
        rows = result[kind]
        if not rows:
            continue
        t = Table(title=f"{title}: {len(rows)}" + (f" (first {limit})" if len(rows) > limit else ""), title_justify="left")
        for col in cols:
            t.add_column(col, overflow="fold")
        for r in rows[:limit]:
            t.add_row(*[str(r[col]) for col in cols])
        console.print(t)
    console.print(f"{c['label_errors']} suspected label errors, {c['duplicates']} near-duplicate pairs "
                  f"({c['duplicates_across_splits']} across splits), {c['outliers']} outliers; "
                  f"wrote {result['out_dir']}/audit.csv and links in {result['out_dir']}/", highlight=False)


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
