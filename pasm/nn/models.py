"""Network constructors and the self-describing model file that every later stage reads."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import torch
from torch import nn

from pasm.data.atomic import atomic_path

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
MODEL_FORMAT = 1


class _Block(nn.Module):
    """A ResNet basic block: two 3x3 convolutions with a (projected) identity shortcut."""

    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.short = (
            nn.Identity()
            if stride == 1 and cin == cout
            else nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        return torch.relu(self.bn2(self.conv2(out)) + self.short(x))


class CompactResNet(nn.Module):
    """A small ResNet for 48-96 px faces: a stem, then four basic blocks (w, 2w, 4w, 8w), each after a 2x max-pool.

    Max-pooling (not strided convolutions) keeps thin features such as brows and lip lines that
    a 2x subsampling would skip at these resolutions.
    """

    def __init__(self, num_classes: int = 7, width: int = 32) -> None:
        super().__init__()
        w = width
        self.stem = nn.Sequential(nn.Conv2d(3, w, 3, 1, 1, bias=False), nn.BatchNorm2d(w), nn.ReLU(inplace=True))
        self.blocks = nn.Sequential(
            nn.MaxPool2d(2), _Block(w, w, 1), nn.MaxPool2d(2),
            _Block(w, 2 * w, 1), nn.MaxPool2d(2),
            _Block(2 * w, 4 * w, 1), nn.MaxPool2d(2),
            _Block(4 * w, 8 * w, 1),
        )
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(8 * w, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.pool(self.blocks(self.stem(x))), 1))


_IMAGENET_WEIGHTS = {"resnet18": "ResNet18_Weights", "resnet34": "ResNet34_Weights", "vgg16": "VGG16_Weights"}


class MissingWeightsError(FileNotFoundError):
    """ImageNet weights were asked for but are not on this machine (there is no silent fallback)."""


def imagenet_weights_file(arch: str) -> tuple[Path, str]:
    """Where torchvision keeps the ImageNet weights of ``arch`` (torch hub cache) and their URL."""
    import torch.hub
    import torchvision

    if arch not in _IMAGENET_WEIGHTS:
        raise ValueError(f"no ImageNet weights for arch {arch!r}; they exist for {sorted(_IMAGENET_WEIGHTS)}")
    url = getattr(torchvision.models, _IMAGENET_WEIGHTS[arch]).IMAGENET1K_V1.url
    return Path(torch.hub.get_dir()) / "checkpoints" / url.rsplit("/", 1)[-1], url


def _reset_classifier(model: nn.Module, arch: str, num_classes: int) -> None:
    """Replace the 1000-way ImageNet classifier by a freshly initialised num_classes-way one."""
    if arch == "vgg16":
        model.classifier[6] = nn.Linear(model.classifier[6].in_features, num_classes)
    else:
        model.fc = nn.Linear(model.fc.in_features, num_classes)


def build_model(arch: str, num_classes: int = 7, width: int = 32, pretrained: str = "none",
                weights_file: str | Path | None = None) -> nn.Module:
    """Construct a num_classes-way network: random weights, or (``pretrained="imagenet"``)
    torchvision's ImageNet weights read from ``weights_file`` or the torch hub cache, classifier reset.

    Raises MissingWeightsError naming the exact file to provide when ImageNet weights are missing
    (this machine may have no internet; a silent fallback to random weights would spoil a run).
    """
    if pretrained not in ("none", "imagenet"):
        raise ValueError(f"pretrained must be 'none' or 'imagenet', got {pretrained!r}")
    if arch == "compact":
        if pretrained != "none":
            raise ValueError("the compact CNN has no ImageNet weights; use pretrained: none")
        return CompactResNet(num_classes, width)
    import torchvision  # imported here: it costs seconds at start-up (torch._dynamo) and most jobs never need it

    if arch not in _IMAGENET_WEIGHTS:
        raise ValueError(f"unknown model arch {arch!r}; choose compact, resnet18, resnet34 or vgg16")
    if pretrained == "none":
        return getattr(torchvision.models, arch)(weights=None, num_classes=num_classes)
    cached, url = imagenet_weights_file(arch)
    path = Path(weights_file) if weights_file else cached
    if not path.is_file():
        raise MissingWeightsError(
            f"ImageNet weights for {arch} not found at {path}. Download {url} on a machine with internet "
            f"and copy it to {cached} (the torch hub cache; TORCH_HOME moves it), or set the data set's "
            f"model.weights_file to its path. Refusing to train from random weights instead."
        )
    model = getattr(torchvision.models, arch)(weights=None)
    try:
        model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    except (RuntimeError, OSError, ValueError) as exc:
        raise ValueError(f"{path}: not torchvision's ImageNet weights for {arch} ({exc})") from None
    _reset_classifier(model, arch, num_classes)
    return model


def file_sha256(path: str | Path) -> str:
    """Hex SHA-256 of a file's bytes (identifies a teacher model unambiguously)."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def save_model(path: str | Path, model: nn.Module, meta: dict[str, Any]) -> None:
    """Write weights plus everything prediction needs (arch, classes, size, normalisation) atomically."""
    required = {"arch", "width", "classes", "image_size", "mean", "std"}
    missing = required - set(meta)
    if missing:
        raise ValueError(f"model metadata lacks {sorted(missing)}")
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    with atomic_path(path) as tmp:
        torch.save({"format": MODEL_FORMAT, "meta": meta, "state_dict": state}, tmp)


def load_model(path: str | Path, device: str | torch.device = "cpu") -> tuple[nn.Module, dict[str, Any]]:
    """Load a model file written by save_model; returns the network in eval mode and its metadata."""
    blob = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(blob, dict) or blob.get("format") != MODEL_FORMAT:
        raise ValueError(f"{path}: not a pasm model file (format {MODEL_FORMAT})")
    meta = blob["meta"]
    model = build_model(meta["arch"], len(meta["classes"]), meta["width"])
    model.load_state_dict(blob["state_dict"])
    return model.to(device).eval(), meta
