"""Every figure of issue 23 beside its peer, on one GPU, into one JSON: `python3 benchmarks/gpu/bench_gpu.py --out DIR`.

resnet-tl is driven only through its command line (`python3 -m resnet_tl ... --json`, KERAS_BACKEND=jax)
and the PyTorch peers through torch_peers.py beside this file, each in a process of its own, so JAX and
torch never hold the GPU at once and every compilation is paid inside the process that uses it. Sections
run in order of importance inside a time budget (--budget-s); one that no longer fits is recorded as
skipped, with the reason, and can be run alone later with --sections. DIR receives gpu.json (rewritten
after every section, so a run cut short keeps what it measured), gpu.md (the side-by-side table) and
bench_gpu.log (every command, its exit status, time and the end of its stderr).

--dry-run runs every section at toy sizes on the CPU (the test suite does, so the script cannot rot);
its numbers are not performance figures. README.md beside this file says how to run it on the GPU
machine, what each figure means and its goal.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from dataclasses import asdict, dataclass, replace
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path

from jpegs import make_jpegs
from report import comparisons, markdown

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
NO_AUG = ("data.augment.rotation=0", "data.augment.zoom=0")  # the two-phase recipe keeps its flip
# Training FLOP per image (forward + backward = 3 x forward, 2 FLOP per multiply-add) at the given side:
# ResNet-50 24.6 GFLOP at 224 px (issue 23); CIFAR ResNet-8 (the dry run's) 3 x 2 x 12.2 M MACs at 32 px, its
# convolutions counted as for the published ResNet-20 figure, 40.8 M (He et al. 2016): stem 0.44 M, then 4.72 M,
# 3.54 M, 3.54 M per stage (the same count gives ResNet-20 40.6 M). One row per backbone a SIZES entry trains.
TRAIN_FLOP = {"resnet50": (224, 24.6e9), "resnet8": (32, 0.0733e9)}
GRACE_S = 100  # a command started inside the budget may run this far past it, never further


@dataclass(frozen=True)
class Sizes:
    """What one mode measures; `sets` are resnet-tl --set overrides of every bench."""

    backbone: str  # resnet-tl's, for the step, inference, end-to-end and folder figures
    torch_arch: str  # torchvision's of the same depth
    image_size: int
    batch: int
    steps: int  # timed steps; bench adds its own 2 warm-up steps
    aug_steps: int
    precision: str
    sets: tuple[str, ...]
    quickstart_sets: tuple[str, ...]
    quickstart_on_generated: bool  # False: the recipe's own data/sample
    train_images: int  # generated JPEGs for the end-to-end run
    classes: int
    e2e_batch: int
    e2e_epochs: int
    predict_images: int
    predict_batch: int  # the peer's; resnet-tl predict runs with its own default
    torch_compile: str  # torch.compile backend
    budget_s: float  # no section starts after this (see GRACE_S)
    xla_flags: str = ""  # added to XLA_FLAGS of every resnet-tl process
    jpeg_wh: tuple[int, int] = (500, 375)


GPU = Sizes(backbone="resnet50", torch_arch="resnet50", image_size=224, batch=256, steps=20, aug_steps=5, precision="mixed_bfloat16",
            sets=(), quickstart_sets=(), quickstart_on_generated=False, train_images=4000, classes=4, e2e_batch=128, e2e_epochs=4,
            predict_images=20_000, predict_batch=256, torch_compile="inductor", budget_s=450.0)
SIZES = {
    "gpu": GPU,
    # resnet8 is the smallest backbone; torch has none, so its peers use resnet18. The XLA flags halve the
    # CPU compile time that is most of a toy run; aot_eager traces as inductor does, without its C++ build.
    # The quickstart runs name mixed_bfloat16, what `auto` picks on an NVIDIA GPU of compute capability
    # >= 8.0 (precision.PRECISION_RULES), so the precision section reuses one of them as it does there.
    "dry-run": replace(GPU, backbone="resnet8", torch_arch="resnet18", image_size=16, batch=4, steps=2, aug_steps=2,
                       sets=("model.backbone=resnet8",), quickstart_on_generated=True,
                       quickstart_sets=("model.backbone=resnet8", "data.image_size=16", "schedule.0.epochs=3", "train.batch_size=8",
                                        "train.precision=mixed_bfloat16"),
                       train_images=40, e2e_batch=8, e2e_epochs=3, predict_images=40, predict_batch=8, torch_compile="aot_eager",
                       budget_s=1800.0, xla_flags="--xla_backend_optimization_level=0 --xla_llvm_disable_expensive_passes=true"),
}


class Bench:
    """Where things go, the clock, and one way to run a command."""

    def __init__(self, args, sizes: Sizes):
        self.args, self.s = args, sizes
        self.out = Path(args.out)
        self.out.mkdir(parents=True, exist_ok=True)
        self.work = Path(tempfile.mkdtemp(prefix="bench_gpu_", dir=args.work))
        self.log_file = open(self.out / "bench_gpu.log", "w", buffering=1)
        self.t0 = time.monotonic()
        self.doc = {"schema": 1, "mode": args.mode, "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                    "budget_s": sizes.budget_s, "sizes": asdict(sizes), "sections": {}, "comparisons": []}
        self.figures: dict[str, dict] = {}
        self.e2e_run: str | None = None  # the e2e_train section's run folder, which predict_folder uses

    def left(self) -> float:
        """Seconds of the budget left for starting sections."""
        return self.s.budget_s - (time.monotonic() - self.t0)

    def log(self, text: str) -> None:
        self.log_file.write(f"[{time.monotonic() - self.t0:7.1f}s] {text}\n")

    def run(self, cmd: list[str], limit: float, env: dict | None = None) -> dict:
        """Run `cmd` in its own process group, killed with its children after `limit` s (never past the budget + GRACE_S)."""
        limit = max(1.0, min(limit, self.left() + GRACE_S))
        self.log("$ " + " ".join(map(str, cmd)) + f"   (limit {limit:.0f} s)")
        t = time.monotonic()
        p = subprocess.Popen([str(c) for c in cmd], cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True, start_new_session=True)
        try:
            so, se = p.communicate(timeout=limit)
            timed_out = False
        except subprocess.TimeoutExpired:
            kill_group(p.pid)
            so, se = p.communicate()
            timed_out = True
        finally:
            kill_group(p.pid)  # also what the command left running (DataLoader or compile workers)
        r = {"cmd": " ".join(map(str, cmd)), "rc": p.returncode, "seconds": round(time.monotonic() - t, 2), "timed_out": timed_out,
             "warnings": warnings_in(se)}
        self.log(f"  rc {p.returncode}, {r['seconds']} s{' (timed out)' if timed_out else ''}\n  stderr tail: {se[-3000:]}"
                 + ("" if p.returncode == 0 else f"\n  stdout tail: {so[-2000:]}"))
        r["stdout"] = so
        return r

    def env(self) -> dict:
        """resnet-tl's environment: JAX, this checkout first on the path, its user cache (XDG_CACHE_HOME) empty in the work dir."""
        e = dict(os.environ, KERAS_BACKEND="jax", PYTHONUNBUFFERED="1", XDG_CACHE_HOME=str(self.work / "xdg-cache"),
                 PYTHONPATH=os.pathsep.join([str(ROOT)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]))
        if self.s.xla_flags:
            e["XLA_FLAGS"] = (e.get("XLA_FLAGS", "") + " " + self.s.xla_flags).strip()
        return e

    def json_of(self, cmd: list[str], limit: float, runs: list, env: dict | None = None) -> dict:
        """The one JSON document `cmd` prints; raises with the command's end of stderr if it failed."""
        r = self.run(cmd, limit, env or self.env())
        runs.append({k: v for k, v in r.items() if k != "stdout"})
        if r["timed_out"] or r["rc"] != 0:
            raise RuntimeError(f"{'timed out' if r['timed_out'] else 'exit ' + str(r['rc'])}: {r['cmd'][:300]} (see bench_gpu.log)")
        return json.loads(r["stdout"])

    def tl(self, *args, limit: float, runs: list, subprocess_: bool = False) -> dict:
        """The JSON report of `resnet-tl ARGS --json`: in a process of its own, or (--dry-run) in this one."""
        argv = [str(a) for a in (*args, "--json")]
        if self.args.in_process and not subprocess_:
            return self.json_in_process(argv, runs)
        return self.json_of([sys.executable, "-m", "resnet_tl", *argv], limit, runs)

    def json_in_process(self, argv: list[str], runs: list) -> dict:
        """--dry-run only; the one place this script imports resnet_tl. The same command line goes through
        resnet-tl's console entry point (pyproject's [project.scripts] resnet-tl = resnet_tl.cli:main) in
        this process, so Keras and JAX load once and their many small compilations are shared by every
        command: a toy run's cost is those, not its arithmetic. The GPU run never takes this path."""
        from resnet_tl.cli import main as resnet_tl_main

        self.log("in process: resnet-tl " + " ".join(argv))
        so, se, rc, t, saved = io.StringIO(), io.StringIO(), 0, time.monotonic(), sys.argv
        sys.argv = ["resnet-tl", *argv]
        try:
            with contextlib.redirect_stdout(so), contextlib.redirect_stderr(se):
                resnet_tl_main()
        except SystemExit as e:
            rc = e.code if isinstance(e.code, int) else int(e.code is not None)
        except Exception:  # noqa: BLE001 - reported like a failed process
            se.write(traceback.format_exc())
            rc = 1
        finally:
            sys.argv = saved
        r = {"cmd": "resnet-tl " + " ".join(argv), "rc": rc, "seconds": round(time.monotonic() - t, 2), "timed_out": False,
             "warnings": warnings_in(se.getvalue()), "in_process": True}
        runs.append(r)
        self.log(f"  rc {rc}, {r['seconds']} s\n  stderr tail: {se.getvalue()[-3000:]}")
        if rc != 0:
            raise RuntimeError(f"exit {rc}: {r['cmd'][:300]} (see bench_gpu.log)")
        return json.loads(so.getvalue())

    def torch(self, *args, limit: float, runs: list) -> dict:
        return self.json_of([sys.executable, HERE / "torch_peers.py", *args], limit, runs, dict(os.environ, PYTHONUNBUFFERED="1"))

    def save(self) -> None:
        self.doc["seconds"] = round(time.monotonic() - self.t0, 1)
        self.doc["comparisons"] = comparisons(self.figures)
        for name, text in (("gpu.json", json.dumps(self.doc, indent=1)), ("gpu.md", markdown(self.doc))):
            tmp = self.out / f".{name}.tmp"
            tmp.write_text(text + "\n")
            os.replace(tmp, self.out / name)


