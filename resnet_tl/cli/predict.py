"""`resnet-tl predict`: top-k labels for image files, folders or globs."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from resnet_tl.cli.common import JsonOpt, cli_errors, emit_json, err, out


@cli_errors
def predict(
    model: Annotated[str, typer.Argument(metavar="RUN_OR_MODEL", help="A run folder, a .keras / .tflite / .onnx / OpenVINO .xml file or a SavedModel folder.")],
    paths: Annotated[list[str], typer.Argument(metavar="PATH...", help="Image files, folders (recursive) or globs (quote them).")],
    top_k: Annotated[int, typer.Option("--top-k", min=1, help="Labels per image.")] = 5,
    fmt: Annotated[Optional[str], typer.Option("--format", help="table | csv | json (default: table; with --output, from its suffix).")] = None,
    output: Annotated[Optional[str], typer.Option("--output", help="Write the csv/json to this file (atomically) instead of stdout.")] = None,
    batch_size: Annotated[int, typer.Option("--batch-size", min=1, help="Images per model call.")] = 32,
    labels: Annotated[Optional[str], typer.Option("--labels", help="Class names, one per line (default: the run's labels.txt or the model's sidecar).")] = None,
    json_: JsonOpt = False,
) -> None:
    """Predict classes of images; unreadable files are listed with the reason."""
    from resnet_tl.predict import output_format, predict as run_predict, to_csv

    fmt = "json" if json_ else fmt
    result = run_predict(model, paths, top_k=top_k, batch_size=batch_size, labels=labels, output=output, fmt=fmt)
    if output is not None:
        err.print(f"wrote {result['predicted']} predictions ({result['failed']} failed) to {output}", highlight=False)
    elif output_format(fmt, None) == "json":
        emit_json(result)
    elif fmt == "csv":
        typer.echo(to_csv(result), nl=False)
    else:
        _table(result)


def _table(result: dict) -> None:
    from rich.table import Table

    t = Table("path", *[f"top {i + 1}" for i in range(result["top_k"])], title=f"{result['model']} ({result['format']})", title_justify="left")
    for r in result["rows"]:
        cells = [f"{x['label']} {x['probability']:.3f}" for x in r["top"]] or [f"[red]{r['error']}[/] {r['detail']}"]
        t.add_row(r["path"], *cells)
    out.print(t)
