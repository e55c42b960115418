"""How a data set's faces were made, recorded in faces.h5 and model files to prepare photographs alike.

`pasm.data.faces.build_faces` writes it (`face_preparation`) as faces.h5's ``attrs["preparation"]``;
training copies it into a model file's ``meta["alignment"]``. It holds:

* ``format``, ``image_size``: the data set's reader and the side of the faces the network saw;
* ``source``: ``"pre-aligned"`` when the data set came already cropped (FER2013, CK+48, RAF-DB's
  aligned images, folders, the demo) and pasm only resized it, or ``"aligned"`` when pasm detected
  and aligned photographs itself (RAF-DB originals, original CK+) or aligned them with the data
  set's landmarks or boxes (AffectNet);
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
from typing import Any

from pasm.data.align import AlignSettings

log = logging.getLogger(__name__)

CARD_VERSION = 1
GREY_FORMATS = ("fer2013", "ckplus")
"""Readers whose images are greyscale: FER2013's pixels and CK+ (CK+48 crops and the original frames)."""
CROP_TEMPLATES = {"fer2013": "fer2013", "ckplus": "fer2013"}
"""Template that matches the framing of a reader's pre-aligned crops (FER2013's 48 px faces, CK+48's)."""


def face_preparation(fmt: str, image_size: int, align: dict[str, Any], pre_aligned: bool) -> dict[str, Any]:
    """The complete preparation record of faces of reader `fmt` at `image_size`, aligned with `align`
    (the data set's align block) or, when `pre_aligned`, only resized (see the module docstring)."""
    align = {k: v for k, v in (align or {}).items() if k != "batch_size"}
    if pre_aligned and fmt in CROP_TEMPLATES:
        align["template"] = CROP_TEMPLATES[fmt]
    settings = AlignSettings(size=image_size, **align)
    return {
        "version": CARD_VERSION,
        "format": fmt,
        "image_size": image_size,
        "source": "pre-aligned" if pre_aligned else "aligned",
        "settings": settings.to_dict(),
        "grey": fmt in GREY_FORMATS,
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
        "model file has no complete alignment record (format %r, %d px): assuming template %r and %s input",
        fmt,
        size,
        guess["settings"]["template"],
        "greyscale" if guess["grey"] else "colour",
    )
    return guess
