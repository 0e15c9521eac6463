"""`resnet-tl data ...`: inspect image folders before training."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, NoReturn

import typer

app = typer.Typer(help="Inspect image folders.", no_args_is_help=True)


def _fail(err: Exception) -> NoReturn:
    """One line on stderr, exit 2 (the shared CLI helper will replace this)."""
    print(f"error: {err}", file=sys.stderr)
    raise typer.Exit(getattr(err, "exit_code", 2))


@app.command("check")
def check(
    directory: Annotated[Path, typer.Argument(metavar="DIR", help="Image folder: class subfolders, or train/ val/ [test/].")],
    image_size: Annotated[int, typer.Option("--image-size", min=8, max=1024, help="Side (px) the images are decoded at; warms the cache for training at this size.")] = 64,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON document on stdout, nothing else.")] = False,
) -> None:
    """Scan DIR: classes, splits, every skipped file and why, duplicates, leakage. Exit 0 when training could proceed, 2 when not."""
    from rich.console import Console

    from resnet_tl.data.data_report import data_report, render_report
    from resnet_tl.data.scan import scan_folder
    from resnet_tl.errors import UserError
    from resnet_tl.recipe import DataConfig

    try:
        cfg = DataConfig(dir=str(directory), image_size=image_size)
        scan = scan_folder(directory, cfg, strict=False, progress=None if as_json else _progress())
        report = data_report(scan, cfg)
    except UserError as e:
        _fail(e)
    if as_json:
        sys.stdout.write(json.dumps(report, indent=2) + "\n")
    else:
        render_report(report, Console())
    raise typer.Exit(0 if report["ok"] else 2)


def _progress():
    """A stderr progress line for slow first scans; silent when stderr is not a terminal."""
    if not sys.stderr.isatty():
        return None
    from rich.console import Console

    console = Console(stderr=True)
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
