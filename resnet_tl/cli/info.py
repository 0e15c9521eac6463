"""`resnet-tl info`: versions, backend, devices, precision and XLA support, cache folder."""

from __future__ import annotations

from resnet_tl.cli.common import JsonOpt, cli_errors, emit_json, out


@cli_errors
def info(json_: JsonOpt = False) -> None:
    """What this installation runs on: versions, backend, devices, mixed precision, XLA, cache."""
    from resnet_tl.training.precision import system_info

    doc = system_info()
    if json_:
        emit_json(doc)
        return
    from rich.table import Table

    t = Table("", "", title="resnet-tl info", show_header=False)
    for name, version in doc["versions"].items():
        t.add_row(name, version or "not installed")
    t.add_row("backend", doc["backend"])
    t.add_row("devices", ", ".join(f"{d['kind']}: {d['name']}" for d in doc["devices"]))
    cpu = doc["cpu"]
    t.add_row("cpu", f"{cpu['model'] or 'unknown'} ({cpu['cpus_usable']} usable)")
    t.add_row("cpu matrix units", ", ".join(f"{k}: {'yes' if v else 'no'}" for k, v in cpu["features"].items() if k != "avx512f"))
    t.add_row("precision (auto)", f"{doc['precision_auto']}: {doc['precision_auto_rule']['why']}")
    t.add_row("mixed precision", ", ".join(doc["mixed_precision"]) or "none")
    t.add_row("XLA", "yes" if doc["xla"] else "no")
    t.add_row("cache dir", doc["cache_dir"])
    cc = doc["compile_cache"]
    t.add_row("compiled programs", f"{cc['folder']} ({cc['used_mb']} of {cc['bound_mb']} MB; {cc['note']})" if cc["folder"] else cc["note"])
    t.add_row("usable CPUs", str(doc["usable_cpus"]))
    out.print(t)
