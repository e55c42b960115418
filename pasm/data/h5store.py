"""HDF5 artifacts of the pipeline (faces, points, masked images), written atomically (pasm.data.atomic)."""

from __future__ import annotations

import io
import json
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator

import h5py
import numpy as np

from pasm.data.atomic import atomic_path
from pasm.data.rows import H5Rows

STR = h5py.string_dtype(encoding="utf-8")

POINT_FIELDS = ("index", "x", "y", "rgb", "prob_before", "prob_after", "flipped", "queries", "clean_correct")


def _set_attrs(obj: h5py.HLObject, attrs: dict[str, Any]) -> None:
    for key, value in attrs.items():
        obj.attrs[key] = json.dumps(value)


def _get_attrs(obj: h5py.HLObject) -> dict[str, Any]:
    return {k: json.loads(v) for k, v in obj.attrs.items()}


class GuardedFile(io.FileIO):
    """The temporary file a new HDF5 artifact is written through (h5py's "fileobj" driver), so that
    the HDF5 library never sees a failed write.

    HDF5 does not survive one: once a write has failed (ENOSPC on a full disk), closing the file
    fails too and leaves the library's state half torn down, and the next attempt to close it
    (h5py's ``__dealloc__`` in garbage collection or at exit, or HDF5's own flush of the file's
    datasets) touches freed memory: the job dies of SIGSEGV after the real error was printed
    (h5py issue 914, a bug of the HDF5 library; h5py 3.16 with HDF5 2.0 still has it). Here the
    first failed write is recorded instead and it, and every later write, is discarded: the file
    is incomplete and will be removed. HDF5 goes on and closes normally; ``check`` (create_h5
    calls it, and long writers between blocks) raises the recorded error, naming the artifact.
    """

    def __init__(self, tmp: Path, artifact: Path) -> None:
        super().__init__(tmp, "w+")
        self.artifact = artifact
        self.error: OSError | None = None
        self._failure: OSError | None = None

    def write(self, data: Any) -> int:
        view = memoryview(data).cast("B")
        if self.error is None:
            try:
                done = 0
                while done < len(view):  # the write that fills the disk writes a part, the next one fails
                    done += super().write(view[done:])
            except OSError as err:
                self.error = err
        return len(view)

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        got = super().readinto(view) or 0
        view[got:] = bytes(len(view) - got)  # past the end of what was written: zeros, as HDF5's sec2 driver
        return len(view)

    def truncate(self, size: int | None = None) -> int:
        if self.error is None:
            try:
                return super().truncate(size)
            except OSError as err:
                self.error = err
        return self.tell() if size is None else size

    def failure(self) -> OSError | None:
        """The recorded error as an OSError naming the artifact (one object, however often asked);
        None when every write succeeded."""
        if self.error is not None and self._failure is None:
            err = self.error
            self._failure = OSError(
                err.errno, f"{err.strerror or err}; {self.artifact.name} not written", str(self.artifact)
            )
        return self._failure

    def check(self) -> None:
        """Raise the error of a write that failed, if one did."""
        if self.failure() is not None:
            raise self.failure() from self.error


@contextmanager
def create_h5(path: str | Path) -> Iterator[tuple[h5py.File, GuardedFile]]:
    """A new HDF5 file open for writing, and the GuardedFile it is written through; the file appears
    under `path` only once the block has completed (atomic_path).

    A write that fails (a full disk, a quota) ends in an OSError naming `path` and leaves no file
    under it, never in SIGSEGV (GuardedFile): raised where the block calls ``disk.check()`` (a
    long writer does so after each block of rows, so that it stops at once rather than go on
    making rows that are discarded), or else when the block ends, or on closing the file.
    """
    path = Path(path)
    with atomic_path(path) as tmp:
        disk = GuardedFile(tmp, path)
        try:
            with h5py.File(disk, "w") as f:
                yield f, disk
        except Exception as exc:
            failure = disk.failure()
            if failure is not None and exc is not failure:
                raise failure from exc  # an error that followed a failed write: the write is the cause
            raise
        finally:
            disk.close()
        disk.check()  # a write that failed while HDF5 closed the file (its last metadata)


