"""What a person looks at after training: TensorBoard logs and report.html.

`write_report(run_dir)` builds RUN/report.html from the files in the run
folder alone, so `evaluate` can refresh it later. The report is one
self-contained file: images are inlined as base64 data URIs, CSS is inline,
nothing is fetched from the network, and every user-controlled string (class
names, paths, the recipe) is HTML-escaped.
"""

from __future__ import annotations

import base64
import html
import importlib.util
import shutil
import tempfile
from pathlib import Path

import yaml

from resnet_tl.fileio import atomic_write_text, read_json
from resnet_tl.runs import RunPaths
from resnet_tl.kerasenv import quiet_tensorflow

# -------------------------------------------------------------- tensorboard
def write_tensorboard(history: list[dict], logdir: Path) -> bool:
    """Per-epoch scalars as Keras' TensorBoard callback lays them out.

    logdir/train: epoch_loss, epoch_accuracy, epoch_learning_rate;
    logdir/validation: epoch_loss, epoch_accuracy (step = epoch). The folder
    is replaced as a whole, so a resumed run never doubles its events.
    Returns False (and writes nothing) when TensorFlow cannot be imported.
    """
    if importlib.util.find_spec("tensorflow") is None:
        return False
    try:
        quiet_tensorflow()
        import tensorflow as tf
    except ImportError:
        return False
    from tensorflow.core.framework import summary_pb2

    metadata = summary_pb2.SummaryMetadata(plugin_data=summary_pb2.SummaryMetadata.PluginData(plugin_name="scalars"))
    logdir = Path(logdir)
    logdir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=logdir.parent, prefix=f".{logdir.name}.partial-"))
    try:
        series = {
            "train": (("epoch_loss", "loss"), ("epoch_accuracy", "accuracy"), ("epoch_learning_rate", "lr")),
            "validation": (("epoch_loss", "val_loss"), ("epoch_accuracy", "val_accuracy")),
        }
        for sub, tags in series.items():
            writer = tf.summary.create_file_writer(str(tmp / sub))
            with writer.as_default():
                for row in history:
                    for tag, col in tags:
                        value = _float(row.get(col))
                        if value is not None:
                            # tf.summary.write, not tf.summary.scalar: the latter lives in the
                            # tensorboard package, which TensorFlow no longer installs.
                            tf.summary.write(tag, tf.constant(value, tf.float32), step=int(row["epoch"]), metadata=metadata)
            writer.flush()
            writer.close()
        if logdir.exists():
            shutil.rmtree(logdir)
        tmp.rename(logdir)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return True


def _float(v) -> float | None:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return None if f != f else f


# ------------------------------------------------------------------ report
def write_report(run_dir: str | Path) -> Path:
    """(Re)build RUN/report.html from what the run folder holds; returns its path."""
    paths = RunPaths(Path(run_dir))
    atomic_write_text(paths.report, render_report(paths))
    return paths.report


def render_report(paths: RunPaths) -> str:
    """The page of a run folder, as HTML text."""
    e = _esc
    status = read_json(paths.status) or {}
    metrics = read_json(paths.metrics) or {}
    recipe_text = _read_text(paths.recipe)
    title = f"resnet-tl run {paths.root.resolve().name}"
    calibration = read_json(paths.calibration) or {}
    body = [f"<h1>{e(title)}</h1>", _summary(status, metrics, recipe_text, calibration)]
    body.append(_section("Training curves", _curves(paths)))
    for split_dir in sorted(paths.eval_root.glob("*/metrics.json")):
        body.append(_eval_section(split_dir.parent))
    body.append(_section("Data", _data(read_json(paths.data_report))))
    audit = read_json(paths.audit / "audit.json")
    if audit:
        body.append(_section("Data audit", _audit(paths.audit, audit), "audit"))
    body.append(_section("Recipe", f"<pre class='recipe'>{e(recipe_text or '(no recipe.yaml)')}</pre>"))
    return _PAGE.format(title=e(title), css=_CSS, body="\n".join(body), script=_SCRIPT)


