"""`pasm serve`: the predictor behind HTTP, loaded once: POST /predict, GET /health, GET / (a page).

FastAPI on uvicorn: request parsing, validation, JSON errors and the OpenAPI description come with
it, it is what Python ML services are usually built on, and its test tooling is plain HTTP. One
Predictor (MTCNN plus the model) is built at start-up; requests share it under a lock, so the
model is never loaded twice and two requests never run the network at once.

POST /predict takes a multipart upload (field ``file``) or JSON ``{"image": "<base64>"}`` and
answers ``{"faces": [...]}`` with the fields of `pasm predict` per face. Errors are JSON
``{"error": ...}``: 400 (no image in the request, bad base64), 413 (larger than ``max_bytes``),
415 (not a decodable image), 422 (no face found).
"""

from __future__ import annotations

import base64
import binascii
import io
import logging
import threading
from pathlib import Path
from typing import Any

import numpy as np
from fastapi import FastAPI, Request  # module level: the handlers' annotations must resolve here
from fastapi.responses import HTMLResponse, JSONResponse

from pasm.app.predict import Predictor, face_record

log = logging.getLogger(__name__)

MAX_BYTES = 10 * 2**20
"""Largest accepted upload (10 MiB); larger ones get 413."""


class RequestError(Exception):
    """A request the service answers with an HTTP error status and a JSON message."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message


def decode_upload(data: bytes, name: str, max_bytes: int = MAX_BYTES) -> np.ndarray:
    """RGB pixels of uploaded bytes; RequestError 413 when too large, 415 when not an image."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    if len(data) > max_bytes:
        raise RequestError(413, f"{name}: {len(data)} bytes, more than the limit of {max_bytes}")
    if not data:
        raise RequestError(400, f"{name}: empty upload")
    try:
        with Image.open(io.BytesIO(data)) as im:
            return np.asarray(ImageOps.exif_transpose(im).convert("RGB"), dtype=np.uint8)
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        raise RequestError(415, f"{name}: not a readable image ({exc})") from None


def answer(predictor: Predictor, image: np.ndarray, name: str, lock: threading.Lock) -> dict[str, Any]:
    """The faces of one image as `pasm predict` reports them; RequestError 422 without a face."""
    with lock:
        faces = predictor.predict([image])[0]
    if not faces:
        raise RequestError(422, f"{name}: no face found")
    h, w = image.shape[:2]
    return {
        "file": name,
        "width": w,
        "height": h,
        "classes": predictor.classes,
        "faces": [face_record(name, k, f, predictor.classes) for k, f in enumerate(faces)],
    }


def create_app(
    model_path: str | Path, device: str = "cpu", max_bytes: int = MAX_BYTES, min_face_prob: float = 0.9
) -> Any:
    """The FastAPI application serving one model file (loaded and checked here, once)."""
    predictor = Predictor(model_path, device, min_face_prob=min_face_prob)
    lock = threading.Lock()
    app = FastAPI(title="pasm", description="Facial expression recognition with a pasm model")

    @app.exception_handler(RequestError)
    async def request_error(_: Request, exc: RequestError) -> JSONResponse:
        return JSONResponse({"error": exc.message}, status_code=exc.status)

    @app.get("/health")
    def health() -> dict[str, Any]:
        return {
            "status": "ok",
            "model": str(model_path),
            "arch": predictor.meta["arch"],
            "classes": predictor.classes,
            "image_size": predictor.settings.size,
        }

    @app.post("/predict")
    async def predict(request: Request) -> dict[str, Any]:
        kind = request.headers.get("content-type", "")
        length = int(request.headers.get("content-length") or 0)
        if length > max_bytes * 4 // 3 + 4096:  # base64 grows the image by 4/3
            raise RequestError(413, f"request of {length} bytes, more than the limit of {max_bytes}")
        if kind.startswith("multipart/form-data"):
            form = await request.form()
            upload = form.get("file")
            if upload is None or not hasattr(upload, "read"):
                raise RequestError(400, "multipart request without a 'file' field")
            name, data = upload.filename or "upload", await upload.read()
        elif kind.startswith("application/json"):
            try:
                body = await request.json()
                name, data = str(body.get("name", "upload")), base64.b64decode(body["image"], validate=True)
            except (ValueError, KeyError, TypeError, AttributeError, binascii.Error) as exc:
                raise RequestError(400, f'JSON body must be {{"image": "<base64>"}} ({exc})') from None
        else:
            raise RequestError(
                400, f"send multipart/form-data with a 'file' field or JSON, not {kind or 'nothing'}"
            )
        image = decode_upload(data, name, max_bytes)
        return answer(predictor, image, name, lock)

    @app.get("/", response_class=HTMLResponse)
    def page() -> str:
        return (Path(__file__).with_name("page.html")).read_text()

    return app


def serve(
    model_path: str | Path,
    host: str = "127.0.0.1",
    port: int = 8000,
    device: str = "cpu",
    max_bytes: int = MAX_BYTES,
    min_face_prob: float = 0.9,
) -> None:
    """Build the app (model checked first) and run it with uvicorn until interrupted."""
    import uvicorn

    app = create_app(model_path, device, max_bytes, min_face_prob)
    log.info("serving %s on http://%s:%d/", model_path, host, port)
    uvicorn.run(app, host=host, port=port, log_level="info")
