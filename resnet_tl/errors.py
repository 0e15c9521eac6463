"""The one exception type the CLI turns into a one-line message and exit code 2."""

from __future__ import annotations


class UserError(Exception):
    """A problem with what the user gave (recipe, flag, folder, file).

    The message is one line that names the key or path, the value received and
    what is allowed. The CLI prints it without a traceback and exits with 2.
    """

    exit_code = 2


class ExportCheckFailed(Exception):
    """An exported model disagreed with the Keras model beyond the threshold (exit 1)."""

    exit_code = 1


class Interrupted(Exception):
    """Training stopped on Ctrl-C after the last checkpoint was written (exit 130)."""

    exit_code = 130

    def __init__(self, run_dir, epoch: int):
        super().__init__(f"interrupted after epoch {epoch}")
        self.run_dir = run_dir
        self.epoch = epoch


def one_line(exc: BaseException, limit: int = 300) -> str:
    """An exception's message on one line, cut to `limit` characters, for a UserError that quotes it."""
    text = " ".join(str(exc).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."