def kill_group(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def warnings_in(stderr: str, most: int = 8) -> list[str]:
    """Distinct warning lines of a command's stderr (e.g. Keras falling back from jit_compile), first `most`."""
    lines = (line.strip() for line in stderr.splitlines())
    seen = dict.fromkeys(line[:300] for line in lines if "warning" in line.lower() and not line.startswith("warnings.warn(")
                         and "absl::InitializeLog" not in line)
    return list(seen)[:most]


def sets(*overrides: str) -> list[str]:
    return [a for o in overrides for a in ("--set", o)]


def train_jpegs(b: Bench) -> Path:
    root = b.work / "jpegs-train"
    if not root.exists():
        b.doc["train_jpegs"] = make_jpegs(root, b.s.train_images, b.s.classes, b.s.jpeg_wh, 0)
    return root


def sh(*cmd: str) -> str | None:
    """A quick command's stdout, or None where it is missing or fails."""
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=30).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


GPU_STATE = ("nvidia-smi", "--query-gpu=clocks.sm,clocks.mem,temperature.gpu,power.draw,clocks_throttle_reasons.active", "--format=csv")


# ---------------------------------------------------------------- sections
def sec_machine(b: Bench, runs: list) -> dict:
    smi = sh("nvidia-smi")
    cuda = next((line.split("CUDA Version:")[1].split()[0] for line in (smi or "").splitlines() if "CUDA Version:" in line), None)
    names = ("jax", "jaxlib", "jax-cuda13-plugin", "jax-cuda12-plugin", "keras", "numpy", "pillow", "torch", "torchvision",
             "triton", "nvidia-cudnn-cu13", "nvidia-cudnn-cu12", "pydantic", "typer")
    versions = {}
    for n in names:
        try:
            versions[n] = metadata.version(n)
        except metadata.PackageNotFoundError:
            pass
    cpuinfo = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    info = b.tl("info", limit=120, runs=runs, subprocess_=True)  # a real process in every mode: the GPU run's path stays tested
    return {"date": datetime.now(timezone.utc).isoformat(timespec="seconds"), "python": platform.python_version(),
            "kernel": platform.release(), "cpu_model": next((l.split(":", 1)[1].strip() for l in cpuinfo.splitlines() if l.startswith("model name")), None),
            "cpus": os.cpu_count(), "cpus_usable": len(os.sched_getaffinity(0)), "gpu": sh("nvidia-smi", "--query-gpu=name,driver_version,memory.total,clocks.max.sm,power.limit", "--format=csv,noheader"),
            "cuda_driver_api": cuda, "nvidia_smi": smi, "gpu_state_before": sh(*GPU_STATE), "versions": versions, "resnet_tl_info": info,
            "dev_shm_gib": round(shutil.disk_usage("/dev/shm").total / 2**30, 1) if Path("/dev/shm").exists() else None,  # DataLoader workers pass batches there
            "commit": sh("git", "-C", str(ROOT), "rev-parse", "HEAD"), "dirty": bool(sh("git", "-C", str(ROOT), "status", "--porcelain", "--untracked-files=no"))}


