"""`resnet-tl export`: parse flags, call `resnet_tl.export.exporter.exporter.export_run`, render the parity report."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from resnet_tl.cli.common import JsonOpt, cli_errors, emit_json, err, out
from resnet_tl.formats import FORMATS, QUANT_NAMES

QUANTIZABLE = " and ".join(f.title for f in FORMATS.values() if len(f.quantize) > 1)


@cli_errors
def export(
    run: Annotated[str, typer.Argument(help="A finished run folder (holds model.keras, recipe.yaml, labels.txt).")],
    format_: Annotated[Optional[list[str]], typer.Option("--format", help=f"{' | '.join(FORMATS)} | all (repeatable; default: recipe export.formats).")] = None,
    quantize: Annotated[Optional[list[str]], typer.Option("--quantize", help=f"{' | '.join(QUANT_NAMES)}, {QUANTIZABLE} only (repeatable; default: recipe export.quantize).")] = None,
    no_check: Annotated[bool, typer.Option("--no-check", help="Skip the parity check in each artifact's runtime.")] = False,
    json_: JsonOpt = False,
) -> None:
    from resnet_tl.errors import ExportCheckFailed
    from resnet_tl.export.exporter import export_run

    say = (lambda msg: None) if json_ else (lambda msg: err.print(f"[dim]{msg}[/]", highlight=False))
    try:
        result = export_run(run, format_, quantize, check=not no_check, progress=say)
    except ExportCheckFailed as e:
        _show(e.result, json_)
        raise
    _show(result, json_)


_GATE_NAMES = {"agreement": "agree", "accuracy_drop": "drop"}


def _show(result, json_: bool) -> None:
    if json_:
        emit_json(result.to_dict())
        return
    from rich import box
    from rich.table import Table

    for w in result.warnings:
        err.print(f"[yellow]warning:[/] {w}", highlight=False)
    keras_acc = next((a.parity["keras_accuracy"] for a in result.artifacts if a.parity), None)
    t = Table(box=box.SIMPLE_HEAD, title=f"export {result.export_dir}", pad_edge=False,
              caption="agree: top-1 agreement with Keras; acc: the artifact's accuracy"
                      + (f" (Keras: {keras_acc:.3f})" if keras_acc is not None else "")
                      + "; gated: figures the check enforced (agree; drop: accuracy drop; model.keras is the run's own "
                      "file: none); |dp|: largest probability difference; ms: one image; └ mediapipe: the .tflite above "
                      "in MediaPipe's ImageClassifier, given the image files as an app (its decoder and resize), "
                      "top-1 read as category names")
    # Fits 80 columns: the file names (what a user copies) keep their width, the figures fold.
    width = max((len(a.path) for a in result.artifacts if a.runtime != "mediapipe"), default=8)
    t.add_column("artifact", no_wrap=True, min_width=min(width, 40))
    for name in ("check", "agree", "acc", "gated", "|dp|", "MB", "ms"):
        t.add_column(name, justify="left" if name in ("check", "gated") else "right", overflow="fold")
    for a in result.artifacts:
        p = a.parity or {}
        t.add_row(a.path if a.runtime != "mediapipe" else "  └ mediapipe", {"passed": "[green]passed[/]", "failed": "[red]failed[/]"}.get(a.check, a.check),
                  f"{p['agreement']:.3f}" if p else "-", f"{p['accuracy']:.3f}" if p else "-",
                  ", ".join(_GATE_NAMES[g] for g in a.gates) or "-",
                  f"{p['max_abs_diff']:.1g}" if p else "-", f"{a.size_bytes / 1e6:.1f}", f"{p['latency_ms']:.2f}" if p else "-")
    out.print(t)
    for a in result.artifacts:
        if a.note:
            out.print(f"{a.path} ({a.runtime}): {a.note}", highlight=False)
    out.print(f"manifest: {result.export_dir / 'manifest.json'}", highlight=False)
    others = [f"{name} ({f.title})" for name, f in FORMATS.items() if name not in {a.format for a in result.artifacts}]
    if others:
        out.print(f"other formats: {', '.join(others)}; e.g. resnet-tl export RUN --format onnx --format openvino",
                  highlight=False)
