"""`pasm predict`: expressions of the faces in photographs, from one self-describing model file.

Each photograph goes through MTCNN; every face found is aligned with the settings the model file
records (`pasm.data.preparation`), converted to grey when the training faces were grey, and classified.
Output is one JSON object per face (or per faceless or unreadable file) on stdout, in input
order; progress and errors go to stderr. Every input is answered whatever happens to another: a file
that cannot be read, a broken symbolic link (named on the command line or found in a folder) and a
photo whose detection or classification fails each get an error record with the reason.
"""

from __future__ import annotations

import json
import logging
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Sequence, TextIO

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

from pasm.data.align import AlignSettings, FaceAligner, align_face
from pasm.data.atomic import atomic_path
from pasm.data.decode import IMAGE_SUFFIXES, load_image
from pasm.data.preparation import stored_preparation
from pasm.data.readers.folder import broken_link
from pasm.nn.inference import inference_model, resolve_device
from pasm.nn.inputs import to_input
from pasm.nn.models import load_model

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Input:
    """One file to answer for: its path, and its name under the --annotate folder."""

    path: Path
    relative: Path


@dataclass
class Face:
    """One detected face: box in original pixels, detection probability, prepared crop and class
    probabilities."""

    box: np.ndarray
    detection: float
    crop: np.ndarray
    probabilities: np.ndarray


def find_images(paths: Sequence[str | Path]) -> list[Input]:
    """Files as named, plus every image under named folders (recursively, sorted), each once.

    Broken symbolic links named like images in a folder are listed too, so that each is answered
    with an error naming it rather than passed over (hidden ones, such as an editor's `.#name.jpg`
    lock links, are not)."""
    found: list[Input] = []
    seen: set[Path] = set()
    for arg in map(Path, paths):
        if arg.is_dir():
            files = sorted(
                p
                for p in arg.rglob("*")
                if p.suffix.lower() in IMAGE_SUFFIXES
                and (p.is_file() or (not p.name.startswith(".") and broken_link(p) is not None))
            )
            entries = [Input(p, Path(arg.resolve().name or "root") / p.relative_to(arg)) for p in files]
        else:
            entries = [Input(arg, Path(arg.name))]  # a missing file or broken link is answered later
        for entry in entries:
            key = _identity(entry.path)
            if key not in seen:
                seen.add(key)
                found.append(entry)
    return found


def _identity(path: Path) -> Path:
    """The file a path names (links followed), to list each file once; a broken link is itself."""
    if broken_link(path) is not None:
        return path.absolute()
    try:
        return path.resolve()
    except (OSError, RuntimeError):  # e.g. a loop of links inside the path
        return path.absolute()


def to_grey(faces: np.ndarray) -> np.ndarray:
    """uint8 (N, H, W, 3) RGB -> the same shape in grey (PIL's ITU-R 601 luma, replicated to 3 channels)."""
    grey = [np.asarray(Image.fromarray(face).convert("L")) for face in faces]
    return np.repeat(np.stack(grey)[..., None], 3, axis=3) if grey else faces.copy()


