"""`resnet-tl bench`: training, input and inference images/s of a recipe's model on synthetic data."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from resnet_tl.cli.common import JsonOpt, cli_errors, emit_json, out

PRECISIONS = ("float32", "mixed_float16", "mixed_bfloat16", "auto")


@cli_errors
def bench(
    recipe: Annotated[Optional[str], typer.Argument(help="Recipe file or shipped recipe name (default: quickstart).")] = None,
    steps: Annotated[int, typer.Option("--steps", min=2, max=10_000, help="Timed training and inference steps (after warm-up).")] = 10,
    batch_size: Annotated[Optional[int], typer.Option("--batch-size", min=1, max=65_536, help="Global batch size (default: train.batch_size).")] = None,
    precision: Annotated[Optional[list[str]], typer.Option("--precision", help=f"Precision to measure, repeatable ({', '.join(PRECISIONS)}; default: train.precision).")] = None,
    peer: Annotated[bool, typer.Option("--peer", help="Also train plain Keras (keras.applications, fit on arrays) for comparison.")] = False,
    set_: Annotated[Optional[list[str]], typer.Option("--set", help="Override a recipe key, e.g. --set data.image_size=224.")] = None,
    json_: JsonOpt = False,
) -> None:
    """Images/s of training, of the input path alone and of inference; which of them limits."""
    from resnet_tl.errors import UserError
    from resnet_tl.recipe import load_recipe
    from resnet_tl.training.bench import benchmark

    for p in precision or []:
        if p not in PRECISIONS:
            raise UserError(f"--precision: received {p!r}; allowed: {', '.join(PRECISIONS)}")
    doc = benchmark(load_recipe(recipe, set_ or []), steps=steps, batch_size=batch_size, precisions=precision, peer=peer)
    if json_:
        emit_json(doc)
        return
    from rich import box
    from rich.table import Table

    title = f"bench {doc['backbone']} at {doc['image_size']} px, batch {doc['batch_size']}, {doc['backend']} on {doc['device']}"
    # Short headers: the table must fit 80 columns with --peer.
    t = Table(title=title, caption="images per second" + ("; ratio = train/s / plain/s" if peer else ""), box=box.SIMPLE_HEAD, pad_edge=False, collapse_padding=True)
    for name in ("precision", "train/s", "input/s", "in/train", "limit", "infer/s", *(("plain/s", "ratio") if peer else ())):
        t.add_column(name, no_wrap=True)
    for r in doc["results"]:
        cells = [r["precision"], f"{r['train_images_per_s']:.1f}", f"{doc['input_images_per_s']:.0f}", (f"{r['input_over_train']:,.0f}x" if r["input_over_train"] >= 10 else f"{r['input_over_train']:.2f}x"),
                 r["limited_by"], f"{r['inference_images_per_s']:.1f}"]
        if peer:
            cells += ["n/a", "n/a"] if r["vs_peer"] is None else [f"{r['peer_train_images_per_s']:.1f}", f"{r['vs_peer']:.2f}x"]
        t.add_row(*cells)
    out.print(t)
    out.print(f"input: {doc['loader_workers']} loader threads; jit_compile {doc['jit_compile']}; distribute {doc['distribute']}")