def _summary(status: dict, metrics: dict, recipe_text: str | None, calibration: dict) -> str:
    try:
        recipe = yaml.safe_load(recipe_text or "") or {}
    except yaml.YAMLError:
        recipe = {}
    model = recipe.get("model") or {}
    data = recipe.get("data") or {}
    rows = [
        ("status", status.get("status")),
        ("finished", status.get("finished") or status.get("updated")),
        ("backbone", model.get("backbone")),
        ("weights", model.get("weights")),
        ("image size", f"{data['image_size']} px" if data.get("image_size") else None),
        ("val accuracy", _fmt(metrics.get("accuracy"))),
        ("val loss", _fmt(metrics.get("loss"))),
        ("best epoch", metrics.get("best_epoch")),
        ("train / val images", f"{metrics['n_train']} / {metrics['n_val']}" if "n_train" in metrics else None),
        ("temperature", f"{calibration['temperature']:.3g} (val ECE {_fmt(calibration.get('ece_before'))} before, "
                        f"{_fmt(calibration.get('ece_after'))} after)" if calibration.get("temperature") else None),
    ]
    cells = "".join(f"<tr><th>{_esc(k)}</th><td>{_esc(v)}</td></tr>" for k, v in rows if v is not None)
    return f"<table class='summary'>{cells}</table>"


def _curves(paths: RunPaths) -> str:
    png = paths.curves
    parts = [_img(png, "training curves: loss and accuracy per epoch", "wide") if png.is_file() else "<p class='note'>No curves (plots/curves.png is missing).</p>"]
    if paths.tensorboard.is_dir():
        parts.append(f"<p class='note'>TensorBoard logs: <code>tensorboard --logdir {_esc(paths.tensorboard)}</code></p>")
    else:
        parts.append("<p class='note'>No TensorBoard logs: TensorFlow was not importable when training ended.</p>")
    return "\n".join(parts)


def _eval_section(folder: Path) -> str:
    m = read_json(folder / "metrics.json") or {}
    split = folder.name
    e = _esc
    head = [f"accuracy <b>{_fmt(m.get('accuracy'))}</b>"]
    if m.get("top_k_accuracy") is not None:
        head.append(f"top-{m['top_k']} accuracy <b>{_fmt(m['top_k_accuracy'])}</b>")
    head.append(f"loss {_fmt(m.get('loss'))}")
    head.append(f"{m.get('n', 0)} images")
    if m.get("model"):
        head.append(f"model <code>{e(m['model'])}</code>")
    if m.get("data"):
        head.append(f"data <code>{e(m['data'])}</code>")
    parts = [f"<p>{' &middot; '.join(head)}</p>"]
    cm_png = folder / "confusion_matrix.png"
    if cm_png.is_file():
        parts.append(_img(cm_png, f"confusion matrix ({split})", "wide"))
    parts.append(_per_class_table(m, split))
    parts.append(_calibration(folder, m.get("calibration")))
    if m.get("most_confused"):
        rows = "".join(
            f"<tr><td>{e(p['true'])}</td><td>{e(p['predicted'])}</td><td class='num'>{p['count']}</td><td class='num'>{_fmt(p['rate'])}</td></tr>"
            for p in m["most_confused"]
        )
        parts.append(f"<h3>Most confused pairs</h3><table><tr><th>true</th><th>predicted as</th><th>images</th><th>share of true class</th></tr>{rows}</table>")
    parts.append(_gallery(folder, m.get("misclassified") or []))
    return _section(f"Evaluation: {split}", "\n".join(parts), f"eval-{split}")


def _calibration(folder: Path, cal: dict | None) -> str:
    if not cal or cal.get("ece_before") is None:
        return ""
    t = cal.get("temperature")
    text = f"expected calibration error {_fmt(cal['ece_before'])} (model output)"
    if t:
        text += f", {_fmt(cal.get('ece_after'))} after temperature scaling (T = {t:.3g}, fitted on the validation split)"
    else:
        text += "; " + (cal.get("note") or "no temperature (the run has no calibration.json, or the model's sidecar none)")
    png = folder / "reliability.png"
    pic = _img(png, "reliability diagram: accuracy per confidence bin", "wide") if png.is_file() else ""
    return f"<h3>Calibration</h3><p>{_esc(text)}, {cal.get('bins')} bins.</p>{pic}"


