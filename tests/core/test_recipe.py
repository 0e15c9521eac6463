"""Recipe loading, overrides, defaults and one-line errors."""

from __future__ import annotations

import pytest
import yaml

from resnet_tl.errors import UserError
from resnet_tl.recipe import (
    Recipe,
    build_recipe,
    dump_recipe,
    load_recipe,
    parse_override,
    recipe_summaries,
    shipped_recipes,
)

SHIPPED = ("quickstart", "two-phase", "gradual", "linear-probe", "full-finetune", "small-images", "mobile")


def test_defaults_are_complete_and_valid():
    r = Recipe()
    assert r.model.backbone == "resnet50"
    assert [p.train for p in r.schedule] == ["head", ["conv5", "head"]]
    assert r.schedule[1].lr == pytest.approx(r.schedule[0].lr / 10)


def test_precedence_defaults_recipe_flags(tmp_path):
    f = tmp_path / "r.yaml"
    f.write_text("model: {backbone: resnet34}\ntrain: {batch_size: 8}\n")
    r = load_recipe(str(f), ["train.batch_size=4", "schedule.0.epochs=3", "schedule.1.lr=1e-5"])
    assert r.model.backbone == "resnet34"          # recipe beats default
    assert r.train.batch_size == 4                 # flag beats recipe
    assert r.schedule[0].epochs == 3               # list index into the default schedule
    assert r.schedule[1].lr == pytest.approx(1e-5)  # '1e-5' read as a number
    assert r.data.image_size == 64                 # untouched default
    assert r.name == "r"


def test_data_flag_is_a_string_and_wins(tmp_path):
    r = load_recipe("quickstart", ["data.dir=elsewhere"], data_dir="2024")
    assert r.data.dir == "2024"


def test_dump_round_trips(tmp_path):
    r = load_recipe("gradual", ["model.head.hidden=[64, 32]"])
    f = tmp_path / "recipe.yaml"
    f.write_text(dump_recipe(r))
    assert load_recipe(str(f)) == r


@pytest.mark.parametrize(
    "overrides, needle",
    [
        (["model.backbone=resnet5"], "model.backbone: received 'resnet5'"),
        (["data.img_size=32"], "unknown key 'data.img_size'"),
        (["data.img_size=32"], "did you mean 'image_size'"),
        (["train.batch_size=0"], "train.batch_size: received 0"),
        (["data.val_split=1.5"], "data.val_split: received 1.5"),
        (["schedule.0.trian=head"], "did you mean 'train'"),
        (["schedule.7.epochs=1"], "schedule.7"),
        (["train.precision=fp16"], "'mixed_float16'"),
        (["nonsense"], "--set 'nonsense': received no '='"),
    ],
)
def test_errors_name_key_value_and_allowed(overrides, needle):
    with pytest.raises(UserError) as e:
        load_recipe("quickstart", overrides)
    assert needle in str(e.value)


def test_every_error_is_one_line_each():
    with pytest.raises(UserError) as e:
        build_recipe({"data": {"img_size": 1}, "train": {"batch_size": -1}})
    lines = str(e.value).splitlines()
    assert len(lines) == 2 and all("recipe:" in line for line in lines)


