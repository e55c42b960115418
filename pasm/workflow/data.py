"""Stages of workflow/rules/data.smk: the generated demo data set, and faces.h5 of every data set."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

from pasm.data.demo_dataset import write_demo_dataset
from pasm.data.faces import build_faces
from pasm.data.h5store import Faces
from pasm.data.readers import read_dataset
from pasm.nn.inference import resolve_device


def demo_images(
    *,
    manifest: str,
    demo_root: str,
    seed: int,
    per_class: dict[str, int],
    label_noise: float,
    image_size: int,
) -> Path:
    """Render the synthetic demo data set into ``demo_root`` (image folders plus ``manifest``)."""
    written = write_demo_dataset(
        demo_root, seed=seed, size=image_size, per_class=per_class, label_noise=label_noise
    )
    if Path(written) != Path(manifest):
        raise ValueError(f"the demo generator wrote {written}, not the declared output {manifest}")
    return written


def faces(
    *,
    source: Sequence[str],
    faces: str,
    ds: str,
    fmt: str,
    root: str,
    options: dict[str, Any],
    image_size: int,
    align: dict[str, Any],
    resize: str = "crop",
    device: str = "cpu",
) -> Faces:
    """Read a data set with its reader (``source``: the root and list files it opens), align or
    resize every face, and write faces.h5 with the record of how its faces were made."""
    output = read_dataset(fmt, root, options)
    return build_faces(
        output,
        image_size,
        attrs={"dataset": ds, "format": fmt, "root": root},
        align=align,
        device=resolve_device(device),
        resize=resize,
        out_path=faces,
    )
