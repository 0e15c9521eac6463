"""`resnet-tl export`: parse flags, call `resnet_tl.export.exporter.exporter.export_run`, render the parity report."""

from __future__ import annotations

from typing import Annotated, Optional

import typer
from rich.markup import escape

from resnet_tl.cli.common import JsonOpt, cli_errors, emit_json, err, out
from resnet_tl.formats import FORMATS, QUANT_NAMES

QUANTIZABLE = " and ".join(f.title for f in FORMATS.values() if len(f.quantize) > 1)


@cli_errors
def export(
    run: Annotated[str, typer.Argument(help="A finished run folder (holds model.keras, recipe.yaml, labels.txt).")],
    format_: Annotated[Optional[list[str]], typer.Option("--format", help=f"{' | '.join(FORMATS)} | all (repeatable; default: recipe export.formats).")] = None,
    quantize: Annotated[Optional[list[str]], typer.Option("--quantize", help=f"{' | '.join(QUANT_NAMES)}, {QUANTIZABLE} only (repeatable; default: recipe export.quantize).")] = None,
    no_check: Annotated[bool, typer.Option("--no-check", help="Skip the parity check in each artifact's runtime.")] = False,
    set_: Annotated[Optional[list[str]], typer.Option("--set", help="Override an export key of the run's recipe for this export: --set export.max_accuracy_drop=0.02 (repeatable).")] = None,
    json_: JsonOpt = False,
) -> None:
    from resnet_tl.errors import ExportCheckFailed
    from resnet_tl.export.exporter import export_run

    say = (lambda msg: None) if json_ else (lambda msg: err.print(f"[dim]{msg}[/]", highlight=False))
    try:
        result = export_run(run, format_, quantize, check=not no_check, progress=say, overrides=set_ or [])
    except ExportCheckFailed as e:
        _show(e.result, json_)
        raise
    _show(result, json_)


def _bounds(g: dict | None, value: str) -> str:
    """'0.990 [0.951, 0.999]': the figure and its one-sided 95% bounds, '-' when not gated."""
    if not g:
        return value
    lo, hi = g["interval"]
    return escape(f"{value} [{lo:.3f}, {hi:.3f}]")  # brackets are Rich markup otherwise


def _show(result, json_: bool) -> None:
    if json_:
        emit_json(result.to_dict())
        return
    from rich import box
    from rich.table import Table

    from resnet_tl.export.parity import resolution

    for w in result.warnings:
        err.print(f"[yellow]warning:[/] {w}", highlight=False)
    keras_acc = next((a.parity["keras_accuracy"] for a in result.artifacts if a.parity), None)
    caption = ("agree: top-1 agreement with Keras; drop: Keras's accuracy minus the artifact's; \\[lo, hi]: each a one-sided "
               "95% bound; a gate fails only when the whole bound is past its limit (model.keras is the run's own "
               "file: not gated); n: images checked, and how many a flawless sample needs to prove the limit; "
               "acc: the artifact's accuracy" + (f" (Keras's: {keras_acc:.3f})" if keras_acc is not None else "")
               + "; |dp|: largest probability difference; ms: one image; └ mediapipe: the .tflite above in MediaPipe's "
               "ImageClassifier, given the image files as an app (its decoder and resize)")
    rows = []
    for a in result.artifacts:
        p, g = a.parity or {}, a.gates
        rows.append([a.path if a.runtime != "mediapipe" else "  └ mediapipe", a.check,
                     resolution(max(g.values(), key=lambda v: v["images_needed"])) if g else (str(p.get("n", "-")) if p else "-"),
                     _bounds(g.get("agreement"), f"{p['agreement']:.3f}") if p else "-",
                     _bounds(g.get("accuracy_drop"), f"{p['keras_accuracy'] - p['accuracy']:.3f}") if p else "-",
                     f"{p['accuracy']:.3f}" if p else "-",
                     f"{p['max_abs_diff']:.1g}" if p else "-", f"{a.size_bytes / 1e6:.1f}",
                     f"{p['latency_ms']:.2f}" if p and p.get("latency_ms") is not None else "-"])
    names = ("artifact", "check", "n", "agree [lo, hi]", "drop [lo, hi]", "acc", "|dp|", "MB", "ms")
    one_line = sum(max(len(n), *(len(r[i].replace("\\[", "[")) for r in rows)) + 2 for i, n in enumerate(names))
    # Narrower than one row per line (80 columns, a pipe): two tables, the check's verdict and figures,
    # then the sample sizes, sizes and times; cells wrap between words, so no name or figure is cut.
    parts = [range(len(names))] if one_line <= out.width else [(0, 1, 3, 4, 5), (0, 2, 6, 7, 8)]
    for k, cols in enumerate(parts):
        t = Table(box=box.SIMPLE_HEAD, pad_edge=False, title=f"export {result.export_dir}" if k == 0 else None,
                  caption=caption if k == len(parts) - 1 else None)
        for i in cols:
            t.add_column(escape(names[i]), justify="left" if i < 2 else "right", no_wrap=i == 0)
        for r in rows:
            t.add_row(*({"passed": "[green]passed[/]", "failed": "[red]failed[/]"}.get(r[i], r[i]) if i == 1 else r[i] for i in cols))
        out.print(t)
    for a in result.artifacts:
        if a.note:
            out.print(f"{a.path} ({a.runtime}): {a.note}", highlight=False)
        for i, t in enumerate((a.repair or {}).get("attempts", [])):
            kept = f"{len(t['float_layers'])} layer(s) in float" if t["float_layers"] else "plain int8"
            out.print(f"  attempt {i}: {kept}, {t['size_bytes'] / 1e6:.2f} MB, agreement {t['agreement']:.4f}, "
                      f"accuracy {t['accuracy']:.4f}, {t['latency_ms']:.2f} ms, {'passed' if t['passed'] else 'failed'}",
                      highlight=False, markup=False)
    out.print(f"manifest: {result.export_dir / 'manifest.json'}", highlight=False)
    others = [f"{name} ({f.title})" for name, f in FORMATS.items() if name not in {a.format for a in result.artifacts}]
    if others:
        out.print(f"other formats (not in this export): {', '.join(others)}; "
                  f"e.g. resnet-tl export RUN --format onnx --format openvino", highlight=False)
