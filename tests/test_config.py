"""The config schema: defaults filled, bad keys/types/values rejected with the key named."""

import copy

import pytest
import yaml

from pasm.workflow.config import ConfigError, load_config, validate_config

from conftest import REPO

MINIMAL = {"datasets": {"d": {"format": "folder", "root": "data/d"}}}


def test_repository_config_is_valid_and_filled():
    cfg = load_config(REPO / "config" / "config.yaml")
    demo = cfg["datasets"]["demo"]
    assert demo["pretrain"]["momentum"] == 0.9
    assert cfg["method"]["search"]["scale_f"] == 0.5
    assert demo["val_split"] == "val"


def test_defaults_are_the_papers_values():
    cfg = validate_config(MINIMAL)
    d = cfg["datasets"]["d"]
    assert d["image_size"] == 224
    assert d["model"]["arch"] == "resnet34"
    assert d["pretrain"]["lr"] == 0.01 and d["pretrain"]["momentum"] == 0.9 and d["pretrain"]["lr_gamma"] == 0.1
    assert cfg["method"]["alpha"] == 1.0 and cfg["method"]["beta"] in (0.5, 0.1, 0.01)
    assert 23 <= cfg["method"]["mask_size"] <= 39
    assert cfg["method"]["search"]["population"] == 400  # Su et al.


def test_validation_does_not_modify_its_input():
    raw = copy.deepcopy(MINIMAL)
    validate_config(raw)
    assert raw == MINIMAL


@pytest.mark.parametrize(
    "patch, key",
    [
        ({"method": {"alpha": "one"}}, "method.alpha"),
        ({"method": {"mask_sz": 5}}, "method"),
        ({"method": {"search": {"population": 2}}}, "method.search.population"),
        ({"datasets": {"d": {"format": "jpeg-soup", "root": "x"}}}, "datasets.d.format"),
        ({"datasets": {"d": {"format": "folder"}}}, "datasets.d"),
        ({"datasets": {"d": {"format": "folder", "root": "x", "image_size": 64.5}}}, "datasets.d.image_size"),
        ({"device": "tpu"}, "device"),
    ],
)
def test_bad_values_name_their_key(patch, key):
    cfg = {**copy.deepcopy(MINIMAL), **patch}
    with pytest.raises(ConfigError) as err:
        validate_config(cfg)
    assert f"\n  {key}:" in str(err.value)


def test_mask_larger_than_image_is_rejected():
    cfg = copy.deepcopy(MINIMAL)
    cfg["datasets"]["d"]["image_size"] = 32
    cfg["method"] = {"mask_size": 33}
    with pytest.raises(ConfigError, match="method.mask_size"):
        validate_config(cfg)


def test_lr_milestone_beyond_epochs_is_rejected():
    cfg = copy.deepcopy(MINIMAL)
    cfg["datasets"]["d"]["pretrain"] = {"epochs": 5, "lr_milestones": [10]}
    with pytest.raises(ConfigError, match=r"datasets.d.pretrain.lr_milestones"):
        validate_config(cfg)


def test_load_config_rejects_a_non_mapping(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text(yaml.safe_dump([1, 2]))
    with pytest.raises(ConfigError, match=str(p)):
        load_config(p)
