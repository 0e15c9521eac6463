"""`resnet-tl predict RUN PATH... --explain OUT/`: Grad-CAM of image files, as pictures and arrays.

For each image, OUT/<nnnn>_<stem>.png (the image the model saw, enlarged, the heatmap of the
predicted class blended over it, "<class> <confidence>" in the top-left corner) and
OUT/<nnnn>_<stem>.npy (the heatmap, float32 (S, S) in [0, 1]). The number keeps two files
of the same name in different folders apart.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from resnet_tl.data import DecodeError, decode_image
from resnet_tl.errors import UserError
from resnet_tl.fileio import atomic_path
from resnet_tl.formats.predictor import load_predictor
from resnet_tl.inference.gradcam import GradCam
from resnet_tl.inference.inputs import iter_inputs
from resnet_tl.runs import read_labels, resolve_model

SHOWN = 256  # px side of an overlay (small models see 16-64 px: too small to look at)
ALPHA = 0.45  # heatmap weight in the blend


def overlay(pixels: np.ndarray, heatmap: np.ndarray, caption: str, size: int = SHOWN) -> Image.Image:
    """The uint8 image (S, S, 3) with `heatmap` (S, S) in [0, 1] blended over it (jet colours), `caption` in a corner."""
    from matplotlib import colormaps

    img = Image.fromarray(np.asarray(pixels, dtype=np.uint8)).resize((size, size), Image.Resampling.BICUBIC)
    heat = Image.fromarray(np.uint8(np.clip(heatmap, 0, 1) * 255)).resize((size, size), Image.Resampling.BILINEAR)
    colours = (colormaps["jet"](np.asarray(heat) / 255.0)[..., :3] * 255).astype(np.uint8)
    blended = Image.blend(img, Image.fromarray(colours), ALPHA)
    draw = ImageDraw.Draw(blended)
    font = ImageFont.load_default(size=max(10, size // 16))
    box = draw.textbbox((4, 4), caption, font=font)
    draw.rectangle((box[0] - 3, box[1] - 3, box[2] + 3, box[3] + 3), fill=(0, 0, 0))
    draw.text((4, 4), caption, fill=(255, 255, 255), font=font)
    return blended


def side_by_side(pixels: np.ndarray, maps: list[tuple[np.ndarray, str]], size: int = 160) -> Image.Image:
    """One picture of `overlay`s of the same image, left to right (e.g. predicted and true class)."""
    panels = [overlay(pixels, m, caption, size) for m, caption in maps]
    sheet = Image.new("RGB", (size * len(panels) + 4 * (len(panels) - 1), size), (255, 255, 255))
    for i, panel in enumerate(panels):
        sheet.paste(panel, (i * (size + 4), 0))
    return sheet


def explain_files(model: str | Path, inputs: list[str], out_dir: str | Path, *, batch_size: int = 32,
                  labels: str | Path | None = None) -> dict:
    """Grad-CAM of every image in `inputs` (files, folders, globs) by a run or a .keras model; files into `out_dir`.

    Returns {"model", "out_dir", "explained", "failed", "rows": [{"path", "label", "probability",
    "overlay", "heatmap"} or {"path", "error", "detail"}]}, rows in input order.
    """
    import keras

    model_path, run = resolve_model(model)
    predictor = load_predictor(model_path)
    if predictor.format != "keras":
        raise UserError(f"--explain: received a {predictor.format} model ('{model}'); allowed: a run folder or a .keras file "
                        "(Grad-CAM needs the model's gradients)")
    names = read_labels(labels, "--labels") if labels is not None else read_labels(run.labels) if run is not None else predictor.labels
    cam = GradCam(keras.saving.load_model(model_path))
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    rows, batch = [], []

    def flush():
        if not batch:
            return
        maps, probs = cam(np.stack([px for _, px, _ in batch]), batch_size=batch_size)
        for (path, px, row), heat, p in zip(batch, maps, probs):
            top = int(p.argmax())
            label = names[top] if names else str(top)
            stem = f"{len(rows) + 1:04d}_{Path(path).stem}"
            with atomic_path(out_dir / f"{stem}.npy") as tmp, open(tmp, "wb") as fh:
                np.save(fh, heat)
            png = overlay(px, heat, f"{label} {p[top]:.2f}")
            with atomic_path(out_dir / f"{stem}.png") as tmp:
                png.save(tmp, "PNG")
            row.update(label=label, probability=round(float(p[top]), 6), overlay=str(out_dir / f"{stem}.png"),
                       heatmap=str(out_dir / f"{stem}.npy"))
            rows.append(row)
        batch.clear()

    for item in iter_inputs(list(inputs)):
        if isinstance(item, dict):
            flush()
            rows.append({"path": item["path"], "error": item.get("error"), "detail": item.get("detail", "")})
            continue
        try:
            px = decode_image(item, cam.size)
        except DecodeError as e:
            flush()
            rows.append({"path": str(item), "error": e.reason, "detail": e.detail})
            continue
        batch.append((str(item), px, {"path": str(item)}))
        if len(batch) >= batch_size:
            flush()
    flush()
    if not rows:
        raise UserError(f"PATH: received {', '.join(inputs)}; found no image files in them")
    failed = sum("error" in r for r in rows)
    return {"model": str(model), "out_dir": str(out_dir), "explained": len(rows) - failed, "failed": failed, "rows": rows}