def _per_class_table(m: dict, split: str) -> str:
    e = _esc

    def row(name, r, cls=""):
        f1 = r.get("f1") or 0.0
        bar = f"style='background:linear-gradient(90deg,#cfe3f7 {f1 * 100:.0f}%,transparent {f1 * 100:.0f}%)'"
        return (f"<tr class='{cls}'><td>{e(name)}</td><td class='num'>{_fmt(r.get('precision'))}</td>"
                f"<td class='num'>{_fmt(r.get('recall'))}</td><td class='num' {bar}>{_fmt(r.get('f1'))}</td>"
                f"<td class='num'>{e(r.get('support'))}</td></tr>")

    rows = [row(r["class"], r) for r in m.get("per_class", [])]
    for key, label in (("macro_avg", "macro average"), ("weighted_avg", "weighted average")):
        if key in m:
            rows.append(row(label, m[key], "avg"))
    return (f"<h3>Per class</h3><table class='per-class' id='per-class-{e(split)}'>"
            "<tr><th>class</th><th>precision</th><th>recall</th><th>F1</th><th>support</th></tr>"
            + "".join(rows) + "</table>")


def _gallery(folder: Path, wrong: list[dict]) -> str:
    if not wrong:
        return "<h3>Misclassified</h3><p class='note'>No misclassified images.</p>"
    e = _esc
    cards = []
    for m in wrong:
        img = folder / m["image"] if m.get("image") else None
        cam = folder / m["gradcam"] if m.get("gradcam") else None
        if cam is not None and cam.is_file():  # the image under the predicted class's and the true class's heatmaps
            img = cam
        pic = _img(img, f"{m['true']} predicted as {m['predicted']}", "thumb") if img is not None and img.is_file() else "<div class='thumb missing'>no image</div>"
        if cam is not None and cam.is_file():
            pic = pic.replace("class='thumb", "class='thumb pair", 1)
        name = Path(m["path"]).name if m.get("path") else f"#{m['index']}"
        cards.append(
            f"<figure>{pic}<figcaption><span class='true'>true: {e(m['true'])}</span><br>"
            f"<span class='pred'>predicted: {e(m['predicted'])} ({m['confidence']:.2f})</span><br>"
            f"<span class='path' title='{e(m.get('path') or '')}'>{e(name)}</span></figcaption></figure>"
        )
    return f"<h3>Most confidently wrong ({len(wrong)})</h3><div class='gallery'>{''.join(cards)}</div>"


def _data(report: dict | None) -> str:
    if not report:
        return "<p class='note'>No data report (data_report.json is missing).</p>"
    e = _esc
    splits = list(report.get("splits", {}))
    head = "".join(f"<th>{e(s)}</th>" for s in splits)
    rows = "".join(
        f"<tr><td>{e(c['name'])}</td>" + "".join(f"<td class='num'>{e(c.get(s, 0))}</td>" for s in splits) + "</tr>"
        for c in report.get("classes", [])
    )
    total = "".join(f"<td class='num'><b>{e(report['splits'][s])}</b></td>" for s in splits)
    parts = [
        f"<p><code>{e(report.get('root'))}</code> ({e(str(report.get('layout', '')).replace('_', ' '))}, {e(report.get('image_size'))} px): "
        f"{e(report.get('used'))} images used, {e(report.get('skipped_count', 0))} skipped.</p>",
        f"<table><tr><th>class</th>{head}</tr>{rows}<tr class='avg'><td>total</td>{total}</tr></table>",
    ]
    by_reason = report.get("skipped_by_reason") or {}
    if by_reason:
        parts.append("<p>Skipped: " + ", ".join(f"{e(k)} {e(v)}" for k, v in by_reason.items()) + "</p>")
    for w in report.get("warnings", []):
        parts.append(f"<p class='warn'>warning: {e(w)}</p>")
    return "\n".join(parts)