def bench_args(s: Sizes, steps: int, precision: str) -> list:
    return ["bench", "two-phase", "--steps", steps, "--batch-size", s.batch, "--precision", precision, *sets(*s.sets, f"data.image_size={s.image_size}")]


def sec_train_step(b: Bench, runs: list) -> dict:
    s = b.s
    doc = b.tl(*bench_args(s, s.steps, s.precision), "--peer", *sets(*NO_AUG), limit=300, runs=runs)
    r = doc["results"][0]
    fig = {"train_images_per_s": r["train_images_per_s"], "keras_fit_images_per_s": r["peer_train_images_per_s"],
           "inference_images_per_s": r["inference_images_per_s"], "input_images_per_s": doc["input_images_per_s"]}
    ref = TRAIN_FLOP.get(s.backbone)
    if ref and b.args.peak_tflops:
        flop = ref[1] * (s.image_size / ref[0]) ** 2
        fig["ceiling_images_per_s"] = round(b.args.peak_tflops * 1e12 / flop, 1)
        doc["ceiling"] = {"train_flop_per_image": flop, "peak_tflops": b.args.peak_tflops}
    return {"figures": fig, "bench": doc}


def sec_augmentation(b: Bench, runs: list) -> dict:
    doc = b.tl(*bench_args(b.s, b.s.aug_steps, b.s.precision), limit=240, runs=runs)
    return {"figures": {"train_images_per_s": doc["results"][0]["train_images_per_s"]}, "augment": "two-phase recipe's own: flip, rotation 0.05, zoom 0.1", "bench": doc}


