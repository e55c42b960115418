"""Readers turn a data set on disk into a list of labelled image records."""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any, Callable

from pasm.data.readers.affectnet import read_affectnet
from pasm.data.readers.ckplus import read_ckplus
from pasm.data.readers.fer2013 import read_fer2013
from pasm.data.readers.folder import read_folder_dataset
from pasm.data.readers.rafdb import read_rafdb
from pasm.data.readers.records import ReaderOutput, Record, subset_masks

__all__ = ["READERS", "Record", "ReaderOutput", "read_dataset", "subset_masks"]

READERS: dict[str, Callable[..., ReaderOutput]] = {
    "folder": read_folder_dataset,
    "demo": read_folder_dataset,
    "rafdb": read_rafdb,
    "fer2013": read_fer2013,
    "ckplus": read_ckplus,
    "affectnet": read_affectnet,
}
"""Data set format name (config `format`) -> reader taking the root plus keyword options."""


def _check_options(fmt: str, reader: Callable[..., ReaderOutput], options: dict[str, Any]) -> None:
    """ValueError naming unknown option keys and the ones this reader accepts."""
    accepted = list(inspect.signature(reader).parameters)[1:]
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        raise ValueError(f"format {fmt!r}: unknown reader option(s) {unknown}; accepted: {accepted}")


def read_dataset(fmt: str, root: str | Path, options: dict[str, Any] | None = None) -> ReaderOutput:
    """Read the data set at root with the reader of format fmt; options are its keyword arguments."""
    reader = READERS.get(fmt)
    if reader is None:
        raise ValueError(f"unknown data set format {fmt!r}; known formats: {sorted(READERS)}")
    options = dict(options or {})
    _check_options(fmt, reader, options)
    return reader(root, **options)
