"""What every command shares: consoles, error handling, --json output."""

from __future__ import annotations

import functools
import json
import sys
from typing import Annotated, Any, Callable

import typer
from rich.console import Console

# Reports go to stdout; progress, warnings and errors to stderr, so that
# `--json` leaves exactly one JSON document on stdout.
out = Console()
err = Console(stderr=True)

JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON document on stdout instead of tables.")]


def emit_json(obj: Any) -> None:
    sys.stdout.write(json.dumps(obj, indent=2, default=str) + "\n")
    sys.stdout.flush()


def cli_errors(fn: Callable) -> Callable:
    """Turn library exceptions into one line and an exit code, never a traceback.

    UserError -> 2; an export that fails its parity check -> 1 (its report is
    already printed); Ctrl-C during training -> 130 with the resume command.
    """

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        from resnet_tl.errors import ExportCheckFailed, Interrupted, UserError

        try:
            return fn(*args, **kwargs)
        except UserError as e:
            from rich.markup import escape

            for line in str(e).splitlines() or ["error"]:  # the message names paths: text, not markup
                err.print(f"[bold red]error:[/] {escape(line)}", highlight=False, markup=True, soft_wrap=True)
            raise typer.Exit(2) from None
        except ExportCheckFailed as e:
            err.print(f"[bold red]export check failed:[/] {e}", highlight=False, soft_wrap=True)
            raise typer.Exit(1) from None
        except Interrupted as e:
            err.print(
                f"interrupted after epoch {e.epoch}; the checkpoint is saved. Resume with:\n"
                f"  resnet-tl train --resume {e.run_dir}",
                highlight=False, soft_wrap=True,
            )
            raise typer.Exit(130) from None
        except KeyboardInterrupt:
            err.print("interrupted", highlight=False)
            raise typer.Exit(130) from None

    return wrapper
