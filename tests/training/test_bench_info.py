"""`resnet-tl bench` and `resnet-tl info`, run the way a user runs them."""

from __future__ import annotations

import json

import yaml
from helpers import affinity_capped_by_quota
from typer.testing import CliRunner

from resnet_tl.cli import app
from resnet_tl.training.precision import Device
from resnet_tl.sysinfo import fast_mixed_precision


def test_info_json_names_versions_devices_precision_and_cache():
    res = CliRunner().invoke(app, ["info", "--json"])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert doc["versions"]["keras"] and doc["versions"]["resnet-tl"]
    assert doc["backend"] == "tensorflow"
    assert doc["devices"] and doc["precision_auto"] in ("float32", "mixed_float16", "mixed_bfloat16")
    assert doc["cache_dir"].endswith("resnet-tl")
    from resnet_tl.training.precision import PRECISION_RULES

    rule = next(r for r in PRECISION_RULES if r.name == doc["precision_auto_rule"]["name"])
    assert (rule.precision, rule.why) == (doc["precision_auto"], doc["precision_auto_rule"]["why"])
    cc = doc["compile_cache"]  # TensorFlow's XLA cache, in the cache folder unless the user set TF_XLA_FLAGS
    assert cc["bound_mb"] >= 0 and (cc["folder"] is None or cc["folder"].endswith("tf-xla") or "TF_XLA_FLAGS" in __import__("os").environ)


def test_fast_mixed_precision_by_hardware():
    assert fast_mixed_precision([Device("cpu", "cpu")], {"avx2"}) == []
    assert fast_mixed_precision([Device("cpu", "cpu")], {"avx512_bf16"}) == ["mixed_bfloat16"]
    assert fast_mixed_precision([Device("gpu", "T4", (7, 5))], set()) == ["mixed_float16"]
    assert fast_mixed_precision([Device("gpu", "H100", (9, 0))], set()) == ["mixed_float16", "mixed_bfloat16"]


def test_info_reports_the_cpu_matrix_extensions(tmp_path):
    from resnet_tl.sysinfo import cpu_features, cpu_flags, cpu_model

    fake = tmp_path / "cpuinfo"
    fake.write_text("processor\t: 0\nmodel name\t: Intel(R) Xeon(R) Platinum 8480+\nflags\t\t: fpu avx512f avx512_bf16 amx_bf16 amx_tile amx_int8\n")
    feats = cpu_features(cpu_flags(fake))
    assert feats["amx_bf16"] and feats["amx_tile"] and feats["avx512_bf16"] and not feats["avx512_fp16"]
    assert cpu_model(fake) == "Intel(R) Xeon(R) Platinum 8480+"
    doc = json.loads(CliRunner().invoke(app, ["info", "--json"]).stdout)
    # The real machine, read independently of our parser.
    flags = next(line for line in open("/proc/cpuinfo") if line.startswith("flags")).split()
    assert doc["cpu"]["features"]["amx_bf16"] == ("amx_bf16" in flags)
    assert doc["cpu"]["features"]["avx512_bf16"] == ("avx512_bf16" in flags)
    # The affinity mask capped by the cgroup quota: under `docker --cpus=1` the mask alone said 2.
    assert doc["cpu"]["cpus_usable"] == affinity_capped_by_quota()



def test_bench_json_reports_training_input_and_their_ratio_per_precision(tmp_path):
    recipe = tmp_path / "tiny.yaml"
    recipe.write_text(yaml.safe_dump({"data": {"image_size": 16}, "model": {"backbone": "resnet8"}, "train": {"precision": "float32"}}))
    res = CliRunner().invoke(app, ["bench", str(recipe), "--steps", "2", "--batch-size", "8", "--json",
                                   "--precision", "float32", "--precision", "mixed_bfloat16", "--peer"])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert (doc["backbone"], doc["image_size"], doc["batch_size"], doc["backend"]) == ("resnet8", 16, 8, "tensorflow")
    assert doc["device"] and doc["loader_workers"] >= 1 and doc["input_images_per_s"] > 0
    assert [r["precision"] for r in doc["results"]] == ["float32", "mixed_bfloat16"]
    for r in doc["results"]:
        assert r["train_images_per_s"] > 0 and r["inference_images_per_s"] > 0
        assert r["input_over_train"] == round(doc["input_images_per_s"] / r["train_images_per_s"], 2)
        assert r["limited_by"] == ("input" if r["input_over_train"] < 1 else "compute")
        assert r["peer_train_images_per_s"] is None and r["vs_peer"] is None  # keras.applications has no ResNet-8


