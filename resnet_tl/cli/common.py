"""What every command shares: consoles, error handling, --json output."""

from __future__ import annotations

import contextlib
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


# While a --json command runs, anything printed to sys.stdout (Keras's
# "Downloading data from ..." lines, a library's print) goes to stderr, and
# only the document goes to the stdout saved here.
_document_stdout: list = []


def stdout():
    """The stream that gets the command's output: the real stdout, also while --json diverts prints."""
    return _document_stdout[-1] if _document_stdout else sys.stdout


def emit_json(obj: Any) -> None:
    stream = stdout()
    stream.write(json.dumps(obj, indent=2, default=str) + "\n")
    stream.flush()


def fold(parts: list[str], width: int, indent: str = "    ") -> str:
    """`parts` joined by spaces into lines of at most `width` columns, broken only between parts
    (a figure and its name stay together); continuation lines start with `indent`."""
    lines = [parts[0]] if parts else [""]
    for part in parts[1:]:
        if len(lines[-1]) + 1 + len(part) <= width:
            lines[-1] += " " + part
        else:
            lines.append(indent + part)
    return "\n".join(lines)


def cli_errors(fn: Callable) -> Callable:
    """Turn library exceptions into one line and an exit code, never a traceback.

    UserError -> 2; an export that fails its parity check -> 1 (its report is
    already printed); Ctrl-C during training -> 130 with the resume command.
    With --json, whatever the command's libraries print goes to stderr: stdout
    holds the one document that `emit_json` writes.
    """

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        from resnet_tl.errors import ExportCheckFailed, Interrupted, UserError

        try:
            if not kwargs.get("json_"):
                return fn(*args, **kwargs)
            _document_stdout.append(sys.stdout)
            try:
                with contextlib.redirect_stdout(sys.stderr):
                    return fn(*args, **kwargs)
            finally:
                _document_stdout.pop()
        except UserError as e:
            from rich.markup import escape

            for line in str(e).splitlines() or ["error"]:  # the message names paths: text, not markup
                err.print(f"[bold red]error:[/] {escape(line)}", highlight=False, markup=True, soft_wrap=True)
            raise typer.Exit(2) from None
        except ExportCheckFailed as e:
            err.print(f"[bold red]export check failed:[/] {e}", highlight=False, soft_wrap=True)
            raise typer.Exit(1) from None
        except Interrupted as e:
            done = (f"interrupted after epoch {e.epoch}; its checkpoint is saved. Resume with:" if e.epoch else
                    "interrupted before the first epoch ended: no checkpoint yet. Start it again from epoch 1 with:")
            err.print(f"{done}\n  resnet-tl train --resume {e.run_dir}", highlight=False, soft_wrap=True)
            raise typer.Exit(130) from None
        except KeyboardInterrupt:
            err.print("interrupted", highlight=False)
            raise typer.Exit(130) from None

    return wrapper
