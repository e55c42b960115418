"""Backbones: torchvision architectures with 7 outputs, ImageNet weights from a local file or a clear
error."""

import pytest
import torch
import torchvision

from pasm.nn.models import MissingWeightsError, build_model, imagenet_weights_file
from pasm.workflow.config import ConfigError, validate_config


def test_backbones_have_seven_outputs():
    x = torch.randn(2, 3, 64, 64)
    for arch in ("compact", "resnet18"):
        model = build_model(arch, 7).eval()
        assert model(x).shape == (2, 7)


def test_imagenet_weights_from_configured_file_and_classifier_reset(tmp_path):
    torch.manual_seed(0)
    reference = torchvision.models.resnet18(weights=None)  # stands for the downloaded ImageNet file
    path = tmp_path / "resnet18-f37072fd.pth"
    torch.save(reference.state_dict(), path)
    model = build_model("resnet18", 7, pretrained="imagenet", weights_file=path)
    assert model.fc.out_features == 7
    for key, value in reference.state_dict().items():
        if not key.startswith("fc."):
            assert torch.equal(model.state_dict()[key], value), key


def test_missing_imagenet_weights_say_which_file_goes_where(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))  # an empty hub cache
    cached, url = imagenet_weights_file("resnet34")
    assert str(cached).startswith(str(tmp_path)) and cached.name == "resnet34-b627a593.pth"
    with pytest.raises(MissingWeightsError) as err:
        build_model("resnet34", 7, pretrained="imagenet")
    assert str(cached) in str(err.value) and url in str(err.value) and "weights_file" in str(err.value)
    with pytest.raises(ConfigError, match="resnet34-b627a593.pth"):  # caught before any job runs
        validate_config(
            {
                "datasets": {
                    "x": {
                        "format": "demo",
                        "root": "d",
                        "model": {"arch": "resnet34", "pretrained": "imagenet"},
                    }
                }
            }
        )
    with pytest.raises(ValueError, match="no ImageNet weights"):
        build_model("compact", 7, pretrained="imagenet")


def test_wrong_weights_file_is_named(tmp_path):
    path = tmp_path / "not-resnet.pth"
    torch.save({"weight": torch.zeros(3)}, path)
    with pytest.raises(ValueError, match="not-resnet.pth"):
        build_model("resnet18", 7, pretrained="imagenet", weights_file=path)


def test_a_directory_given_as_model_file_is_called_a_directory(tmp_path, capsys):
    from PIL import Image

    from pasm.app import cli
    from pasm.nn.models import NotAModelFile, load_model

    folder = tmp_path / "round1"
    folder.mkdir()
    with pytest.raises(NotAModelFile) as err:
        load_model(folder)
    assert str(err.value) == f"{folder} is a directory, not a model file"
    image = tmp_path / "face.png"
    Image.new("RGB", (8, 8)).save(image)
    assert cli.main(["predict", str(image), "--model", str(folder), "--device", "cpu"]) == 1
    assert capsys.readouterr().err == f"pasm predict: {folder} is a directory, not a model file\n"