@dataclass
class Faces:
    """Aligned faces of one data set: uint8 images (N, H, W, 3), in memory or read on demand
    (pasm.data.rows.H5Rows), and per-image metadata (small: held in memory)."""

    images: np.ndarray | H5Rows
    labels: np.ndarray
    splits: np.ndarray
    sources: np.ndarray
    status: np.ndarray
    subsets: dict[str, np.ndarray] = field(default_factory=dict)
    subjects: np.ndarray | None = None
    attrs: dict[str, Any] = field(default_factory=dict)
    values: dict[str, np.ndarray] = field(default_factory=dict)
    """Continuous annotations per row (AffectNet's valence and arousal, FER+ votes); NaN where absent."""

    def rows(self, name: str) -> np.ndarray:
        """Row indices of a split or of a named subset."""
        if name in self.subsets:
            return np.flatnonzero(self.subsets[name])
        rows = np.flatnonzero(self.splits == name)
        if rows.size == 0:
            known = sorted(set(self.splits.tolist()) | set(self.subsets))
            where = (
                f" in data set {self.attrs['dataset']} ({self.attrs.get('root', '?')})"
                if "dataset" in self.attrs
                else ""
            )
            raise KeyError(
                f"no split or subset named {name!r}{where}; this data set has {known} "
                "(check the config's train_split, val_split and eval_splits)"
            )
        return rows


IMAGE_BUFFER = 256
"""Rows FacesWriter collects before one write: a few batches, whatever the data set's size."""


class FacesWriter:
    """Writes faces.h5 as faces are made: images go to the file every IMAGE_BUFFER rows, so memory
    holds a few batches; the file appears under its final name only once ``finish`` has run.

    Images are stored in chunks of one image: the training reads random rows (an exact shuffle),
    and a one-image chunk is what one such read touches; runs of rows are still one hyperslab read.
    """

    def __init__(self, path: str | Path, size: int) -> None:
        self.path, self.size = Path(path), int(size)
        self._create = create_h5(self.path)
        self._file, self._disk = self._create.__enter__()
        shape = (self.size, self.size, 3)
        try:
            self._images = self._file.create_dataset(
                "images", shape=(0, *shape), maxshape=(None, *shape), dtype=np.uint8, chunks=(1, *shape)
            )
        except BaseException as exc:  # closes and removes the temporary file
            self._create.__exit__(type(exc), exc, exc.__traceback__)
            raise
        self._buffer: list[np.ndarray] = []
        self.labels: list[int] = []
        self.splits: list[str] = []
        self.sources: list[str] = []
        self.status: list[str] = []
        self.subjects: list[str] = []
        self.values: dict[str, list[float]] = {}
        self._done = False

    def __enter__(self) -> "FacesWriter":
        return self

    def __len__(self) -> int:
        return len(self.labels)

    def append(
        self,
        image: np.ndarray,
        label: int,
        split: str,
        source: str,
        status: str,
        subject: str = "",
        values: dict[str, float] | None = None,
    ) -> None:
        """Add one face (uint8 size x size x 3) and its metadata."""
        if image.dtype != np.uint8 or image.shape != (self.size, self.size, 3):
            raise ValueError(
                f"{source}: face must be uint8 ({self.size}, {self.size}, 3), got {image.dtype} {image.shape}"
            )
        n = len(self.labels)
        for name, column in self.values.items():
            column.append(float((values or {}).get(name, np.nan)))
        for name, v in (values or {}).items():
            if name not in self.values:
                self.values[name] = [np.nan] * n + [float(v)]
        self._buffer.append(image)
        self.labels.append(int(label))
        self.splits.append(split)
        self.sources.append(source)
        self.status.append(status)
        self.subjects.append(subject)
        if len(self._buffer) >= IMAGE_BUFFER:
            self._flush()

    def _flush(self) -> None:
        if not self._buffer:
            return
        start = self._images.shape[0]
        self._images.resize(start + len(self._buffer), axis=0)
        self._images[start:] = np.stack(self._buffer)
        self._buffer = []
        self._disk.check()  # a full disk stops the writer here, not after the last face is made

    def finish(
        self, subsets: dict[str, np.ndarray] | None = None, attrs: dict[str, Any] | None = None
    ) -> None:
        """Write the metadata columns, subsets and attributes; the file is complete."""
        self._flush()
        f, n = self._file, len(self.labels)
        f.create_dataset("labels", data=np.asarray(self.labels, dtype=np.int64))
        for name, column in (
            ("split", self.splits),
            ("source", self.sources),
            ("face_status", self.status),
            ("subject", self.subjects),
        ):
            f.create_dataset(name, data=np.asarray(column, dtype=object), dtype=STR, shape=(n,))
        grp = f.create_group("subsets")
        for name, mask in (subsets or {}).items():
            if len(mask) != n:
                raise ValueError(f"subset {name!r} has {len(mask)} rows, faces has {n}")
            grp.create_dataset(name, data=np.asarray(mask, dtype=bool))
        if self.values:
            vals = f.create_group("values")
            for name, column in self.values.items():
                vals.create_dataset(name, data=np.asarray(column, dtype=np.float32))
        _set_attrs(f, attrs or {})
        self._done = True

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if exc_type is None and not self._done:
            err = RuntimeError(f"{self.path}: FacesWriter closed before finish(); nothing written")
            self._create.__exit__(RuntimeError, err, None)  # closes and removes the temporary file
            raise err
        self._create.__exit__(exc_type, exc, tb)  # closes the file; renames it only after a complete write