def torch_step(b: Bench, runs: list, compile_: str, modes: list[str], limit: float) -> dict:
    s = b.s
    doc = b.torch("step", "--arch", s.torch_arch, "--size", s.image_size, "--batch", s.batch, "--steps", max(s.steps, 3),
                  "--modes", *modes, "--compile", compile_, limit=limit, runs=runs)
    fig = {f"{m}_images_per_s": r["images_per_s"] for m, r in doc["results"].items() if m in ("train", "infer")}
    fig.update({f"{m}_first_call_s": r["first_call_s"] for m, r in doc["results"].items()})
    return {"figures": fig, "torch": doc}


def sec_torch_eager(b, runs):
    return torch_step(b, runs, "none", ["train", "infer"], 180)


def sec_torch_compile_train(b, runs):
    return torch_step(b, runs, b.s.torch_compile, ["train"], 300)


def sec_torch_compile_infer(b, runs):
    return torch_step(b, runs, b.s.torch_compile, ["infer"], 200)


def history_seconds(run_dir: str) -> list[float]:
    import csv

    with open(Path(run_dir) / "history.csv", newline="") as f:
        return [float(r["seconds"]) for r in csv.DictReader(f)]


def quickstart_run(b: Bench, runs: list, name: str, *extra: str) -> dict:
    data = ["--data", str(train_jpegs(b))] if b.s.quickstart_on_generated else []
    t = time.monotonic()
    doc = b.tl("train", "quickstart", "--out", b.work / "runs", "--name", name, *data, *sets(*b.s.quickstart_sets, *extra), limit=200, runs=runs)
    wall = time.monotonic() - t
    ep = history_seconds(doc["run_dir"])
    steady = statistics.median(ep[1:])
    return {"process_s": round(wall, 2), "train_s": doc["seconds"], "epoch_s": ep, "first_epoch_s": ep[0], "steady_epoch_s": steady,
            "first_over_steady": round(ep[0] / steady, 2), "val_accuracy": doc["metrics"]["accuracy"], "precision": doc["precision"],
            "run_dir": doc["run_dir"]}