class Predictor:
    """A model file's network plus the face preparation it records: photographs in, per-face
    probabilities out."""

    def __init__(
        self,
        model_path: str | Path,
        device: str = "auto",
        batch_size: int = 32,
        detect_batch: int = 16,
        min_face_prob: float = 0.0,
    ) -> None:
        """Load the model (eval mode, folded for inference) and an MTCNN aligner with the stored settings."""
        self.device = resolve_device(device)
        model, self.meta = load_model(model_path, self.device)
        self.model = inference_model(model, self.device)
        self.classes: list[str] = list(self.meta["classes"])
        self.preparation = stored_preparation(self.meta)
        self.settings = AlignSettings(**self.preparation["settings"])
        self.grey = bool(self.preparation["grey"])
        self.batch_size = max(1, int(batch_size))
        self.min_face_prob = float(min_face_prob)
        self.aligner = FaceAligner(self.settings, device=self.device, batch_size=detect_batch)
        log.info(
            "model %s: %s, %d classes, %d px %s faces, alignment %s (training data %s)",
            model_path,
            self.meta["arch"],
            len(self.classes),
            self.settings.size,
            "grey" if self.grey else "colour",
            self.settings.template,
            self.preparation["source"],
        )

    def prepare(self, image: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
        """One RGB photo's face, aligned to the stored template at the model's size (grey if trained on
        grey)."""
        crop = align_face(image, landmarks, self.settings)[0]
        return to_grey(crop[None])[0] if self.grey else crop

    def classify(self, faces: np.ndarray) -> np.ndarray:
        """Class probabilities (N, C), float64, of prepared uint8 (N, size, size, 3) faces, in batches."""
        out = []
        with torch.inference_mode():
            for start in range(0, len(faces), self.batch_size):
                chunk = torch.from_numpy(np.ascontiguousarray(faces[start : start + self.batch_size]))
                x = to_input(chunk.to(self.device), self.meta["mean"], self.meta["std"])
                out.append(torch.softmax(self.model(x).double(), dim=1).cpu().numpy())
        return np.concatenate(out) if out else np.zeros((0, len(self.classes)))

    def predict(self, images: Sequence[np.ndarray]) -> list[list[Face]]:
        """Per RGB image, its faces (largest first, those below min_face_prob left out), classified in
        batches."""
        found = []
        for image, faces in zip(images, self.aligner.detect_all(images)):
            found.append(
                [
                    (box, prob, self.prepare(image, marks))
                    for box, marks, prob in faces
                    if prob >= self.min_face_prob
                ]
            )
        crops = [crop for faces in found for _, _, crop in faces]
        probs = iter(self.classify(np.stack(crops)) if crops else [])
        results = []
        for image, faces in zip(images, found):
            h, w = image.shape[:2]
            results.append(
                [Face(np.clip(box, 0, [w, h, w, h]), prob, crop, next(probs)) for box, prob, crop in faces]
            )
        return results


def face_record(file: str, index: int, face: Face, classes: Sequence[str]) -> dict[str, Any]:
    """The JSON object of one classified face."""
    probs = {c: round(float(p), 6) for c, p in zip(classes, face.probabilities)}
    return {
        "file": file,
        "face": index,
        "box": [round(float(v), 1) for v in face.box],
        "probabilities": probs,
        "label": classes[int(np.argmax(face.probabilities))],
        "status": "ok",
        "detection": round(face.detection, 4),
    }


def annotate(image: np.ndarray, faces: Sequence[Face], classes: Sequence[str], path: Path) -> None:
    """Write a copy of the photo with each face's box and top label drawn (PIL), creating folders as
    needed."""
    im = annotated(image, faces, classes)
    fmt = Image.registered_extensions().get(path.suffix.lower())
    if fmt is None:
        raise ValueError(f"unknown file extension: {path.suffix!r}")
    with atomic_path(path) as tmp:  # a failed write leaves no file under the final name
        im.save(tmp, format=fmt)


def annotated(image: np.ndarray, faces: Sequence[Face], classes: Sequence[str]) -> Image.Image:
    """A copy of the RGB image with each face's box and top label drawn."""
    im = Image.fromarray(image)
    draw = ImageDraw.Draw(im)
    side = max(image.shape[:2])
    width = max(2, side // 250)
    font = ImageFont.load_default(size=max(12, side // 35))
    for face in faces:
        x0, y0, x1, y1 = (float(v) for v in face.box)
        top = int(np.argmax(face.probabilities))
        text = f"{classes[top]} {face.probabilities[top]:.2f}"
        draw.rectangle((x0, y0, x1, y1), outline=(255, 40, 40), width=width)
        left, upper, right, lower = draw.textbbox((x0, y0), text, font=font)
        dy = lower - upper + 2 * width
        label_y = y0 - dy if y0 - dy >= 0 else y1
        draw.rectangle((x0, label_y, x0 + right - left + 2 * width, label_y + dy), fill=(255, 40, 40))
        draw.text((x0 + width, label_y + width - (upper - y0)), text, fill=(255, 255, 255), font=font)
    return im


def _read(path: Path) -> np.ndarray:
    """A photo's RGB pixels; ValueError naming the path when it cannot be read (a broken link too)."""
    reason = broken_link(path)
    if reason is not None:
        raise ValueError(f"{path}: {reason}")
    return load_image(path)


def _faces(predictor: Predictor, images: list[np.ndarray]) -> list[list[Face] | str]:
    """Each image's faces, detected and classified together; when that fails, image by image, so that
    only the photo that fails is answered with its error message (a str in its place)."""
    if not images:
        return []
    try:
        return list(predictor.predict(images))
    except Exception as exc:
        if len(images) == 1:
            return [f"{type(exc).__name__}: {exc}"]
        log.warning("a batch of %d photos failed (%s); retrying them one by one", len(images), exc)
    answers: list[list[Face] | str] = []
    for image in images:
        try:
            answers.extend(predictor.predict([image]))
        except Exception as exc:
            answers.append(f"{type(exc).__name__}: {exc}")
    return answers


def _annotation_path(folder: Path, relative: Path, used: set[Path]) -> Path:
    """A not yet used file under folder for this input (name-2, name-3, ... on clashes)."""
    path, n = folder / relative, 1
    while path in used:
        n += 1
        path = folder / relative.with_name(f"{relative.stem}-{n}{relative.suffix}")
    used.add(path)
    return path


def predict_files(
    inputs: Sequence[Input],
    predictor: Predictor,
    out: TextIO = sys.stdout,
    annotate_dir: str | Path | None = None,
    chunk: int = 16,
) -> int:
    """Write one JSON line per face (or per faceless / unreadable file) to out; returns the unreadable count.

    Files are decoded, detected and classified `chunk` at a time, so folders of any size fit in memory.
    Whatever fails for one file (a broken link, decoding, detection, classification) is that file's
    error record, never the end of the run.
    """
    unreadable, used = 0, set()
    for start in range(0, len(inputs), max(1, chunk)):
        part = inputs[start : start + max(1, chunk)]
        images: list[np.ndarray | None] = []
        errors: list[str] = []
        for entry in part:
            try:
                images.append(_read(entry.path))
                errors.append("")
            except Exception as exc:  # any decoder failure is this file's answer, not the run's end
                message = (
                    str(exc) if isinstance(exc, ValueError) else f"cannot decode image {entry.path}: {exc}"
                )
                images.append(None)
                errors.append(message)
                print(f"pasm predict: {message}", file=sys.stderr, flush=True)
        readable = [im for im in images if im is not None]
        answers: Iterator[list[Face] | str] = iter(_faces(predictor, readable))
        for entry, image, error in zip(part, images, errors):
            file = str(entry.path)
            faces = None if image is None else next(answers)
            if isinstance(faces, str):  # detection or classification failed on this photo
                error = f"cannot classify the faces of {file}: {faces}"
                print(f"pasm predict: {error}", file=sys.stderr, flush=True)
            if image is None or isinstance(faces, str):
                unreadable += 1
                records = [{"file": file, "status": "error", "error": error}]
            else:
                records = [face_record(file, k, f, predictor.classes) for k, f in enumerate(faces)] or [
                    {"file": file, "status": "no_face"}
                ]
                if annotate_dir is not None:
                    target = _annotation_path(Path(annotate_dir), entry.relative, used)
                    try:
                        annotate(image, faces, predictor.classes, target)
                    except Exception as exc:  # e.g. a format PIL reads but cannot write: a warning only
                        log.warning("could not write %s: %s", target, exc)
            for record in records:
                out.write(json.dumps(record) + "\n")
        out.flush()
        log.info("%d/%d files done", min(start + len(part), len(inputs)), len(inputs))
    return unreadable