def test_yaml_errors_and_missing_files(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("data: [unclosed\n")
    with pytest.raises(UserError, match="not valid YAML"):
        load_recipe(str(bad))
    lst = tmp_path / "list.yaml"
    lst.write_text("- 1\n- 2\n")
    with pytest.raises(UserError, match="received a list"):
        load_recipe(str(lst))
    with pytest.raises(UserError, match="not found"):
        load_recipe(str(tmp_path / "missing.yaml"))
    with pytest.raises(UserError, match="did you mean 'quickstart'"):
        load_recipe("quikstart")


def test_safe_load_only(tmp_path):
    f = tmp_path / "evil.yaml"
    f.write_text("name: !!python/object/apply:os.system ['echo pwned']\n")
    with pytest.raises(UserError, match="not valid YAML"):
        load_recipe(str(f))


def test_parse_override_values():
    assert parse_override("a.b=3") == (["a", "b"], 3)
    assert parse_override("a=[conv5, head]") == (["a"], ["conv5", "head"])
    assert parse_override("a=null") == (["a"], None)
    assert parse_override("a=resnet18") == (["a"], "resnet18")


def test_every_shipped_recipe_loads_and_says_when_to_use_it():
    assert set(SHIPPED) <= set(shipped_recipes())
    for row in recipe_summaries():
        assert row["description"], f"{row['name']} has no opening comment"
        load_recipe(row["name"])


def test_gradual_shorthand_validates_its_own_keys():
    with pytest.raises(UserError, match=r"schedule\.0\.gradual\.stp.*did you mean 'stop'"):
        build_recipe({"schedule": [{"gradual": {"stp": "conv2"}}]})
    r = build_recipe({"schedule": [{"gradual": {"start": "conv5"}}, {"epochs": 1}]})
    assert yaml.safe_load(dump_recipe(r))["schedule"][0]["gradual"]["start"] == "conv5"


def test_small_images_follows_the_papers_cifar_schedule():
    # He et al. 2016, section 4.2: batch 128, lr 0.1 divided by 10 at 32k and 48k
    # iterations, 64k in all, on a 45k-image training split. Shipped at 30 epochs; the paper's length is one --set.
    r = load_recipe("small-images", ["train.epochs=182"])
    assert r.model.backbone == "resnet20" and r.data.image_size == 32 and r.train.batch_size == 128
    iterations_per_epoch = 45_000 / 128
    ends = [sum(p.epochs for p in r.schedule[:i + 1]) * iterations_per_epoch for i in range(len(r.schedule))]
    assert [round(e, -3) for e in ends] == [32_000, 48_000, 64_000]
    assert [p.lr for p in r.schedule] == pytest.approx([0.1, 0.01, 0.001])
    for p in r.schedule:
        assert (p.optimizer, p.momentum, p.decay, p.warmup_epochs, p.train) == ("sgd", 0.9, "constant", 0, "all")
        # Decoupled decay equivalent to the paper's L2 1e-4 under momentum 0.9: 1e-4 / (1 - 0.9).
        assert p.weight_decay == pytest.approx(1e-4 / (1 - p.momentum))


def test_train_epochs_scales_the_schedule_in_proportion():
    from resnet_tl.recipe_schema import scaled_epochs

    # The paper's 91/45/46 at 30 epochs: boundaries at round(91/182 x 30) = 15 and round(136/182 x 30) = 22.
    assert scaled_epochs([91, 45, 46], 30) == [15, 7, 8]
    assert scaled_epochs([91, 45, 46], 182) == [91, 45, 46]
    assert scaled_epochs([15, 7, 8], 30) == [15, 7, 8]  # a stored, scaled recipe reloads unchanged
    assert scaled_epochs([100, 1, 1], 3) == [1, 1, 1]  # every phase keeps at least one epoch
    assert scaled_epochs([3, 1], 8) == [6, 2]  # longer than written, too
    shipped = load_recipe("small-images")
    assert [p.epochs for p in shipped.schedule] == [15, 7, 8] and shipped.train.epochs == 30
    for paper in ("train.epochs=182", "train.epochs=null"):
        assert [p.epochs for p in load_recipe("small-images", [paper]).schedule] == [91, 45, 46]
    stored = yaml.safe_load(dump_recipe(shipped))
    assert [p["epochs"] for p in stored["schedule"]] == [15, 7, 8]
    assert build_recipe(stored) == shipped  # what a resumed run reloads


def test_train_epochs_errors_name_the_key_and_what_is_allowed():
    with pytest.raises(UserError, match=r"train\.epochs: received 2; allowed: at least 3, one per phase"):
        load_recipe("small-images", ["train.epochs=2"])
    with pytest.raises(UserError, match=r"train\.epochs: received 4; a schedule with a 'gradual' item cannot be scaled"):
        load_recipe("gradual", ["train.epochs=4"])
    with pytest.raises(UserError, match=r"train\.epochs"):
        load_recipe("small-images", ["train.epochs=0"])
