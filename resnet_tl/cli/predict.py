"""`resnet-tl predict`: top-k labels for image files, folders or globs; stream to csv/jsonl; sort into class folders."""

from __future__ import annotations

import os
from typing import Annotated, Optional

import typer

from resnet_tl.cli.common import JsonOpt, cli_errors, emit_json, err, out, stdout
from resnet_tl.formats import file_kinds


@cli_errors
def predict(
    model: Annotated[str, typer.Argument(metavar="RUN_OR_MODEL", help=f"A run folder, or a model file ({file_kinds()}).")],
    paths: Annotated[list[str], typer.Argument(metavar="PATH...", help="Image files, folders (recursive) or globs (quote them).")],
    top_k: Annotated[int, typer.Option("--top-k", min=1, help="Labels per image.")] = 5,
    fmt: Annotated[Optional[str], typer.Option("--format", help="table | csv | jsonl | json (default: table; with --output, from its suffix). csv and jsonl stream row by row.")] = None,
    output: Annotated[Optional[str], typer.Option("--output", help="Write the predictions to this file instead of stdout.")] = None,
    resume: Annotated[bool, typer.Option("--resume", help="Continue an interrupted csv/jsonl --output: predict only the files it lacks.")] = False,
    sort_into: Annotated[Optional[str], typer.Option("--sort-into", metavar="DIR", help="Put each image into DIR/<class>/ (DIR/_unsure/, DIR/_unreadable/); writes DIR/predictions.csv.")] = None,
    mode: Annotated[str, typer.Option("--mode", help="With --sort-into: copy | link | move (sources untouched unless move).")] = "copy",
    threshold: Annotated[Optional[str], typer.Option("--threshold", help="Top-1 probability below which an image is unsure (0 < P <= 1), or auto (with --min-precision).")] = None,
    min_precision: Annotated[Optional[float], typer.Option("--min-precision", help="With --threshold auto: the precision the run's calibrated threshold reaches on validation.")] = None,
    tta: Annotated[bool, typer.Option("--tta", help="Average over crops, and a mirror if the run trained with a horizontal flip (4-5 model calls per image); not with --threshold auto.")] = False,
    batch_size: Annotated[int, typer.Option("--batch-size", min=1, help="Images per model call.")] = 32,
    max_pixels: Annotated[Optional[int], typer.Option("--max-pixels", help="Refuse images with more pixels (width x height, from the header, never decoded) as too_large (default: the run's data.max_pixels, else 89478485).")] = None,
    labels: Annotated[Optional[str], typer.Option("--labels", help="Class names, one per line (default: the run's labels.txt or the model's sidecar).")] = None,
    explain: Annotated[Optional[str], typer.Option("--explain", metavar="OUT", help="Grad-CAM: write OUT/<n>_<name>.png (heatmap over the image, class and confidence) and .npy (the heatmap) per image. Run or .keras model.")] = None,
    json_: JsonOpt = False,
) -> None:
    """Predict classes of images; unreadable files are listed with the reason."""
    if explain is not None:
        return _explain(model, paths, explain, batch_size, labels, json_, sort_into=sort_into, output=output, tta=tta)
    from resnet_tl.cli.progress import FileProgress
    from resnet_tl.errors import UserError
    from resnet_tl.inference import outputs
    from resnet_tl.inference import predict as lib
    from resnet_tl.inference.sort import classify_folder

    fmt = "json" if json_ and fmt is None and sort_into is None and output is None else fmt
    out_fmt = outputs.output_format(fmt, output)
    if resume and (output is None or out_fmt not in outputs.STREAM_FORMATS or sort_into is not None):
        raise UserError(f"--resume: received with --output {output} --format {out_fmt}; allowed: with --output FILE as csv or jsonl (--sort-into resumes by itself)")
    common = dict(top_k=top_k, batch_size=batch_size, labels=labels, tta=tta, threshold=threshold, min_precision=min_precision,
                  max_pixels=max_pixels)
    streaming = sort_into is not None or out_fmt in outputs.STREAM_FORMATS
    with FileProgress(err, enabled=streaming and err.is_terminal) as bar:
        if sort_into is not None:
            result = classify_folder(model, paths, sort_into, mode=mode, progress=bar, **common)
        elif streaming:
            stream = lib.predict_stream(model, paths, progress=bar, output=output, fmt=out_fmt, **common)
            result = outputs.write_stream(stream, out_fmt, output, resume=resume, stdout=stdout())
        else:
            result = lib.predict(model, paths, output=output, fmt=fmt, **common)
    note = _threshold_note(result.get("threshold"), threshold, min_precision)
    if json_ and (sort_into is not None or output is not None):
        emit_json(result)
    elif sort_into is not None:
        err.print(_sort_summary(result) + (f"; {note}" if note else ""), highlight=False, markup=False, soft_wrap=True)
    elif output is not None:
        err.print(f"wrote {result['predicted']} predictions ({result['failed']} failed) to {output}" + (f"; {note}" if note else ""),
                  highlight=False, markup=False, soft_wrap=True)
    elif out_fmt == "json":
        emit_json(result)
    elif out_fmt == "table":
        _table(result, note)
    elif note:  # csv / jsonl rows went to stdout
        err.print(note, highlight=False, markup=False, soft_wrap=True)
    if sort_into is not None and result["failed"]:
        raise typer.Exit(1)  # not a user error: some files could not be sorted, and were left where they were


