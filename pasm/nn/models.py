"""Network constructors and the self-describing model file that every later stage reads."""

from __future__ import annotations

import hashlib
import pickle
import zipfile
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
    """A small ResNet for 48-96 px faces: a stem, then four basic blocks (w, 2w, 4w, 8w), each after a
    2x max-pool.

    Max-pooling (not strided convolutions) keeps thin features such as brows and lip lines that
    a 2x subsampling would skip at these resolutions.
    """

    def __init__(self, num_classes: int = 7, width: int = 32) -> None:
        super().__init__()
        w = width
        self.stem = nn.Sequential(
            nn.Conv2d(3, w, 3, 1, 1, bias=False), nn.BatchNorm2d(w), nn.ReLU(inplace=True)
        )
        self.blocks = nn.Sequential(
            nn.MaxPool2d(2),
            _Block(w, w, 1),
            nn.MaxPool2d(2),
            _Block(w, 2 * w, 1),
            nn.MaxPool2d(2),
            _Block(2 * w, 4 * w, 1),
            nn.MaxPool2d(2),
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


def build_model(
    arch: str,
    num_classes: int = 7,
    width: int = 32,
    pretrained: str = "none",
    weights_file: str | Path | None = None,
) -> nn.Module:
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
    # imported here: it costs seconds at start-up (torch._dynamo) and most jobs never need it
    import torchvision

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


REQUIRED_META = ("arch", "width", "classes", "image_size", "mean", "std")
"""What every model file's meta holds: the network to build and how to feed it."""


class NotAModelFile(ValueError):
    """A file given as a model is not a (complete) pasm model file; the message names it and says what
    it is."""


def save_model(path: str | Path, model: nn.Module, meta: dict[str, Any]) -> None:
    """Write weights plus everything prediction needs (arch, classes, size, normalisation) atomically."""
    missing = set(REQUIRED_META) - set(meta)
    if missing:
        raise ValueError(f"model metadata lacks {sorted(missing)}")
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    with atomic_path(path) as tmp:
        torch.save({"format": MODEL_FORMAT, "meta": meta, "state_dict": state}, tmp)


SIGNATURES = (
    (b"\x89HDF\r\n\x1a\n", "an HDF5 file, e.g. a faces.h5 or points.h5"),
    (b"\x89PNG", "a PNG image"),
    (b"\xff\xd8\xff", "a JPEG image"),
    (b"PK\x03\x04", "a damaged or truncated zip archive"),  # a zip that zipfile cannot open
    (
        (b"\x80\x02", b"\x80\x03", b"\x80\x04", b"\x80\x05"),
        "a pickle, e.g. a PyTorch file of before version 1.6",
    ),
)
"""Leading bytes of the files most often given by mistake, and what to call them."""


def _not_zip(path: Path) -> str:
    """What a file that is not a zip archive (every torch.save since PyTorch 1.6) is, from its first bytes."""
    with open(path, "rb") as fh:
        head = fh.read(16)
    if not head:
        return "an empty file"
    for signature, what in SIGNATURES:
        if head.startswith(signature):
            return what
    try:
        return f"a text file starting {head.decode('utf-8')[:12]!r}"
    except UnicodeDecodeError:
        return f"unknown content starting with the bytes {head[:8].hex(' ')}; not a PyTorch file"


def _torch_archive(path: Path) -> str | None:
    """None for a PyTorch zip archive (it holds <name>/data.pkl), else what the file is."""
    if not zipfile.is_zipfile(path):
        return _not_zip(path)
    with zipfile.ZipFile(path) as archive:
        if not any(name == "data.pkl" or name.endswith("/data.pkl") for name in archive.namelist()):
            return "a zip archive that is not a PyTorch file"
    return None


def _load_weights_only(path: Path) -> tuple[Any, str | None]:
    """torch.load without running code: (contents, None), or (None, what the file is) when it fails."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True), None
    except (
        pickle.UnpicklingError
    ):  # not repeated: torch's message advises weights_only=False, i.e. running its code
        return None, (
            "a PyTorch file holding objects other than tensors and plain values; "
            "not loaded, as that could run code"
        )
    except (RuntimeError, EOFError, OSError, ValueError, KeyError, zipfile.BadZipFile) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return None, f"a damaged PyTorch file: {first}"


def _layout_problem(blob: Any) -> str | None:
    """None when loaded contents have pasm's layout {"format", "meta", "state_dict"}, else what they are."""
    if not isinstance(blob, dict):
        return f"a PyTorch file holding a {type(blob).__name__}, not pasm's format/meta/state_dict dict"
    if not {"format", "meta", "state_dict"} <= set(blob):
        keys = sorted(map(str, blob))
        shown = ", ".join(keys[:4]) + (", ..." if len(keys) > 4 else "")
        return (
            f"a PyTorch file without pasm's format, meta and state_dict keys, e.g. ImageNet weights or a "
            f"bare state_dict; it holds {shown or 'nothing'}"
        )
    if blob["format"] != MODEL_FORMAT:
        return f"pasm model format {blob['format']!r}, this pasm reads format {MODEL_FORMAT}"
    return None


def read_model_file(path: str | Path) -> dict[str, Any]:
    """The checked contents {"format", "meta", "state_dict"} of a pasm model file, loaded without
    running code; NotAModelFile naming the file and what it is (or which meta keys it lacks) otherwise."""
    path = Path(path)
    if path.is_dir():
        raise NotAModelFile(f"{path} is a directory, not a model file")
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such model file")
    what = _torch_archive(path)
    blob = None
    if what is None:
        blob, what = _load_weights_only(path)
    if what is None:
        what = _layout_problem(blob)
    if what is not None:
        raise NotAModelFile(f"{path} is not a pasm model file ({what})")
    meta = blob["meta"] if isinstance(blob["meta"], dict) else {}
    missing = [key for key in REQUIRED_META if key not in meta]
    if missing:
        raise NotAModelFile(
            f"{path} is not a complete pasm model file (its meta lacks "
            f"{', '.join(map(repr, missing))}; every model file holds {', '.join(REQUIRED_META)})"
        )
    return blob


def load_model(path: str | Path, device: str | torch.device = "cpu") -> tuple[nn.Module, dict[str, Any]]:
    """Load a model file written by save_model; returns the network in eval mode and its metadata.

    Checked first (`read_model_file`): anything else raises NotAModelFile, one line naming the file.
    """
    blob = read_model_file(path)
    meta = blob["meta"]
    try:
        model = build_model(meta["arch"], len(meta["classes"]), meta["width"])
        model.load_state_dict(blob["state_dict"])
    except (RuntimeError, ValueError, TypeError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise NotAModelFile(
            f"{path} is not a pasm model file (its weights do not fit its meta: {first})"
        ) from None
    return model.to(device).eval(), meta