def sec_quickstart(b: Bench, runs: list) -> dict:
    first = quickstart_run(b, runs, "quickstart-1")
    second = quickstart_run(b, runs, "quickstart-2")
    fig = {f"run{i}_{k}": r[k] for i, r in ((1, first), (2, second)) for k in ("process_s", "first_epoch_s", "steady_epoch_s")}
    return {"figures": fig, "runs": [first, second]}


def sec_precision(b: Bench, runs: list) -> dict:
    """float16 against bfloat16: the training step's speed (bench) and the quickstart's validation accuracy."""
    fp16 = b.tl(*bench_args(b.s, b.s.steps, "mixed_float16"), *sets(*NO_AUG), limit=240, runs=runs)
    fig = {"float16_train_images_per_s": fp16["results"][0]["train_images_per_s"]}
    reused = b.doc["sections"].get("quickstart", {}).get("result", {}).get("runs", [])[-1:]  # identical seeds: a run in the same precision is reused
    detail = {}
    for p, key in (("mixed_float16", "float16"), ("mixed_bfloat16", "bfloat16")):
        r = next((q for q in reused if q["precision"] == p), None) or quickstart_run(b, runs, f"quickstart-{key}", f"train.precision={p}")
        fig[f"{key}_val_accuracy"] = r["val_accuracy"]
        fig[f"{key}_steady_epoch_s"] = r["steady_epoch_s"]
        detail[key] = r
    return {"figures": fig, "quickstart": detail, "bench_float16": fp16}


def sec_e2e_train(b: Bench, runs: list) -> dict:
    s, data = b.s, train_jpegs(b)
    recipe = {"name": "gpu-e2e", "data": {"dir": str(data), "image_size": s.image_size, "val_split": 0.1, "augment": {"flip": "horizontal"}},
              "model": {"backbone": s.backbone, "weights": "none"},
              "schedule": [{"name": "all", "epochs": s.e2e_epochs, "train": "all", "lr": 0.001, "batchnorm": "train"}],
              "train": {"batch_size": s.e2e_batch, "precision": s.precision}}
    path = b.work / "gpu-e2e.yaml"
    path.write_text(json.dumps(recipe, indent=1))  # JSON is YAML
    t = time.monotonic()
    doc = b.tl("train", path, "--out", b.work / "runs", "--name", "e2e", limit=300, runs=runs)
    ep, n = history_seconds(doc["run_dir"]), doc["metrics"]["n_train"]
    steady = statistics.median(ep[1:])
    b.e2e_run = doc["run_dir"]
    return {"figures": {"steady_images_per_s": round(n / steady, 1), "first_epoch_images_per_s": round(n / ep[0], 1),
                        "process_s": round(time.monotonic() - t, 2)},
            "n_train": n, "epoch_s": ep, "recipe": recipe, "note": "an epoch's seconds include its validation pass"}


def count_rows(path: Path) -> int:
    with open(path) as f:
        return sum(1 for _ in f) - 1  # header


def sec_predict_folder(b: Bench, runs: list) -> dict:
    run = b.e2e_run
    if run is None:
        raise RuntimeError("needs the e2e_train section's run folder, which did not complete")
    s, root = b.s, b.work / "jpegs-predict"
    jpegs = make_jpegs(root, s.predict_images, s.classes, s.jpeg_wh, 10_000_000)
    ours_csv, peer_csv = b.work / "ours.csv", b.work / "peer.csv"
    t = time.monotonic()
    ours = b.tl("predict", run, root, "--format", "csv", "--output", ours_csv, limit=300, runs=runs)
    ours_s = time.monotonic() - t
    fig = {"images_per_s": round(s.predict_images / ours_s, 1), "process_s": round(ours_s, 2), "rows": count_rows(ours_csv)}
    out = {"figures": fig, "jpegs": jpegs, "resnet_tl": ours}
    if not have_torch():
        out["peer"] = "not run: torch missing"
        return out
    t = time.monotonic()
    try:
        out["torch"] = b.torch("folder", root, "--arch", s.torch_arch, "--size", s.image_size, "--batch", s.predict_batch,
                               "--classes", s.classes, "--output", peer_csv, limit=300, runs=runs)
    except (RuntimeError, ValueError) as e:  # ours is measured: keep it
        out["peer"] = f"failed: {e}"
        return out
    peer_s = time.monotonic() - t
    fig.update(peer_images_per_s=round(s.predict_images / peer_s, 1), peer_process_s=round(peer_s, 2), peer_rows=count_rows(peer_csv))
    return out


