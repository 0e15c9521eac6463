"""Rich progress bars fed by the trainer's progress events."""

from __future__ import annotations

import time

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from resnet_tl.cli.common import fold


class TrainProgress:
    """Callable progress sink: one bar per epoch (phase, epoch, images/s), a line per finished epoch."""

    def __init__(self, console: Console, enabled: bool = True, data_summary: bool = True):
        self.console = console
        self.enabled = enabled
        self.data_summary = data_summary  # the data summary shows even when bars do not (--json)
        self.progress = Progress(
            TextColumn("[bold]{task.fields[phase]}[/] epoch {task.fields[epoch]}"),
            BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[speed]}"),
            TextColumn("loss {task.fields[loss]}"), TimeElapsedColumn(),
            console=console, transient=True, disable=not enabled,
        )
        self.task = None
        self.epoch = None
        self.t0 = time.time()

    def __enter__(self):
        self.progress.__enter__()
        return self

    def __exit__(self, *exc):
        return self.progress.__exit__(*exc)

    def __call__(self, ev: dict) -> None:
        kind = ev["event"]
        if kind == "data" and self.data_summary:
            for line in data_lines(ev):
                self.console.print(line, highlight=False, markup=False)
        if not self.enabled:
            return
        if kind == "phase":
            self.console.print(f"[bold]phase {ev['phase']}[/] {ev['name']}: trains {', '.join(ev['stages'])} for {ev['epochs']} epoch(s)", highlight=False)
        elif kind == "batch":
            if self.task is None or self.epoch != ev["epoch"]:
                if self.task is not None:
                    self.progress.remove_task(self.task)
                self.task = self.progress.add_task("", total=ev["steps"], phase=ev["phase"], epoch=ev["epoch"], speed="", loss="")
                self.epoch = ev["epoch"]
                self.t0 = time.time()
            rate = ev["step"] * ev["batch_size"] / max(time.time() - self.t0, 1e-9)
            self.progress.update(self.task, completed=ev["step"], speed=f"{rate:,.0f} img/s", loss=f"{ev['loss']:.4f}")
        elif kind == "epoch":
            if self.task is not None:
                self.progress.remove_task(self.task)
                self.task = None
            parts = [f"  epoch {ev['epoch']:>3}", f"[{ev['phase']}]", f"loss {ev['loss']:.4f}", f"acc {ev['accuracy']:.4f}",
                     f"val_loss {ev['val_loss']:.4f}", f"val_acc {ev['val_accuracy']:.4f}", f"lr {ev['lr']:.3g}",
                     f"{ev['images_per_s']:,.0f} img/s", f"{ev['seconds']:.1f}s" + (" *" if ev.get("improved") else "")]
            # Folded between figures at the console's width, never inside one; text, not markup ([phase]).
            self.console.print(fold(parts, self.console.width, indent=" " * 12), highlight=False, markup=False, soft_wrap=True)
        elif kind == "early_stop":
            self.console.print(f"  early stop in phase {ev['phase']} after epoch {ev['epoch']}", highlight=False)


def data_lines(summary: dict, most: int = 6) -> list[str]:
    """A data summary (`resnet_tl.data.data_report.data_summary`) as a few short lines."""
    splits = ", ".join(f"{k} {v}" for k, v in summary["splits"].items())
    lines = [f"data: {summary['used']} images in {summary['classes']} classes ({splits})"]
    if summary["skipped"]:
        reasons = ", ".join(f"{n} {r}" for r, n in summary["skipped_by_reason"].items())
        lines.append(f"  skipped {summary['skipped']} file(s): {reasons} (each in RUN/data_report.json)")
    if summary["duplicates"]:
        lines.append(f"  {summary['duplicates']} set(s) of identical files in one split and class")
    warnings = summary["warnings"]
    lines += [f"  warning: {w}" for w in warnings[:most]]
    if len(warnings) > most:
        lines.append(f"  ... {len(warnings) - most} more warning(s) in RUN/data_report.json")
    return lines


class FileProgress:
    """Callable progress sink for predict: (files done, total or None while counting) -> a bar with rate and ETA."""

    def __init__(self, console: Console, enabled: bool = True):
        from rich.progress import TimeRemainingColumn

        self.progress = Progress(
            TextColumn("[bold]predict[/]"), BarColumn(), MofNCompleteColumn(),
            TextColumn("{task.fields[rate]}"), TimeElapsedColumn(), TextColumn("eta"), TimeRemainingColumn(),
            console=console, transient=True, disable=not enabled,
        )
        self.task = self.progress.add_task("", total=None, rate="")
        self.t0 = time.time()

    def __enter__(self):
        self.progress.__enter__()
        return self

    def __exit__(self, *exc):
        return self.progress.__exit__(*exc)

    def __call__(self, done: int, total: int | None) -> None:
        rate = done / max(time.time() - self.t0, 1e-9)
        self.progress.update(self.task, completed=done, total=total, rate=f"{rate:,.1f} img/s")
