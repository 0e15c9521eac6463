"""int8 repair: a model with a quantization-hostile layer, plain int8 vs repaired, in LiteRT.

    PYTHONPATH=. python benchmarks/bench_int8_repair.py [--json out.json]

The model (tests/export/test_int8_repair.py builds the same one): a small CNN
trained on the bars task (16 px), whose output layer then gets one weight of
1e4 on a channel that is always 0 (the float model is unchanged; int8's
per-channel weight scale rounds the layer's other weights to 0). Reports the
debugger's ranking and each attempt: float layers, size, agreement with Keras,
accuracy, latency (one image, LiteRT, 1 thread).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "tests" / "export"))

from helpers import bars_dataset  # noqa: E402
from test_int8_repair import _hostile_model  # noqa: E402

from resnet_tl.export.int8_repair import repair_int8  # noqa: E402
from resnet_tl.export.parity import counts, latency_ms  # noqa: E402
from resnet_tl.formats import tflite  # noqa: E402
from resnet_tl.formats.context import WriteContext  # noqa: E402
from resnet_tl.formats.tflite_metadata import ModelInfo  # noqa: E402
from resnet_tl.sysinfo import cpu_model  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    ds = bars_dataset(n_per_class=48, n_val_per_class=100)
    model = _hostile_model(ds.x_train, ds.y_train)
    ref = model.predict(np.asarray(ds.x_val, np.float32), verbose=0).argmax(1)
    work = Path(tempfile.mkdtemp())
    ctx = WriteContext(model_file=work / "m.keras", float_model=model, image_size=16, labels=["a", "b"],
                       representative=ds.x_train[:64], info=ModelInfo("hostile", "bench", "1", "bench"))

    def check(path: Path) -> dict:
        run, _ = tflite.load(path, 1)
        c = counts(run(ds.x_val).argmax(1), ref, ds.y_val)
        return {"agreement": c["agreement"], "accuracy": c["accuracy"], "latency_ms": latency_ms(run, ds.x_val, 200),
                "passed": c["agreement"] >= 0.97}

    dest = work / "model_int8.tflite"
    tflite.write(ctx, dest, "int8")
    plain = {"float_layers": [], "size_bytes": dest.stat().st_size, **check(dest)}
    t = time.time()
    rep = repair_int8(ctx, dest, check, plain)
    doc = {"date": time.strftime("%Y-%m-%d"), "cpu": cpu_model(), "n_val": len(ds.y_val),
           "keras_accuracy": float(np.mean(ref == ds.y_val)), "repair_seconds": round(time.time() - t, 1), **rep.to_dict()}
    print(json.dumps(doc, indent=1))
    if args.json:
        args.json.write_text(json.dumps(doc, indent=2))


if __name__ == "__main__":
    main()
