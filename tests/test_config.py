"""Config loading: built-in names, paths, `base:` inheritance, `--set` overrides and every error path."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from detect.config import (
    Config,
    builtin_config_names,
    config_to_dict,
    config_to_yaml,
    load_config,
    parse_override,
)
from detect.config.model_sections import MODEL_SECTIONS
from detect.errors import ConfigError

REQUIRED_KEYS = [
    "data.format",
    "data.root",
    "data.train_split",
    "data.val_split",
    "data.classes",
    "model.arch",
    "model.backbone",
    "model.pretrained",
    "train.epochs",
    "train.batch_size",
    "train.lr",
    "train.amp",
]


def write(path: Path, data: dict | str) -> Path:
    path.write_text(data if isinstance(data, str) else yaml.safe_dump(data))
    return path


@pytest.mark.parametrize("name", builtin_config_names())
def test_every_builtin_config_validates(name):
    config = load_config(name)
    assert config.name == name
    assert config.model.arch in MODEL_SECTIONS


def test_builtin_configs_cover_the_named_models():
    names = set(builtin_config_names())
    assert {
        "voc_faster_rcnn",
        "voc_faster_rcnn_resnet50",
        "coco_faster_rcnn",
        "voc_faster_rcnn_fpn",
        "coco_faster_rcnn_fpn",
        "voc_faster_rcnn_mobilenet",
        "voc_faster_rcnn_mobilenet320",
        "synthetic_faster_rcnn",
        "voc_ssd300",
        "voc_ssd300_coco",
        "voc_ssd512",
        "coco_ssd300",
        "synthetic_ssd",
        "synthetic_ssdlite",
        "voc_ssdlite320",
        "coco_ssdlite320",
    } <= names


@pytest.mark.parametrize("dotted", REQUIRED_KEYS)
def test_required_keys_exist(dotted):
    data = config_to_dict(Config())
    for part in dotted.split("."):
        assert part in data, dotted
        data = data[part]


def test_path_to_yaml_works_from_any_directory(tmp_path, monkeypatch):
    path = write(tmp_path / "mine.yaml", {"train": {"epochs": 3}})
    monkeypatch.chdir(tmp_path.parent)
    config = load_config(str(path))
    assert config.train.epochs == 3
    assert config.name == "mine"


def test_base_inheritance_merges_sections(tmp_path):
    write(tmp_path / "parent.yaml", {"train": {"epochs": 5, "lr": 0.1}, "model": {"backbone": "resnet50"}})
    child = write(tmp_path / "child.yaml", {"base": "parent.yaml", "train": {"lr": 0.5}})
    config = load_config(str(child))
    assert config.train.epochs == 5  # from the base
    assert config.train.lr == 0.5  # the child wins
    assert config.model.backbone == "resnet50"


def test_base_may_name_a_builtin_config(tmp_path):
    child = write(tmp_path / "child.yaml", {"base": "voc_ssd300", "train": {"epochs": 2}})
    config = load_config(str(child))
    assert config.model.arch == "ssd" and config.input.size == 300 and config.train.epochs == 2


def test_builtin_inheritance_resolves():
    config = load_config("voc_ssd512")
    assert config.input.size == 512
    assert config.data.classes is not None and len(config.data.classes) == 20


def test_only_one_level_of_base(tmp_path):
    write(tmp_path / "a.yaml", {"train": {"epochs": 1}})
    write(tmp_path / "b.yaml", {"base": "a.yaml"})
    c = write(tmp_path / "c.yaml", {"base": "b.yaml"})
    with pytest.raises(ConfigError, match="only one level"):
        load_config(str(c))


def test_overrides_are_parsed_as_yaml():
    config = load_config(
        "voc_faster_rcnn",
        ["train.epochs=20", "data.classes=[a, b]", "train.lr=1e-3", "train.amp=false", "data.root=/x/y"],
    )
    assert config.train.epochs == 20
    assert config.data.classes == ["a", "b"]
    assert config.train.lr == pytest.approx(1e-3)
    assert config.train.amp is False
    assert config.data.root == "/x/y"


def test_override_null_and_nested_section():
    config = load_config("voc_faster_rcnn", ["data.classes=null", "model.rpn.nms_thresh=0.6"])
    assert config.data.classes is None
    assert config.model.rpn.nms_thresh == pytest.approx(0.6)


def test_later_override_wins():
    config = load_config("synthetic_ssd", ["train.epochs=3", "train.epochs=4"])
    assert config.train.epochs == 4


def test_unknown_key_names_key_file_and_nearest(tmp_path):
    path = write(tmp_path / "typo.yaml", {"train": {"epoch": 3}})
    with pytest.raises(ConfigError) as info:
        load_config(str(path))
    message = str(info.value)
    assert "train.epoch" in message and str(path) in message and "train.epochs" in message
    assert "\n" not in message


def test_unknown_key_from_override_names_the_override():
    with pytest.raises(ConfigError) as info:
        load_config("voc_faster_rcnn", ["model.backbon=resnet50"])
    message = str(info.value)
    assert "model.backbon" in message and "--set model.backbon=resnet50" in message
    assert "model.backbone" in message


def test_unknown_top_level_section(tmp_path):
    path = write(tmp_path / "x.yaml", {"trian": {"epochs": 3}})
    with pytest.raises(ConfigError, match="unknown key 'trian'.*did you mean 'train'"):
        load_config(str(path))


def test_wrong_type_names_key_and_file(tmp_path):
    path = write(tmp_path / "bad.yaml", {"train": {"batch_size": "many"}})
    with pytest.raises(ConfigError) as info:
        load_config(str(path))
    assert "train.batch_size" in str(info.value) and str(path) in str(info.value)


def test_bad_choice_lists_what_is_allowed():
    with pytest.raises(ConfigError) as info:
        load_config("voc_faster_rcnn", ["data.format=pascal"])
    message = str(info.value)
    assert "data.format" in message and "voc" in message and "coco" in message and "synthetic" in message


def test_normalize_on_defaults_to_device_and_takes_loader():
    assert load_config("voc_faster_rcnn").input.normalize_on == "device"
    assert load_config("voc_ssd300", ["input.normalize_on=loader"]).input.normalize_on == "loader"
    with pytest.raises(ConfigError) as info:
        load_config("voc_ssd300", ["input.normalize_on=gpu"])
    message = str(info.value)
    assert "input.normalize_on" in message and "device" in message and "loader" in message


def test_out_of_range_value():
    with pytest.raises(ConfigError, match="train.epochs"):
        load_config("voc_faster_rcnn", ["train.epochs=0"])


def test_error_in_base_names_the_base_file(tmp_path):
    base = write(tmp_path / "base.yaml", {"model": {"arch": "yolo"}})
    child = write(tmp_path / "child.yaml", {"base": "base.yaml"})
    with pytest.raises(ConfigError) as info:
        load_config(str(child))
    assert str(base) in str(info.value) and "model.arch" in str(info.value)


def test_missing_config_suggests_nearest():
    with pytest.raises(ConfigError, match="did you mean 'voc_faster_rcnn'"):
        load_config("voc_faster_rnn")


def test_invalid_yaml_names_file_and_line(tmp_path):
    path = write(tmp_path / "broken.yaml", "train:\n  epochs: [1,\n")
    with pytest.raises(ConfigError) as info:
        load_config(str(path))
    assert str(path) in str(info.value) and "invalid YAML" in str(info.value)


def test_non_mapping_yaml(tmp_path):
    path = write(tmp_path / "list.yaml", "- 1\n- 2\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_config(str(path))


@pytest.mark.parametrize("text", ["train.epochs", "=3", "train..epochs=3"])
def test_malformed_override(text):
    with pytest.raises(ConfigError, match="key.sub=value"):
        parse_override(text)


def test_yaml_round_trip_of_resolved_config():
    config = load_config("voc_faster_rcnn_resnet50", ["train.epochs=7"])
    again = Config.model_validate(yaml.safe_load(config_to_yaml(config)))
    assert again == config


def test_a_config_that_is_not_utf8_is_one_line_naming_file_and_line(tmp_path, capsys):
    from detect.cli import main

    path = tmp_path / "latin1.yaml"
    path.write_bytes("base: synthetic_ssd\ntrain:\n  epochs: 2  # caf\u00e9\n".encode("latin-1"))
    with pytest.raises(SystemExit) as exited:
        main(["config", "show", str(path)])
    assert exited.value.code == 2
    assert capsys.readouterr().err == f"error: {path}:3: not UTF-8 text (byte 0xe9); save the config as UTF-8\n"
@pytest.mark.parametrize(
    ("override", "key", "words"),
    [
        ("train.clip_grad_norm=-1", "train.clip_grad_norm", "greater than 0"),
        ("train.clip_grad_norm=0", "train.clip_grad_norm", "greater than 0"),
        ("train.lr=inf", "train.lr", "finite"),
        ("train.lr=1e400", "train.lr", "finite"),
        ("train.lr=0", "train.lr", "greater than 0"),
        ("model.rpn.loss_box_weight=.nan", "model.rpn.loss_box_weight", "finite"),
        ("model.roi_heads.loss_box_weight=-1", "model.roi_heads.loss_box_weight", "greater than or equal"),
        ("train.epochs=true", "train.epochs", "boolean"),
        ("train.momentum=false", "train.momentum", "boolean"),
        ("input.size=100000", "input.size", "less than or equal"),
        ("input.max_size=1000000", "input.max_size", "less than or equal"),
        ("input.std=[0.2,0,0.2]", "input.std", "> 0"),
        ("model.ssd.first_scale=0", "model.ssd.first_scale", "greater than 0"),
        ("model.ssd.first_scale=-0.1", "model.ssd.first_scale", "greater than 0"),
        ("model.ssd.variances=[0.1,-0.2]", "model.ssd.variances", "> 0"),
        ("model.ssd.min_scale=0.95", "model.ssd", "min_scale"),
        ("model.anchors.sizes=[]", "model.anchors.sizes", "at least one"),
        ("model.anchors.aspect_ratios=[0.5,-1]", "model.anchors.aspect_ratios", "> 0"),
        ("model.anchors.sizes=[[32,64],[32]]", "model.anchors.sizes", "same number of anchor sizes"),
        ("model.anchors.sizes=[[32],[]]", "model.anchors.sizes", "at least one"),
        ("model.anchors.sizes=[[32,-64]]", "model.anchors.sizes", "> 0"),
        ("model.rpn.score_threshold=1.5", "model.rpn.score_threshold", "less than or equal"),
        ("model.rpn.bg_iou_thresh=0.8", "model.rpn", "bg_iou_thresh"),
        ("model.roi_heads.bg_iou_thresh_lo=0.6", "model.roi_heads", "bg_iou_thresh_lo"),
        ("model.roi_heads.box_weights=[10,10,0,5]", "model.roi_heads.box_weights", "> 0"),
        ("train.milestones=[-1,3]", "train.milestones", ">= 0"),
        ("data.classes=[]", "data.classes", "nothing to detect"),
        ("data.classes=[cat,dog,cat]", "data.classes", "repeated: cat"),
    ],
)
def test_numbers_that_make_no_sense_are_refused_naming_the_key(override, key, words):
    with pytest.raises(ConfigError) as error:
        load_config("voc_ssd300" if key.startswith(("model.ssd", "input.size")) else "voc_faster_rcnn", [override])
    message = str(error.value)
    assert f"'{key}'" in message and words in message
    assert "\n" not in message


def test_numbers_as_yaml_strings_and_ints_for_floats_still_load():
    config = load_config("voc_faster_rcnn", ["train.lr=1e-3", "train.clip_grad_norm=10", "train.epochs=3"])
    assert config.train.lr == pytest.approx(1e-3)
    assert config.train.clip_grad_norm == 10.0 and config.train.epochs == 3


def _as_saved_before_per_architecture_sections(config_name: str) -> dict:
    """A config as versions before per-architecture sections saved it: every detector's model sections,
    and the old `score_thresh` spelling."""
    from detect.config import FasterRCNNModelConfig, SSDModelConfig, config_to_dict

    saved = config_to_dict(load_config(config_name))
    every = {**FasterRCNNModelConfig().model_dump(mode="json"), **SSDModelConfig().model_dump(mode="json")}
    saved["model"] = {**every, **saved["model"]}
    for section in ("rpn", "roi_heads", "ssd"):
        saved["model"][section]["score_thresh"] = saved["model"][section].pop("score_threshold") + 0.01
    return saved


@pytest.mark.parametrize("config_name", ["voc_faster_rcnn", "synthetic_ssd"])
def test_configs_saved_by_older_versions_still_load(config_name):
    """Checkpoints keep their resolved config. The old `score_thresh` keys are read as `score_threshold`,
    and the sections of other detectors, which older versions saved for every model, are dropped."""
    from detect.config import validate_config, validate_saved_config

    saved = _as_saved_before_per_architecture_sections(config_name)
    config = validate_saved_config(saved)
    default = load_config(config_name).model
    if config.model.arch == "faster_rcnn":
        assert config.model.roi_heads.score_threshold == pytest.approx(default.roi_heads.score_threshold + 0.01)
        assert not hasattr(config.model, "ssd")
    else:
        assert config.model.ssd.score_threshold == pytest.approx(default.ssd.score_threshold + 0.01)
        assert not hasattr(config.model, "rpn")
    assert "score_thresh" in saved["model"]["ssd"] and "rpn" in saved["model"]  # the caller's dict is as it was
    with pytest.raises(ConfigError, match="is not a setting of model.arch"):
        validate_config(saved)  # a config written by hand gets no such pass


def test_a_config_holds_the_sections_of_its_own_detector_only():
    """`detect config show synthetic_ssd` has no RPN, RoI or anchor keys; asking an SSD config for one is
    one line naming the key, where it came from, and the keys that model.arch has."""
    from detect.config import config_to_dict

    ssd_model = config_to_dict(load_config("synthetic_ssd"))["model"]
    assert set(ssd_model) == {"arch", "backbone", "pretrained", "trainable_layers", "ssd"}
    faster_model = config_to_dict(load_config("synthetic_faster_rcnn"))["model"]
    assert "ssd" not in faster_model and {"rpn", "roi_heads", "anchors"} <= set(faster_model)
    with pytest.raises(ConfigError) as error:
        load_config("synthetic_ssd", ["model.rpn.nms_thresh=0.5"])
    assert str(error.value) == ("'model.rpn' in --set model.rpn.nms_thresh=0.5 is not a setting of model.arch ssd "
                                "(its keys: arch, backbone, pretrained, trainable_layers, ssd)")
    with pytest.raises(ConfigError, match=rf"^bad value for 'model.arch' in --set model.arch=yolo: 'yolo': must be "
                                          rf"one of {', '.join(MODEL_SECTIONS)}$"):
        load_config("synthetic_ssd", ["model.arch=yolo"])
    assert load_config("synthetic_ssd", ["model.arch=ssdlite"]).model.arch == "ssdlite"


@pytest.mark.parametrize("weights, said", [
    ("[.nan, 1, 1]", "weight 1 is nan; each weight is a finite number of 0 or more"),
    ("[1, -1, 1]", "weight 2 is -1; each weight is a finite number of 0 or more"),
    ("[1, x, 1]", "weight 2 is 'x', not a number"),
    ("[0, 0, 0]", "every weight is 0, so no class would be learned"),
])
def test_class_weights_that_cannot_train_name_the_weight(weights, said):
    with pytest.raises(ConfigError) as raised:
        load_config("synthetic_ssd", [f"train.class_weights={weights}"])
    assert said in str(raised.value) and "must be one of" not in str(raised.value)
    assert load_config("synthetic_ssd", ["train.class_weights=[0, 1, 2.5]"]).train.class_weights == [0, 1, 2.5]
