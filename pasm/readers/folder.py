"""The generic `<root>/<split>/<class>/<image>` layout (also used for the generated demo set)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pasm.labels import ALIASES, CLASSES

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".gif"}


@dataclass(frozen=True)
class Record:
    """One image on disk with its split and canonical label index."""

    path: Path
    split: str
    label: int


def _class_index(folder: Path, class_map: dict[str, str]) -> int:
    name = folder.name
    target = class_map.get(name, name).strip().lower()
    canonical = ALIASES.get(target)
    if canonical is None:
        raise ValueError(
            f"{folder}: folder name {name!r} is not an expression class; "
            f"known names: {sorted(ALIASES)}; map it with the dataset's class_map key"
        )
    return CLASSES.index(canonical)


def read_folder(root: str | Path, class_map: dict[str, str] | None = None) -> list[Record]:
    """List every image under root/<split>/<class>/, sorted for determinism.

    Unknown class folders are an error (they would silently lose data); non-image files are
    ignored; hidden files and folders are skipped.
    """
    root = Path(root)
    class_map = class_map or {}
    if not root.is_dir():
        raise FileNotFoundError(f"data set root {root} does not exist or is not a directory")
    records: list[Record] = []
    for split_dir in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        for class_dir in sorted(p for p in split_dir.iterdir() if p.is_dir() and not p.name.startswith(".")):
            label = _class_index(class_dir, class_map)
            for image in sorted(class_dir.iterdir()):
                if image.is_file() and image.suffix.lower() in IMAGE_SUFFIXES and not image.name.startswith("."):
                    records.append(Record(image, split_dir.name, label))
    if not records:
        raise ValueError(f"{root}: no images found in the <split>/<class>/<image> layout")
    return records
