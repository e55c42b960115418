"""`pasm serve`: the predictor behind HTTP, loaded once: POST /predict, GET /health, GET / (a page).

FastAPI on uvicorn: request parsing, validation, JSON errors and the OpenAPI description come with
it, it is what Python ML services are usually built on, and its test tooling is plain HTTP. One
Predictor (MTCNN plus the model) is built at start-up; requests share it under a lock, so the
model is never loaded twice and two requests never run the network at once.

POST /predict takes a multipart upload (field ``file``) or JSON ``{"image": "<base64>"}`` and
answers ``{"faces": [...]}`` with the fields of `pasm predict` per face. Errors are JSON
``{"error": ...}``, every one of them: 400 (no image in the request, bad base64, malformed multipart
or JSON), 404/405 (no such route or method), 413 (a body or an image larger than ``max_bytes``, or an
image with more pixels than `pixel_limit`, or one a step of the detection would make too large),
415 (not a decodable image), 422 (no face found), 500 (a bug: ``{"error": "internal error"}``, the
traceback goes to the log).

The request body is read as it streams and refused (413) as soon as it passes the limit, whether it
comes with a Content-Length or chunked, so an upload costs at most about the limit in memory. Parsing,
decoding and inference run in worker threads (`WORKERS` at most at once, the model under its lock),
never on the event loop, so /health and the other requests' I/O are answered while images are
being classified.
"""

from __future__ import annotations

import base64
import binascii
import io
import json
import logging
import os
import re
import threading
from pathlib import Path
from typing import Any

import anyio
import numpy as np
from fastapi import FastAPI, Request  # module level: the handlers' annotations must resolve here
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect

from pasm.app.predict import Predictor, face_record
from pasm.data import decode

log = logging.getLogger(__name__)

MAX_BYTES = 10 * 2**20
"""Largest accepted upload (10 MiB); larger ones get 413."""

MAX_PIXELS = 50_000_000
"""Most pixels an uploaded image may have (checked from its header, before decoding; 413 beyond):
below `pasm.data.decode.MAX_PIXELS`, as up to WORKERS uploads are decoded at once (150 MB each)."""

FORM_OVERHEAD = 64 * 2**10
"""Room for the multipart boundaries and part headers, or the JSON around the base64, beyond the image."""

WORKERS = max(2, min(4, os.cpu_count() or 1))
"""Requests parsed, decoded and classified at once (threads; the model itself runs one at a time under
its lock): bounds the decoded images held in memory to this many."""


class RequestError(Exception):
    """A request the service answers with an HTTP error status and a JSON message."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message


def pixel_limit() -> int:
    """The largest pixel count of an upload: MAX_PIXELS, or `pasm.data.decode.MAX_PIXELS` if lower."""
    return min(MAX_PIXELS, decode.MAX_PIXELS)


_REPR = re.compile(r"<[^<>]*\bat 0x[0-9a-fA-F]+>")
_PATH = re.compile(r"(?<![\w.:/])/(?:[^\s/'\"]+/)+[^\s/'\"]*")


def _public(message: object) -> str:
    """An exception's message without Python object reprs or file-system paths (for answers)."""
    return _PATH.sub("<path>", _REPR.sub("the upload", str(message))).strip()