def _explain(model, paths, out_dir, batch_size, labels, json_, **others) -> None:
    from resnet_tl.errors import UserError
    from resnet_tl.inference.explain import explain_files

    used = [f"--{k.replace('_', '-')}" for k, v in others.items() if v]
    if used:
        raise UserError(f"--explain: received with {', '.join(used)}; allowed: --explain with --batch-size, --labels, --json")
    result = explain_files(model, paths, out_dir, batch_size=batch_size, labels=labels)
    if json_:
        emit_json(result)
    else:
        for r in result["rows"]:
            line = f"{r['label']} {r['probability']:.3f}  {_shown(r['overlay'])}" if "error" not in r else f"{r['error']} {r['detail']}"
            out.print(f"{_shown(r['path'])}: {line}", highlight=False, markup=False, soft_wrap=True)
        err.print(f"explained {result['explained']} images ({result['failed']} failed) into {_shown(result['out_dir'])}", highlight=False, markup=False)
    if result["failed"]:
        raise typer.Exit(1)


def _threshold_note(cut: float | None, threshold: str | None, min_precision: float | None) -> str | None:
    """Which threshold made rows "unsure", and where it came from (auto: the run's calibration)."""
    if cut is None:
        return None
    if str(threshold).strip().lower() == "auto":
        return (f"unsure: calibrated top-1 confidence below {cut:.4g} (--threshold auto: the run's threshold "
                f"for precision {min_precision:g} on its validation split)")
    return f"unsure: top-1 probability below {cut:.4g} (--threshold)"


def _sort_summary(result: dict) -> str:
    """One line: what went where, what failed (the first reason), what was done before."""
    placed = ", ".join(f"{k} {v}" for k, v in result["placed"].items()) or "nothing new"
    line = f"{result['mode']} into {_shown(result['dest'])}: {placed}"
    if result["failed"]:
        first = result["failures"][0]
        line += (f"; {result['failed']} failed, left where they were (first: {_shown(first['path'])}: {first['reason']};"
                 " all in predictions.csv)")
    if result["failed_before"]:
        line += f"; {result['failed_before']} failed before and unchanged, not tried again"
    return line + f"; {result['already_done']} already done; wrote {_shown(result['predictions'])}"


def _shown(path: str) -> str:
    """A path as text a terminal can show: bytes that are not UTF-8 as \\xNN."""
    return os.fsencode(path).decode("utf-8", "backslashreplace")


def _table(result: dict, note: str | None = None) -> None:
    from rich.markup import escape
    from rich.table import Table

    t = Table(title=escape(f"{result['model']} ({result['format']})"), title_justify="left",
              caption=escape(note) if note else None, caption_justify="left")
    # A long path folds onto more lines at the table's width; it is never cut (users copy it).
    for name in ("path", *[f"top {i + 1}" for i in range(result["top_k"])]):
        t.add_column(name, overflow="fold")
    for r in result["rows"]:
        # Paths, labels and details are text, not Rich markup: "Holiday [from phone]/a.png" stays as it is.
        cells = [escape(f"{x['label']} {x['probability']:.3f}") for x in r["top"]] or [f"[red]{r['error']}[/] {escape(r['detail'])}"]
        if r.get("prediction") == "unsure":
            cells[0] = f"[yellow]unsure[/] {cells[0]}"
        t.add_row(escape(_shown(r["path"])), *cells)
    out.print(t)
