"""The generic `<root>/<split>/<class>/<image>` layout (also used for the generated demo set).

Bad input: a missing root -> FileNotFoundError naming it; a class folder that is neither a class
name, an alias nor a class_map key -> ValueError naming the folder (it would silently lose data);
no image at all -> ValueError. Hidden files and folders are ignored; other files in a class
folder without an image extension (not in pasm.data.decode.IMAGE_SUFFIXES: .txt, .heic, ...) and
subfolders of a class folder are not read but listed in ReaderOutput.ignored, which
pasm/data/faces.py counts by extension. A broken symbolic link (its target missing, or a loop of
links) anywhere in the layout is not one of those: it is a counted skip in ReaderOutput.skipped
("<link>: broken symbolic link (...)"), named in a warning, as a listed image missing on disk is.
Images are not decoded here; pasm/data/faces.py skips and counts undecodable files.
"""

from __future__ import annotations

import errno
import logging
import os
from pathlib import Path
from typing import Iterator

from pasm.data.decode import IMAGE_SUFFIXES
from pasm.data.labels import ALIASES, CLASSES
from pasm.data.readers.records import ReaderOutput, Record, require_dir

__all__ = [
    "Record",
    "broken_link",
    "broken_links",
    "image_files",
    "other_entries",
    "read_folder",
    "read_folder_dataset",
]

log = logging.getLogger(__name__)


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


def _visible_dirs(folder: Path) -> list[Path]:
    """Sorted non-hidden subfolders."""
    return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


def broken_link(path: str | Path) -> str | None:
    """Why path is a symbolic link that cannot be followed ("broken symbolic link (a loop of links)",
    "... (its target x.png does not exist)"), or None when it is no link or a working one."""
    path = Path(path)
    if not path.is_symlink():
        return None
    try:
        path.stat()
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return "broken symbolic link (a loop of links)"
        if exc.errno in (errno.ENOENT, errno.ENOTDIR):
            return f"broken symbolic link (its target {os.readlink(path)} does not exist)"
        return f"broken symbolic link ({exc.strerror or exc})"
    return None


def broken_links(folder: Path) -> list[str]:
    """Sorted non-hidden entries of folder that are broken symbolic links, each as "<path>: <why>"
    (hidden ones, such as an editor's `.#name` lock links, are ignored as other hidden files are)."""
    with os.scandir(folder) as entries:  # the entry type comes with the listing: no call per image
        links = sorted(Path(e.path) for e in entries if e.is_symlink() and not e.name.startswith("."))
    found = []
    for link in links:
        reason = broken_link(link)
        if reason is not None:
            found.append(f"{link}: {reason}")
    return found


def image_files(folder: Path) -> Iterator[Path]:
    """Sorted non-hidden image files directly inside folder."""
    for image in sorted(folder.iterdir()):
        if image.is_file() and image.suffix.lower() in IMAGE_SUFFIXES and not image.name.startswith("."):
            yield image


def other_entries(folder: Path) -> list[str]:
    """Sorted non-hidden entries of folder that image_files passes over: other files, and subfolders
    (with a /); broken symbolic links are not among them (see broken_links)."""
    return [
        f"{entry}/" if entry.is_dir() else str(entry)
        for entry in sorted(folder.iterdir())
        if not entry.name.startswith(".")
        and not (entry.is_file() and entry.suffix.lower() in IMAGE_SUFFIXES)
        and broken_link(entry) is None
    ]


def read_folder_dataset(root: str | Path, class_map: dict[str, str] | None = None) -> ReaderOutput:
    """Read root/<split>/<class>/<image> into records (aligned faces), sorted for determinism."""
    root = require_dir(root, "data set")
    class_map = class_map or {}
    records: list[Record] = []
    label_map: dict[str, str] = {}
    ignored: list[str] = []
    broken = broken_links(root)
    for split_dir in _visible_dirs(root):
        broken.extend(broken_links(split_dir))
        for class_dir in _visible_dirs(split_dir):
            label = _class_index(class_dir, class_map)
            label_map[class_dir.name] = CLASSES[label]
            records.extend(
                Record(str(image), split_dir.name, label, path=image) for image in image_files(class_dir)
            )
            ignored.extend(other_entries(class_dir))
            broken.extend(broken_links(class_dir))
    if broken:
        log.warning("%s: %d broken symbolic link(s) not read (first: %s)", root, len(broken), broken[0])
    if not records:
        raise ValueError(f"{root}: no images found in the <split>/<class>/<image> layout")
    return ReaderOutput(
        records=records, skipped=broken, label_map=dict(sorted(label_map.items())), ignored=ignored
    )


def read_folder(root: str | Path, class_map: dict[str, str] | None = None) -> list[Record]:
    """List every image under root/<split>/<class>/, sorted for determinism.

    Unknown class folders are an error (they would silently lose data); non-image files are
    ignored; hidden files and folders are skipped.
    """
    return read_folder_dataset(root, class_map).records