def decode_upload(data: bytes, name: str, max_bytes: int = MAX_BYTES) -> np.ndarray:
    """RGB pixels of uploaded bytes; RequestError 413 when too large (bytes, or pixels as the
    header tells), 400 when empty, 415 when not an image."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    if len(data) > max_bytes:
        raise RequestError(413, f"{name}: {len(data)} bytes, more than the limit of {max_bytes}")
    if not data:
        raise RequestError(400, f"{name}: empty upload")
    cap = pixel_limit()
    try:
        with Image.open(io.BytesIO(data)) as im:
            width, height = im.size
            if width * height > cap:
                raise RequestError(
                    413, f"{name}: {width}x{height} = {width * height} pixels, more than the limit of {cap}"
                )
            return np.asarray(ImageOps.exif_transpose(im).convert("RGB"), dtype=np.uint8)
    except Image.DecompressionBombError:  # Image.open's own refusal, far above `cap`
        raise RequestError(413, f"{name}: more pixels than the limit of {cap}") from None
    except UnidentifiedImageError:
        raise RequestError(415, f"{name}: not a readable image (unknown format)") from None
    except (OSError, ValueError, SyntaxError, EOFError) as exc:
        raise RequestError(415, f"{name}: not a readable image ({_public(exc)})") from None


def parse_multipart(body: bytes, content_type: str) -> tuple[str, bytes]:
    """(file name, bytes) of the complete part named ``file`` of a multipart/form-data body; 400 if
    the body has no boundary, is malformed, or has no such part."""
    from python_multipart.exceptions import FormParserError
    from python_multipart.multipart import MultipartParser, parse_options_header

    boundary = parse_options_header(content_type)[1].get(b"boundary")
    if not boundary:
        raise RequestError(400, "multipart/form-data without a boundary in its Content-Type")
    parts: list[dict[str, Any]] = []
    field, value = bytearray(), bytearray()

    def header_end() -> None:
        parts[-1]["headers"][bytes(field).strip().lower()] = bytes(value).strip()
        field.clear()
        value.clear()

    callbacks = {
        "on_part_begin": lambda: parts.append({"headers": {}, "data": bytearray(), "complete": False}),
        "on_header_field": lambda data, start, end: field.extend(data[start:end]),
        "on_header_value": lambda data, start, end: value.extend(data[start:end]),
        "on_header_end": header_end,
        "on_part_data": lambda data, start, end: parts[-1]["data"].extend(data[start:end]),
        "on_part_end": lambda: parts[-1].update(complete=True),
    }
    try:
        parser = MultipartParser(boundary, callbacks)
        parser.write(body)
        parser.finalize()
    except (FormParserError, ValueError, IndexError) as exc:
        raise RequestError(400, f"malformed multipart/form-data body ({_public(exc)})") from None
    for part in parts:
        disposition = parse_options_header(part["headers"].get(b"content-disposition", b""))[1]
        if part["complete"] and disposition.get(b"name") == b"file" and b"filename" in disposition:
            name = disposition[b"filename"].decode("utf-8", "replace") or "upload"
            return name, bytes(part["data"])
    raise RequestError(400, "multipart request without a complete 'file' field (a file upload)")


def parse_json(body: bytes) -> tuple[str, bytes]:
    """(name, image bytes) of a JSON body ``{"image": "<base64>", "name": ...}``; 400 otherwise,
    also for documents nested too deeply for the parser."""
    usage = 'JSON body must be {"image": "<base64>"}, optionally with "name"'
    try:
        doc = json.loads(body)
    except RecursionError:
        raise RequestError(400, f"JSON nested too deeply; {usage}") from None
    except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError
        raise RequestError(400, f"not valid JSON ({_public(exc)}); {usage}") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("image"), str):
        raise RequestError(400, usage)
    name = doc.get("name")
    name = name if isinstance(name, str) and name else "upload"
    try:
        return name, base64.b64decode(doc["image"], validate=True)
    except (binascii.Error, ValueError) as exc:
        raise RequestError(400, f'{name}: "image" is not valid base64 ({_public(exc)})') from None


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


async def read_body(request: Request, limit: int, max_bytes: int) -> bytes:
    """The request body, read as it streams: RequestError 413 as soon as it passes `limit` bytes
    (declared by Content-Length or counted while a chunked body arrives), so no more is buffered.
    max_bytes: the largest image, named in the message."""
    why = f"more than the limit of {limit} bytes for an image of at most {max_bytes} bytes"
    declared = request.headers.get("content-length")
    if declared is not None:
        try:
            length = int(declared)
        except ValueError:
            raise RequestError(400, "Content-Length is not a number") from None
        if length > limit:
            raise RequestError(413, f"request of {length} bytes, {why}")
    body = bytearray()
    try:
        async for chunk in request.stream():
            body += chunk
            if len(body) > limit:
                raise RequestError(413, f"request body of {why}")
    except ClientDisconnect:
        raise RequestError(400, "the client disconnected while sending the body") from None
    return bytes(body)


def create_app(
    model_path: str | Path, device: str = "cpu", max_bytes: int = MAX_BYTES, min_face_prob: float = 0.9
) -> Any:
    """The FastAPI application serving one model file (loaded and checked here, once)."""
    predictor = Predictor(model_path, device, min_face_prob=min_face_prob)
    lock = threading.Lock()
    limits: dict[str, anyio.CapacityLimiter] = {}  # made in the event loop, at the first request
    # base64 grows the image by 4/3; the multipart or JSON around it gets FORM_OVERHEAD
    body_limits = {"multipart": max_bytes + FORM_OVERHEAD, "json": 4 * (max_bytes + 2) // 3 + FORM_OVERHEAD}
    health_record = {
        "status": "ok",
        "model": Path(model_path).name,
        "arch": predictor.meta["arch"],
        "classes": predictor.classes,
        "image_size": predictor.settings.size,
    }
    page_html = Path(__file__).with_name("page.html").read_text()
    app = FastAPI(title="pasm", description="Facial expression recognition with a pasm model")

    @app.exception_handler(RequestError)
    async def request_error(_: Request, exc: RequestError) -> JSONResponse:
        return JSONResponse({"error": exc.message}, status_code=exc.status)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        return JSONResponse({"error": str(exc.detail)}, status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e.get('loc', ()))}: {e.get('msg', 'invalid')}" for e in exc.errors()
        )
        return JSONResponse({"error": f"invalid request: {problems}"}, status_code=422)

    @app.exception_handler(Exception)
    async def internal_error(request: Request, exc: Exception) -> JSONResponse:
        log.error("internal error answering %s %s", request.method, request.url.path, exc_info=exc)
        return JSONResponse({"error": "internal error"}, status_code=500)

    def work(kind: str, content_type: str, body: bytes) -> dict[str, Any]:
        """Parse, decode and classify one request's body (in a worker thread)."""
        try:
            name, data = parse_multipart(body, content_type) if kind == "multipart" else parse_json(body)
            image = decode_upload(data, name, max_bytes)
            del data
            return answer(predictor, image, name, lock)
        except RequestError:
            raise
        except decode.ImageTooLarge as exc:  # a step of the detection would make too large an image
            raise RequestError(413, f"image too large to process ({_public(exc)})") from None
        except Exception:
            log.exception("internal error answering POST /predict")
            raise RequestError(500, "internal error") from None

    @app.get("/health")
    async def health() -> dict[str, Any]:  # async: answered on the event loop, never queued behind work
        return health_record

    @app.post("/predict")
    async def predict(request: Request) -> dict[str, Any]:
        content_type = request.headers.get("content-type", "")
        media = content_type.split(";", 1)[0].strip().lower()
        if media == "multipart/form-data":
            kind = "multipart"
        elif media == "application/json":
            kind = "json"
        else:
            raise RequestError(
                400, f"send multipart/form-data with a 'file' field or JSON, not {media or 'nothing'}"
            )
        body = await read_body(request, body_limits[kind], max_bytes)
        if "work" not in limits:
            limits["work"] = anyio.CapacityLimiter(WORKERS)
        return await anyio.to_thread.run_sync(work, kind, content_type, body, limiter=limits["work"])

    @app.get("/", response_class=HTMLResponse)
    async def page() -> str:
        return page_html

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
