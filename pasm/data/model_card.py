"""How a model's training faces were made, recorded in the model file so prediction can prepare photographs alike.

A model file's ``meta["alignment"]`` (written by `face_preparation` at training time) holds:

* ``format``, ``image_size``: the data set's reader and the side of the faces the network saw;
* ``source``: ``"pre-aligned"`` when the data set came already cropped (FER2013, CK+48, RAF-DB's
  aligned images, folders, the demo) and pasm only resized it, or ``"aligned"`` when pasm detected
  and aligned photographs itself (RAF-DB originals, original CK+);
* ``settings``: the `AlignSettings` used for aligned data, and the ones prediction applies to
  photographs in either case. Pre-aligned crops were made by the data set's authors: for FER2013
  and CK+48 the ``fer2013`` template reproduces their framing (measured on FER2013, see
  `pasm.data.align.TEMPLATES`); for the others the configured template (default ``fer-v1``) is the
  nearest pasm has;
* ``grey``: whether the training faces were greyscale (FER2013, CK+): prediction then converts
  each aligned photo to grey, replicated to three channels, as the training faces were stored.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from pasm.data.align import AlignSettings

log = logging.getLogger(__name__)

CARD_VERSION = 1
GREY_FORMATS = ("fer2013", "ckplus")
"""Readers whose images are greyscale: FER2013's pixels and CK+ (CK+48 crops and the original frames)."""
CROP_TEMPLATES = {"fer2013": "fer2013", "ckplus": "fer2013"}
"""Template that matches the framing of a reader's pre-aligned crops (FER2013's 48 px faces, CK+48's)."""


def _pre_aligned(ds: dict[str, Any]) -> bool:
    """Whether the data set's reader hands over already cropped faces (only resized) rather than photographs."""
    fmt = ds["format"]
    if fmt == "rafdb":
        return (ds.get("rafdb") or {}).get("images", "aligned") == "aligned"
    if fmt == "ckplus":
        return not (Path(ds["root"]) / "cohn-kanade-images").is_dir()  # the reader's own layout test
    if fmt == "affectnet":
        return False  # photos, aligned by pasm from the release's landmarks (or cropped with its boxes)
    return True  # fer2013, folder, demo


def face_preparation(ds: dict[str, Any]) -> dict[str, Any]:
    """The complete alignment record of a model trained on data set block `ds` (see the module docstring)."""
    align = {k: v for k, v in (ds.get("align") or {}).items() if k != "batch_size"}
    pre_aligned = _pre_aligned(ds)
    if pre_aligned and ds["format"] in CROP_TEMPLATES:
        align["template"] = CROP_TEMPLATES[ds["format"]]
    settings = AlignSettings(size=ds["image_size"], **align)
    return {
        "version": CARD_VERSION,
        "format": ds["format"],
        "image_size": ds["image_size"],
        "source": "pre-aligned" if pre_aligned else "aligned",
        "settings": settings.to_dict(),
        "grey": ds["format"] in GREY_FORMATS,
    }


def stored_preparation(meta: dict[str, Any]) -> dict[str, Any]:
    """The alignment record of a loaded model; for files saved before it was complete, a logged best guess.

    Older files hold only ``{"format", "image_size"}``: the guess is the default settings at that
    size, greyscale for FER2013 and CK+, colour otherwise; FER2013 models and CK+ models of 48 px
    are taken to be trained on the data sets' crops (template ``fer2013``).
    """
    stored = dict(meta.get("alignment") or {})
    size = int(stored.get("image_size", meta["image_size"]))
    if stored.get("version") == CARD_VERSION and "settings" in stored and "grey" in stored:
        settings = AlignSettings(**{**stored["settings"], "size": size})
        return {**stored, "settings": settings.to_dict(), "image_size": size}
    fmt = stored.get("format", meta.get("dataset", "unknown"))
    crops = fmt == "fer2013" or (fmt == "ckplus" and size == 48)  # FER2013 is crops only; CK+ at 48 px: CK+48
    template = CROP_TEMPLATES[fmt] if crops else AlignSettings.template
    guess = {
        "version": CARD_VERSION,
        "format": fmt,
        "image_size": size,
        "source": "pre-aligned" if crops else "unknown",
        "settings": AlignSettings(size=size, template=template).to_dict(),
        "grey": fmt in GREY_FORMATS,
    }
    log.warning(
        "model file has no complete alignment record (format %r, %d px): assuming template %r "
        "and %s input", fmt, size, guess["settings"]["template"], "greyscale" if guess["grey"] else "colour",
    )
    return guess
