"""HDF5 artifacts of the pipeline (faces, points, masked images), written atomically (pasm.data.atomic)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from pasm.data.atomic import atomic_path

STR = h5py.string_dtype(encoding="utf-8")

POINT_FIELDS = ("index", "x", "y", "rgb", "prob_before", "prob_after", "flipped", "queries", "clean_correct")


def _set_attrs(obj: h5py.HLObject, attrs: dict[str, Any]) -> None:
    for key, value in attrs.items():
        obj.attrs[key] = json.dumps(value)


def _get_attrs(obj: h5py.HLObject) -> dict[str, Any]:
    return {k: json.loads(v) for k, v in obj.attrs.items()}


@dataclass
class Faces:
    """Aligned faces of one data set: uint8 images (N, H, W, 3) and per-image metadata."""

    images: np.ndarray
    labels: np.ndarray
    splits: np.ndarray
    sources: np.ndarray
    status: np.ndarray
    subsets: dict[str, np.ndarray] = field(default_factory=dict)
    subjects: np.ndarray | None = None
    attrs: dict[str, Any] = field(default_factory=dict)

    def rows(self, name: str) -> np.ndarray:
        """Row indices of a split or of a named subset."""
        if name in self.subsets:
            return np.flatnonzero(self.subsets[name])
        rows = np.flatnonzero(self.splits == name)
        if rows.size == 0:
            known = sorted(set(self.splits.tolist()) | set(self.subsets))
            where = f" in data set {self.attrs['dataset']} ({self.attrs.get('root', '?')})" if "dataset" in self.attrs else ""
            raise KeyError(f"no split or subset named {name!r}{where}; this data set has {known} "
                           "(check the config's train_split, val_split and eval_splits)")
        return rows


def write_faces(path: str | Path, faces: Faces) -> None:
    """Write a Faces record to `path` atomically."""
    n = len(faces.labels)
    for name in ("images", "splits", "sources", "status"):
        if len(getattr(faces, name)) != n:
            raise ValueError(f"faces.{name} has {len(getattr(faces, name))} rows, labels has {n}")
    if faces.images.dtype != np.uint8 or faces.images.ndim != 4 or faces.images.shape[-1] != 3:
        raise ValueError(f"faces.images must be uint8 (N, H, W, 3), got {faces.images.dtype} {faces.images.shape}")
    with atomic_path(path) as tmp, h5py.File(tmp, "w") as f:
        chunk = (1, *faces.images.shape[1:]) if n else None
        f.create_dataset("images", data=faces.images, chunks=chunk)
        f.create_dataset("labels", data=faces.labels.astype(np.int64))
        f.create_dataset("split", data=faces.splits.astype(object), dtype=STR)
        f.create_dataset("source", data=faces.sources.astype(object), dtype=STR)
        f.create_dataset("face_status", data=faces.status.astype(object), dtype=STR)
        subjects = faces.subjects if faces.subjects is not None else np.full(n, "")
        f.create_dataset("subject", data=np.asarray(subjects).astype(object), dtype=STR)
        grp = f.create_group("subsets")
        for name, mask in faces.subsets.items():
            grp.create_dataset(name, data=np.asarray(mask, dtype=bool))
        _set_attrs(f, faces.attrs)


def read_faces(path: str | Path, with_images: bool = True) -> Faces:
    """Read a faces.h5 file (images optional, to inspect metadata cheaply)."""
    with h5py.File(path, "r") as f:
        images = f["images"][()] if with_images else np.empty((0, 0, 0, 3), np.uint8)
        return Faces(
            images=images,
            labels=f["labels"][()],
            splits=f["split"].asstr()[()].astype(str),
            sources=f["source"].asstr()[()].astype(str),
            status=f["face_status"].asstr()[()].astype(str),
            subsets={k: v[()] for k, v in f["subsets"].items()},
            subjects=f["subject"].asstr()[()].astype(str) if "subject" in f else None,
            attrs=_get_attrs(f),
        )


def write_table(path: str | Path, table: dict[str, np.ndarray], attrs: dict[str, Any] | None = None) -> None:
    """Write equal-length arrays as datasets of one HDF5 file, atomically."""
    lengths = {k: len(v) for k, v in table.items()}
    if len(set(lengths.values())) > 1:
        raise ValueError(f"columns differ in length: {lengths}")
    with atomic_path(path) as tmp, h5py.File(tmp, "w") as f:
        for key, value in table.items():
            value = np.asarray(value)
            chunks = (1, *value.shape[1:]) if value.ndim == 4 and len(value) else None
            f.create_dataset(key, data=value, chunks=chunks)
        _set_attrs(f, attrs or {})


def read_table(path: str | Path) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Read every dataset of a flat HDF5 file written by write_table."""
    with h5py.File(path, "r") as f:
        return {k: f[k][()] for k in f.keys()}, _get_attrs(f)


def write_groups(path: str | Path, groups: dict[str, dict[str, np.ndarray]],
                 attrs: dict[str, Any] | None = None) -> None:
    """Write several tables (e.g. one per evaluated split) as HDF5 groups of one file, atomically;
    a group name may hold '/' ("splits/test")."""
    with atomic_path(path) as tmp, h5py.File(tmp, "w") as f:
        for name, table in groups.items():
            lengths = {k: len(v) for k, v in table.items()}
            if len(set(lengths.values())) > 1:
                raise ValueError(f"columns of group {name!r} differ in length: {lengths}")
            g = f.create_group(name)
            for key, value in table.items():
                g.create_dataset(key, data=np.asarray(value))
        _set_attrs(f, attrs or {})


def read_groups(path: str | Path) -> tuple[dict[str, dict[str, np.ndarray]], dict[str, Any]]:
    """Every table of a file written by write_groups, by group name, and the file's attributes."""
    groups: dict[str, dict[str, np.ndarray]] = {}

    def visit(name: str, obj: Any) -> None:
        if isinstance(obj, h5py.Dataset):
            group, key = name.rsplit("/", 1)
            groups.setdefault(group, {})[key] = obj[()]

    with h5py.File(path, "r") as f:
        f.visititems(visit)
        return groups, _get_attrs(f)