def have_torch() -> bool:
    from importlib.util import find_spec

    return find_spec("torch") is not None


# name, function, needs torch, seconds it needs on the GPU at least (else skipped): in order of importance.
SECTIONS = [  # the GPU run's minutes go first to the headline figures
    ("machine", sec_machine, False, 10),
    ("train_step", sec_train_step, False, 90),
    ("torch_eager", sec_torch_eager, True, 30),
    ("torch_compile_train", sec_torch_compile_train, True, 90),
    ("augmentation", sec_augmentation, False, 60),
    ("quickstart", sec_quickstart, False, 50),
    ("e2e_train", sec_e2e_train, False, 60),
    ("predict_folder", sec_predict_folder, False, 50),
    ("precision", sec_precision, False, 60),
    ("torch_compile_infer", sec_torch_compile_infer, True, 40),
]


def run_section(b: Bench, name: str, fn, needs_torch: bool, min_s: float) -> None:
    entry: dict = {"status": "ok"}
    runs: list = []
    t = time.monotonic()
    if needs_torch and not have_torch():
        entry = {"status": "not run", "reason": "torch missing"}
    elif b.left() < min_s:
        entry = {"status": "skipped", "reason": f"budget: {b.left():.0f} s left of {b.s.budget_s:.0f}, needs about {min_s} s; run it with --sections {name}"}
    else:
        b.log(f"== {name}")
        try:
            entry["result"] = fn(b, runs)
            b.figures[name] = entry["result"].get("figures", {})
        except Exception as e:  # noqa: BLE001 - one failed section must not lose the others' figures
            entry = {"status": "failed", "reason": f"{type(e).__name__}: {e}"[:500]}
            b.log(traceback.format_exc())
    entry.update(seconds=round(time.monotonic() - t, 1), commands=runs)
    b.doc["sections"][name] = entry
    b.save()
    print(f"{name}: {entry['status']} ({entry['seconds']} s) {entry.get('reason', '')}", file=sys.stderr, flush=True)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True, help="Folder for gpu.json, gpu.md and bench_gpu.log.")
    ap.add_argument("--dry-run", dest="mode", action="store_const", const="dry-run", default="gpu", help="Toy sizes on the CPU: checks every section runs.")
    ap.add_argument("--sections", nargs="+", choices=[s[0] for s in SECTIONS], help="Run only these (machine always runs).")
    ap.add_argument("--budget-s", type=float, help=f"Start no section after this many seconds (default: 450 on the GPU); a command runs at most {GRACE_S} s past it.")
    ap.add_argument("--peak-tflops", type=float, default=790.0, help="The GPU's bf16 matrix rate, for the ceiling (H200: 788 measured here).")
    ap.add_argument("--work", help="Where the JPEGs, caches and run folders go (default: the system temp dir); deleted at the end.")
    ap.add_argument("--keep", action="store_true", help="Keep the work folder.")
    ap.add_argument("--subprocesses", action="store_true", help="With --dry-run: run resnet-tl in processes of its own, as on the GPU (minutes on 2 CPUs).")
    args = ap.parse_args(argv)
    args.in_process = args.mode == "dry-run" and not args.subprocesses
    sizes = SIZES[args.mode]
    if args.budget_s:
        sizes = replace(sizes, budget_s=args.budget_s)
    b = Bench(args, sizes)
    if args.in_process:  # what env() gives each resnet-tl process, before this one loads Keras
        os.environ.update({k: v for k, v in b.env().items() if k in ("KERAS_BACKEND", "XDG_CACHE_HOME", "XLA_FLAGS")})
        sys.path.insert(0, str(ROOT))
    wanted = set(args.sections or [s[0] for s in SECTIONS]) | {"machine"}
    try:
        for name, fn, needs_torch, min_s in SECTIONS:
            if name in wanted:
                run_section(b, name, fn, needs_torch, min_s)
    finally:
        b.doc["gpu_state_after"] = sh(*GPU_STATE)  # clocks and throttling after the load: compare with the machine section's
        b.save()
        b.log_file.close()
        if not args.keep:
            shutil.rmtree(b.work, ignore_errors=True)
    print((b.out / "gpu.md").read_text())
    return 0 if all(s["status"] in ("ok", "not run", "skipped") for s in b.doc["sections"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
