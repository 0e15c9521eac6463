"""`resnet-tl weights list|convert`: where pretrained weights come from; timm/torchvision checkpoints to .keras."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from resnet_tl.cli.common import JsonOpt, cli_errors, emit_json, err, out
from resnet_tl.models.backbones import names

app = typer.Typer(help="Pretrained weights: where they come from, and converting timm/torchvision checkpoints.",
                  no_args_is_help=True)


@app.command("list", help="Per backbone: the model.weights values that bring pretrained weights, size, published ImageNet top-1.")
@cli_errors
def list_(json_: JsonOpt = False) -> None:
    from resnet_tl.models.weight_sources import list_weights

    rows = list_weights()
    if json_:
        emit_json(rows)
        return
    from rich import box
    from rich.table import Table

    t = Table(box=box.SIMPLE_HEAD, title="pretrained weights (--set model.weights=VALUE)", pad_edge=False,
              caption="top-1: ImageNet-1k as published (resnet-tl weights list --json gives each source)")
    # The names users copy keep their full width; the rest folds on a narrow terminal.
    for name, key in (("backbone", "backbone"), ("model.weights", "weights")):
        t.add_column(name, no_wrap=True, min_width=max(len(r[key] or "-") for r in rows))
    t.add_column("from", overflow="fold")
    for name in ("MB", "top-1 %"):
        t.add_column(name, justify="right", overflow="fold")
    for r in rows:
        t.add_row(r["backbone"], r["weights"] or "-", r["origin"], f"{r['size_mb']:g}" if r["size_mb"] else "-",
                  str(r["top1"]) if r["top1"] is not None else "-")
    out.print(t)


CONVERT_HELP = (
    "Convert a timm/torchvision ResNet checkpoint into a resnet-tl .keras classifier (its own classes).\n\n"
    "Accepted: a plain ResNet state dict in torchvision's layout, which timm's resnet* models share: "
    "conv1.weight, bn1.*, layer1..layer4.<block>.conv<k>/bn<k>/downsample.*, fc.weight, fc.bias "
    "(as torchvision.models.resnet50().state_dict() or timm.create_model('resnet50').state_dict() save them), "
    "in a .safetensors file, a .pth/.pt file (needs torch; a {'state_dict': ...} or {'model': ...} wrapper is "
    "unwrapped) or hf://timm/<model>. Not accepted: deep stems (resnet50d), SE or attention blocks.\n\n"
    "Example: resnet-tl weights convert hf://timm/resnet50.a1_in1k --out r50.keras"
)


@app.command(help=CONVERT_HELP)
@cli_errors
def convert(
    checkpoint: Annotated[str, typer.Argument(help="A .safetensors or .pth file, or hf://timm/<model>.")],
    out_file: Annotated[str, typer.Option("--out", help="A .keras file (labels in <stem>.json beside it), or a new run folder that export and evaluate take.")],
    backbone: Annotated[Optional[str], typer.Option("--backbone", help=f"Expected backbone, checked against the tensors (default: inferred): {', '.join(names(lambda s: s.torch_layout))}. torchvision/timm bottleneck nets are v1.5; {', '.join(names(lambda s: s.imagenet and s.family == 'keras_v1'))} are keras.applications' v1.")] = None,
    image_size: Annotated[int, typer.Option("--image-size", min=32, max=1024, help="Input side in pixels of the written model.")] = 224,
    labels: Annotated[Optional[str], typer.Option("--labels", help="Class names, one per line, as many as the checkpoint's classes (default: class_0 ..).")] = None,
    data: Annotated[Optional[str], typer.Option("--data", help="Run folder only: its data.dir, the images export checks and calibrates int8 with.")] = None,
    json_: JsonOpt = False,
) -> None:
    from resnet_tl.models.convert import convert as run_convert

    result = run_convert(checkpoint, out_file, backbone=backbone, image_size=image_size, labels_file=labels, data_dir=data)
    if json_:
        emit_json(result)
        return
    out.print(f"wrote {result['model']}: {result['backbone']}, {result['image_size']} px, {result['classes']} classes "
              f"({result['tensors_loaded']} tensors loaded)", highlight=False)
    for reason, tensors in result["not_used"].items():
        err.print(f"not used: {len(tensors)} tensors ({reason})", highlight=False)
    if "run_dir" in result:
        out.print(f"run folder {result['run_dir']}: resnet-tl export {result['run_dir']} --format tflite", highlight=False)
    else:
        out.print(f"labels: {result['sidecar']}", highlight=False)
