"""`resnet-tl bench`: training and inference images/s of a recipe's model on synthetic data."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from resnet_tl.cli.common import JsonOpt, cli_errors, emit_json, out


@cli_errors
def bench(
    recipe: Annotated[Optional[str], typer.Argument(help="Recipe file or shipped recipe name (default: quickstart).")] = None,
    steps: Annotated[int, typer.Option("--steps", min=2, max=10_000, help="Timed training and inference steps (after warm-up).")] = 10,
    batch_size: Annotated[Optional[int], typer.Option("--batch-size", min=1, max=65_536, help="Global batch size (default: train.batch_size).")] = None,
    set_: Annotated[Optional[list[str]], typer.Option("--set", help="Override a recipe key, e.g. --set train.precision=mixed_bfloat16.")] = None,
    json_: JsonOpt = False,
) -> None:
    """Images/s of training and inference on the current device and precision."""
    from resnet_tl.bench import benchmark
    from resnet_tl.recipe import load_recipe

    result = benchmark(load_recipe(recipe, set_ or []), steps=steps, batch_size=batch_size)
    if json_:
        emit_json(result)
        return
    from rich.table import Table

    t = Table("", "", title=f"bench {result['backbone']} at {result['image_size']} px", show_header=False)
    for key in ("device", "backend", "precision", "jit_compile", "distribute", "batch_size"):
        t.add_row(key.replace("_", " "), str(result[key]))
    t.add_row("train images/s", f"{result['train_images_per_s']:.1f}")
    t.add_row("inference images/s", f"{result['inference_images_per_s']:.1f}")
    out.print(t)