def write_faces(path: str | Path, faces: Faces) -> None:
    """Write a Faces record to `path` atomically."""
    n = len(faces.labels)
    for name in ("images", "splits", "sources", "status"):
        if len(getattr(faces, name)) != n:
            raise ValueError(f"faces.{name} has {len(getattr(faces, name))} rows, labels has {n}")
    if faces.images.dtype != np.uint8 or len(faces.images.shape) != 4 or faces.images.shape[-1] != 3:
        raise ValueError(
            f"faces.images must be uint8 (N, H, W, 3), got {faces.images.dtype} {faces.images.shape}"
        )
    subjects = faces.subjects if faces.subjects is not None else np.full(n, "")
    with FacesWriter(path, faces.images.shape[1]) as out:
        for i in range(n):
            out.append(
                np.asarray(faces.images[i]),
                faces.labels[i],
                str(faces.splits[i]),
                str(faces.sources[i]),
                str(faces.status[i]),
                str(subjects[i]),
                {k: v[i] for k, v in faces.values.items()},
            )
        out.finish(faces.subsets, faces.attrs)


def read_faces(path: str | Path, with_images: bool = True) -> Faces:
    """Read a faces.h5 file's metadata; its images are read on demand (H5Rows), or left out."""
    with h5py.File(path, "r") as f:
        images = H5Rows(path) if with_images else np.empty((0, 0, 0, 3), np.uint8)
        return Faces(
            images=images,
            labels=f["labels"][()],
            splits=f["split"].asstr()[()].astype(str),
            sources=f["source"].asstr()[()].astype(str),
            status=f["face_status"].asstr()[()].astype(str),
            subsets={k: v[()] for k, v in f["subsets"].items()},
            subjects=f["subject"].asstr()[()].astype(str) if "subject" in f else None,
            attrs=_get_attrs(f),
            values={k: v[()] for k, v in f["values"].items()} if "values" in f else {},
        )


def write_table(
    path: str | Path,
    table: dict[str, np.ndarray],
    attrs: dict[str, Any] | None = None,
    images: tuple[tuple[int, ...], Iterable[np.ndarray]] | None = None,
) -> None:
    """Write equal-length arrays as datasets of one HDF5 file, atomically. ``images`` (shape,
    blocks) adds a uint8 "images" dataset written block by block as the blocks are made, so it
    never needs to be in memory at once (masked.h5)."""
    lengths = {k: len(v) for k, v in table.items()}
    if images is not None:
        lengths["images"] = images[0][0]
    if len(set(lengths.values())) > 1:
        raise ValueError(f"columns differ in length: {lengths}")
    with create_h5(path) as (f, disk):
        if images is not None:
            shape, blocks = images
            out = f.create_dataset(
                "images", shape=shape, dtype=np.uint8, chunks=(1, *shape[1:]) if shape[0] else None
            )
            start = 0
            for block in blocks:
                out[start : start + len(block)] = block
                start += len(block)
                disk.check()  # a full disk stops here, before the next block is made
            if start != shape[0]:
                raise ValueError(f"{path}: {start} images written, {shape[0]} expected")
        for key, value in table.items():
            value = np.asarray(value)
            chunks = (1, *value.shape[1:]) if value.ndim == 4 and len(value) else None
            f.create_dataset(key, data=value, chunks=chunks)
        _set_attrs(f, attrs or {})


def read_table(path: str | Path, lazy: tuple[str, ...] = ()) -> tuple[dict[str, Any], dict[str, Any]]:
    """Read every dataset of a flat HDF5 file written by write_table; those named in ``lazy``
    (e.g. masked.h5's "images") are returned as H5Rows, read on demand."""
    with h5py.File(path, "r") as f:
        table = {k: H5Rows(path, k) if k in lazy else f[k][()] for k in f.keys()}
        return table, _get_attrs(f)


def write_groups(
    path: str | Path, groups: dict[str, dict[str, np.ndarray]], attrs: dict[str, Any] | None = None
) -> None:
    """Write several tables (e.g. one per evaluated split) as HDF5 groups of one file, atomically;
    a group name may hold '/' ("splits/test")."""
    with create_h5(path) as (f, _):
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


def read_masked(path: str | Path) -> dict[str, Any]:
    """masked.h5's columns, its images read on demand."""
    return read_table(path, lazy=("images",))[0]