def test_bench_rejects_an_unknown_precision_in_one_line():
    res = CliRunner().invoke(app, ["bench", "--precision", "bfloat8"])
    assert res.exit_code == 2
    assert "--precision: received 'bfloat8'; allowed: float32" in res.output and "Traceback" not in res.output


def test_bench_peer_is_the_keras_applications_model_compiled_as_keras_guides_do():
    import keras

    from resnet_tl.training.bench import N_CLASSES, build_peer
    from resnet_tl.training.precision import configure
    from resnet_tl.recipe import build_recipe

    recipe = build_recipe({"data": {"image_size": 32}, "model": {"backbone": "resnet50", "weights": "none"}, "train": {"precision": "float32"}})
    peer = build_peer(recipe, configure(recipe.train))
    reference = keras.applications.ResNet50(weights=None, input_shape=(32, 32, 3), classes=N_CLASSES)
    assert peer.name == reference.name and peer.count_params() == reference.count_params()
    assert [type(layer).__name__ for layer in peer.layers] == [type(layer).__name__ for layer in reference.layers]
    assert type(peer.optimizer) is keras.optimizers.Adam


def test_the_training_step_runs_plain_keras_graph_plus_only_the_input_preprocessing():
    """Our training step (bench.build_trainer, as `train` builds it) traced next to plain
    Keras' (keras.applications ResNet-50 + Adam): op for op the same graph, plus the
    caffe preprocessing on the input (uint8 cast, RGB->BGR flip, per-channel scale and
    offset). Any per-step work we add over the weights (an lr lookup per variable, a
    gradient rescale, a second optimizer) shows up here as hundreds of extra ops."""
    import collections

    import tensorflow as tf

    from resnet_tl.training import bench
    from resnet_tl.training.precision import configure
    from resnet_tl.recipe import build_recipe

    recipe = build_recipe({"data": {"image_size": 32, "augment": {"flip": "none"}},
                           "model": {"backbone": "resnet50", "weights": "none"}, "train": {"precision": "float32", "batch_size": 2}})
    setup = configure(recipe.train)
    x, y = bench.synthetic(2, 32)
    ours, _, batches = bench.build_trainer(recipe, setup, x, y)
    plain = bench.build_peer(recipe, setup)

    def op_types(model, data):
        model.optimizer.build(model.trainable_variables)
        graph = tf.function(model.train_step).get_concrete_function(data).graph
        return collections.Counter(op.type for op in graph.get_operations())

    a = op_types(ours, tuple(tf.constant(t) for t in batches[0]))
    b = op_types(plain, tuple(tf.constant(t) for t in bench.peer_arrays(x, y)))
    heavy = ("Conv2D", "Conv2DBackpropFilter", "Conv2DBackpropInput", "MatMul", "FusedBatchNormV3", "FusedBatchNormGradV3")
    assert sum(b[k] for k in heavy) > 100  # the comparison sees the real step
    assert {k: a[k] for k in heavy} == {k: b[k] for k in heavy}
    extra = {k: a[k] - b[k] for k in a if a[k] > b[k]}
    # The preprocessing's op types (uint8 cast, flip, Rescaling's scale and offset, their constants), at the counts
    # traced with Keras 3.15 / TF 2.21 (+2, +2, +2, +1, +6); Const has slack for constant folding between versions.
    allowed = {"Cast": 2, "Mul": 2, "AddV2": 2, "ReverseV2": 1, "Const": 8}
    assert extra.keys() <= allowed.keys() and all(extra[k] <= allowed[k] for k in extra), extra


def test_bench_table_with_peer_fits_80_columns_untruncated(monkeypatch):
    """The human table (no --json) at a plain terminal's width: no header or cell cut to '…'."""
    import resnet_tl.training.bench

    doc = {"backbone": "resnet50", "image_size": 224, "batch_size": 8, "steps": 5, "device": "cpu", "backend": "tensorflow",
           "jit_compile": False, "distribute": "none", "replicas": 1, "loader_workers": 2, "input_images_per_s": 25622.0,
           "results": [{"precision": "mixed_bfloat16", "train_images_per_s": 6.8, "input_over_train": 3773.0,
                        "limited_by": "compute", "inference_images_per_s": 27.9, "peer_train_images_per_s": 7.0, "vs_peer": 0.97}]}
    monkeypatch.setattr(resnet_tl.training.bench, "benchmark", lambda *a, **k: doc)
    res = CliRunner().invoke(app, ["bench", "--peer"], terminal_width=80)
    assert res.exit_code == 0, res.output
    assert "…" not in res.output and max(len(line) for line in res.output.splitlines()) <= 80
    for text in ("train/s", "input/s", "in/train", "plain/s", "ratio", "mixed_bfloat16", "3,773x", "0.97x", "7.0"):
        assert text in res.output
