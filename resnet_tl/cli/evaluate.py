"""`resnet-tl evaluate`: metrics of a run or a model file on a split; writes eval/<split>/."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from resnet_tl.cli.common import JsonOpt, cli_errors, emit_json, err, out
from resnet_tl.formats import file_kinds


@cli_errors
def evaluate(
    target: Annotated[str, typer.Argument(metavar="RUN_OR_MODEL", help=f"A run folder, or a model file ({file_kinds()}).")],
    data: Annotated[Optional[str], typer.Option("--data", help="Image folder (default for a run: its data.dir; required for a model file).")] = None,
    split: Annotated[str, typer.Option("--split", help="val or test.")] = "val",
    labels: Annotated[Optional[str], typer.Option("--labels", help="Model files only: class names, one per line (default: the model's sidecar).")] = None,
    out_dir: Annotated[Optional[str], typer.Option("--out", help="Folder for the files (default: RUN/eval/<split>/, or eval/<model>/<split>/ beside a model file).")] = None,
    tta: Annotated[bool, typer.Option("--tta", help="Average over crops, and a mirror if the run trained with a horizontal flip (4-5 model calls per image).")] = False,
    json_: JsonOpt = False,
) -> None:
    """Accuracy, top-k, per-class precision/recall/F1, confusion matrix, most confidently wrong images."""
    from resnet_tl.evaluation.evaluate import evaluate as run_eval

    result = run_eval(target, data=data, split=split, labels=labels, out=out_dir, tta=tta)
    if json_:
        emit_json(result)
        return
    _render(result)


def _render(r: dict) -> None:
    from rich.table import Table

    top = f", top-{r['top_k']} {r['top_k_accuracy']:.4f}" if r.get("top_k_accuracy") is not None else ""
    tta = " (TTA)" if r.get("tta") else ""
    out.print(f"[bold]{r['split']}[/]{tta}: {r['n']} images, accuracy {r['accuracy']:.4f}{top}, loss {r['loss']:.4f}", highlight=False)
    t = Table("class", "precision", "recall", "F1", "support", title="per class", title_justify="left")
    for c in [*r["per_class"], {"class": "macro avg", **r["macro_avg"]}, {"class": "weighted avg", **r["weighted_avg"]}]:
        t.add_row(c["class"], f"{c['precision']:.3f}", f"{c['recall']:.3f}", f"{c['f1']:.3f}", str(c["support"]))
    out.print(t)
    cal = r.get("calibration") or {}
    if cal.get("ece_before") is not None:
        after = (f" -> {cal['ece_after']:.4f} after temperature scaling (T={cal['temperature']:.3g})"
                 if cal.get("temperature") else f" ({cal.get('note') or 'no temperature stored for this model'})")
        if cal.get("temperature") and cal.get("ece_after") is not None and cal["ece_after"] > cal["ece_before"]:
            # Not a bug: the temperature minimises the validation log-loss, not ECE, and ECE is noisy on few images.
            after += (f"; worse here: T was fitted for log-loss on the validation split, not for ECE "
                      f"({r['n']} images on this split)")
        out.print(f"calibration: ECE {cal['ece_before']:.4f}{after}", highlight=False)
    if cal.get("warning"):
        err.print(f"warning: {cal['warning']}", highlight=False, markup=False)
    for p in r["most_confused"][:5]:
        out.print(f"confused: {p['true']} -> {p['predicted']} ({p['count']})", highlight=False)
    err.print(f"wrote {r['out_dir']}", highlight=False, markup=False, soft_wrap=True)  # a path to copy: never folded
