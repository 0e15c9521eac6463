"""The GPU benchmark's comparisons (each figure beside its peer, ratio = ours / peer) and its Markdown table."""

from __future__ import annotations

# figure, ours (section, figure), peer label, peer (section, figure), unit, goal (op, bound) on ours / peer.
# Augmentation may cost at most 10% of the step: augmented step time <= 1.1x, so img/s >= 1 / 1.1 = 0.909x.
COMPARISONS = [
    ("training step, no augmentation", ("train_step", "train_images_per_s"), "plain Keras fit", ("train_step", "keras_fit_images_per_s"), "img/s", None),
    ("training step, no augmentation", ("train_step", "train_images_per_s"), "torchvision eager bf16 channels_last", ("torch_eager", "train_images_per_s"), "img/s", None),
    ("training step, no augmentation", ("train_step", "train_images_per_s"), "torch.compile", ("torch_compile_train", "train_images_per_s"), "img/s", (">=", 1.0)),
    ("training step, no augmentation", ("train_step", "train_images_per_s"), "physical ceiling (FLOP/img at peak)", ("train_step", "ceiling_images_per_s"), "img/s", None),
    ("torch.compile training step", ("torch_compile_train", "train_images_per_s"), "physical ceiling (FLOP/img at peak)", ("train_step", "ceiling_images_per_s"), "img/s", None),
    ("training step with two-phase augmentation", ("augmentation", "train_images_per_s"), "the same without augmentation", ("train_step", "train_images_per_s"), "img/s", (">=", 0.909)),
    ("inference (bench)", ("train_step", "inference_images_per_s"), "torchvision eager bf16", ("torch_eager", "infer_images_per_s"), "img/s", (">=", 1.0)),
    ("inference (bench)", ("train_step", "inference_images_per_s"), "torch.compile bf16", ("torch_compile_infer", "infer_images_per_s"), "img/s", None),
    ("input path (loader alone)", ("train_step", "input_images_per_s"), "training step", ("train_step", "train_images_per_s"), "img/s", None),
    ("train end to end, epochs after the first", ("e2e_train", "steady_images_per_s"), "bench training step", ("train_step", "train_images_per_s"), "img/s", None),
    ("quickstart run 1 (cold): first epoch", ("quickstart", "run1_first_epoch_s"), "its steady epoch", ("quickstart", "run1_steady_epoch_s"), "s", None),
    ("quickstart run 2 (warm start): first epoch", ("quickstart", "run2_first_epoch_s"), "its steady epoch", ("quickstart", "run2_steady_epoch_s"), "s", ("<=", 3.0)),
    ("quickstart run 2: whole process", ("quickstart", "run2_process_s"), "run 1", ("quickstart", "run1_process_s"), "s", None),
    ("training step mixed_float16", ("precision", "float16_train_images_per_s"), "mixed_bfloat16", ("train_step", "train_images_per_s"), "img/s", None),
    ("quickstart val accuracy float16", ("precision", "float16_val_accuracy"), "bfloat16", ("precision", "bfloat16_val_accuracy"), "fraction", None),
    ("predict a folder, whole process", ("predict_folder", "images_per_s"), "torchvision ImageFolder + DataLoader, bf16", ("predict_folder", "peer_images_per_s"), "img/s", (">=", 1.0)),
]


def comparisons(figures: dict) -> list[dict]:
    """One row per COMPARISONS entry from {section: {figure: value}}; a side not measured is named in `missing`."""
    rows = []
    for label, (sa, fa), peer, (sb, fb), unit, goal in COMPARISONS:
        ours, theirs = figures.get(sa, {}).get(fa), figures.get(sb, {}).get(fb)
        row = {"figure": label, "ours": ours, "peer": peer, "peer_value": theirs, "unit": unit, "ratio": None,
               "goal": None if goal is None else f"ours / peer {goal[0]} {goal[1]}", "met": None}
        if ours is None or theirs is None:
            row["missing"] = f"{sa}.{fa}" if ours is None else f"{sb}.{fb}"
        elif theirs:
            row["ratio"] = float(f"{ours / theirs:.4g}")
            if goal:
                row["met"] = row["ratio"] >= goal[1] if goal[0] == ">=" else row["ratio"] <= goal[1]
        rows.append(row)
    return rows


def _num(x) -> str:
    return "-" if x is None else f"{x:,.3g}" if abs(x) < 100 else f"{x:,.0f}"


def markdown(doc: dict) -> str:
    m = doc["sections"].get("machine", {}).get("result", {})
    v = m.get("versions", {})
    lines = [f"GPU benchmark ({doc['mode']}), {doc['started']}: {m.get('gpu') or 'no GPU'}; {m.get('cpu_model')}, {m.get('cpus')} CPUs; "
             f"jax {v.get('jax')}, keras {v.get('keras')}, torch {v.get('torch')}, torchvision {v.get('torchvision')}; {doc.get('seconds')} s",
             "", "| figure | resnet-tl | peer | peer value | ours / peer | goal | met |", "| --- | --- | --- | --- | --- | --- | --- |"]
    for r in doc["comparisons"]:
        ratio = "-" if r["ratio"] is None else f"{r['ratio']:.3g}x"
        met = "-" if r["met"] is None else "yes" if r["met"] else "no"
        lines.append(f"| {r['figure']} ({r['unit']}) | {_num(r['ours'])} | {r['peer']} | {_num(r['peer_value'])} | {ratio} | {r['goal'] or '-'} | {met} |")
    lines += ["", "| section | status | seconds | note |", "| --- | --- | --- | --- |"]
    lines += [f"| {k} | {s['status']} | {s.get('seconds', '-')} | {s.get('reason', '')} |" for k, s in doc["sections"].items()]
    return "\n".join(lines)