def _audit(folder: Path, doc: dict) -> str:
    """Counts and thumbnails of `resnet-tl data audit --run` (RUN/audit/audit.json)."""
    e, c = _esc, doc.get("counts", {})
    summary = (f"<p><code>{e(doc.get('root'))}</code>, {e(doc.get('images'))} images, features of {e(doc.get('model'))}: "
               f"<b>{e(c.get('label_errors'))}</b> suspected label errors, <b>{e(c.get('duplicates'))}</b> near-duplicate pairs "
               f"({e(c.get('duplicates_across_splits'))} across splits), <b>{e(c.get('outliers'))}</b> outliers. "
               f"All of them: <code>audit/audit.csv</code>; links by finding in <code>audit/</code>.</p>")
    parts = [summary]

    def pic(rel, alt):
        path = folder / rel if rel else None
        return _img(path, alt, "thumb") if path is not None and path.is_file() else ""

    for kind, title, caption in (
        ("label_errors", "Suspected label errors", lambda r: (f"<span class='true'>given: {e(r['given'])} ({r['given_probability']:.2f})</span><br>"
                                                              f"<span class='pred'>suggested: {e(r['suggested'])} ({r['suggested_probability']:.2f})</span>")),
        ("duplicates", "Near-duplicates", lambda r: f"{e(r['split'])} / {e(r['other_split'])}, cosine {r['cosine']:.3f}, by {e(r['by'])}"),
        ("outliers", "Outliers", lambda r: f"{e(r['given'])}, centroid similarity {r['similarity']:.2f}"),
    ):
        cards = [(f"<figure>{pic(r.get('thumb'), kind)}{pic(r.get('other_thumb'), kind)}<figcaption>{caption(r)}<br>"
                  f"<span class='path' title='{e(r['path'])}'>{e(Path(r['path']).name)}</span></figcaption></figure>")
                 for r in doc.get(kind, []) if r.get("thumb")]
        if cards:
            parts.append(f"<h3>{title} ({len(doc.get(kind, []))})</h3><div class='gallery'>{''.join(cards)}</div>")
    return "\n".join(parts)


# ------------------------------------------------------------------ helpers
def _esc(v) -> str:
    return html.escape("" if v is None else str(v), quote=True)


def _fmt(v) -> str:
    return "-" if v is None else f"{v:.4f}" if isinstance(v, float) else str(v)


def _img(path: Path, alt: str, cls: str) -> str:
    raw = path.read_bytes()
    if cls == "thumb" and int.from_bytes(raw[16:20], "big") < 128:  # PNG width: enlarge small images crisply
        cls = "thumb small"
    data = base64.b64encode(raw).decode("ascii")
    return f"<img class='{cls}' alt='{_esc(alt)}' src='data:image/png;base64,{data}'>"


def _section(title: str, inner: str, anchor: str | None = None) -> str:
    ident = f" id='{_esc(anchor)}'" if anchor else ""
    return f"<section{ident}><h2>{_esc(title)}</h2>\n{inner}\n</section>"



def _read_text(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8")
    except OSError:
        return None


_PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; img-src data:; style-src 'unsafe-inline'; script-src 'unsafe-inline'">
<title>{title}</title>
<style>{css}</style></head>
<body>
{body}
<script>{script}</script>
</body></html>
"""

# Sets <body data-images-loaded="OK/TOTAL"> once every image has loaded or failed (tests read it).
_SCRIPT = """
window.addEventListener("load", function () {
  var imgs = document.images, ok = 0;
  for (var i = 0; i < imgs.length; i++) { if (imgs[i].complete && imgs[i].naturalWidth > 0) ok++; }
  document.body.setAttribute("data-images-loaded", ok + "/" + imgs.length);
});
"""

_CSS = """
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: #222; margin: 24px auto; max-width: 1150px; padding: 0 16px; }
h1 { font-size: 22px; margin: 0 0 12px; } h2 { font-size: 18px; border-bottom: 1px solid #ddd; padding-bottom: 4px; margin-top: 28px; }
h3 { font-size: 15px; margin: 18px 0 6px; }
table { border-collapse: collapse; margin: 6px 0; } th, td { padding: 3px 10px; border-bottom: 1px solid #eee; text-align: left; }
th { background: #f6f6f6; font-weight: 600; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
tr.avg td { font-style: italic; border-top: 2px solid #ddd; }
table.summary th { width: 160px; }
img.wide { max-width: 100%; height: auto; border: 1px solid #eee; }
.gallery { display: flex; flex-wrap: wrap; gap: 10px; }
figure { margin: 0; width: 140px; font-size: 12px; }
img.thumb, .thumb.missing { width: 128px; height: 128px; object-fit: contain; background: #fafafa; border: 1px solid #ddd; display: block; }
img.thumb.small { image-rendering: pixelated; }
img.thumb.pair { width: 268px; } figure:has(img.pair) { width: 272px; }
.true { color: #1a7f37; } .pred { color: #b42318; } .path { color: #666; word-break: break-all; }
.note { color: #666; } .warn { color: #9a6700; }
pre.recipe { background: #f6f6f6; padding: 10px; overflow-x: auto; font-size: 12px; }
code { background: #f3f3f3; padding: 0 3px; }
"""
