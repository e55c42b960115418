"""`pasm serve` for real: the service started on a loopback port, answering a face photo, a
corrupt file, a photo without a face, bad requests (every error as JSON {"error": ...}, a chunked body
over the limit refused while it streams, JSON nested too deeply, images with too many pixels); and its
page driven by headless Chromium. The load test (many requests at once) is tests/test_serve_load.py."""

from __future__ import annotations

import base64
import http.client
import importlib.util
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
import zlib
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
from conftest import REPO
from PIL import Image
from predict_cases import photo, tiny_model_file

from pasm.app.serve import pixel_limit as serve_pixel_limit
from pasm.data import decode
from pasm.data.labels import CLASSES

pytest.importorskip("fastapi")

MAX_MB = 1
"""The test server's --max-mb."""


def _load_benchmark():
    """benchmarks/load.py (its chunked sender and memory reading)."""
    spec = importlib.util.spec_from_file_location("load_benchmark", REPO / "benchmarks" / "load.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """A running `pasm serve` (its own process): its base URL and process; stopped after the module."""
    folder = tmp_path_factory.mktemp("serve")
    model = tiny_model_file(folder / "model.pt")
    port = _free_port()
    log = open(folder / "serve.log", "w")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "pasm.app.cli",
            "serve",
            "--model",
            str(model),
            "--port",
            str(port),
            "--device",
            "cpu",
            "--max-mb",
            str(MAX_MB),
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(600):
            try:
                with urllib.request.urlopen(url + "/health", timeout=1) as reply:
                    if reply.status == 200:
                        break
            except OSError:
                if proc.poll() is not None:
                    raise RuntimeError(f"pasm serve exited: {(folder / 'serve.log').read_text()}")
                time.sleep(0.1)
        yield url, proc
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        log.close()


@pytest.fixture
def server(served):
    """The running `pasm serve`'s base URL."""
    return served[0]


def _post(url: str, body: bytes, content_type: str) -> tuple[int, dict]:
    """POST to /predict and read the answer, also when the server answers before reading the whole
    body (an early 413) and closes the connection while it is still being sent, as curl does."""
    parts = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=120)
    try:
        try:
            conn.request("POST", "/predict", body=body, headers={"Content-Type": content_type})
        except (BrokenPipeError, ConnectionResetError):
            pass  # the answer was sent before the server stopped reading: it is still to be read
        reply = conn.getresponse()
        return reply.status, _json(reply.read())
    finally:
        conn.close()


def _json(raw: bytes) -> dict:
    """The JSON answer, or {"not JSON": text} (so a test fails on an assertion, not while reading)."""
    try:
        return json.loads(raw)
    except ValueError:
        return {"not JSON": raw.decode("utf-8", "replace")[:500]}


def _get(url: str, path: str, method: str = "GET") -> tuple[int, dict]:
    parts = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=60)
    try:
        conn.request(method, path)
        reply = conn.getresponse()
        return reply.status, _json(reply.read())
    finally:
        conn.close()


def _multipart(name: str, data: bytes) -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{name}"\r\n'
            f"Content-Type: application/octet-stream\r\n\r\n"
        ).encode()
        + data
        + f"\r\n--{boundary}--\r\n".encode()
    )
    return body, f"multipart/form-data; boundary={boundary}"


def test_health_and_a_face_photo(server):
    with urllib.request.urlopen(server + "/health") as reply:
        health = json.loads(reply.read())
    assert health["status"] == "ok" and health["classes"] == list(CLASSES)
    status, body = _post(server, *_multipart("angry.jpg", photo("angry.jpg").read_bytes()))
    assert status == 200, body
    assert len(body["faces"]) == 1
    face = body["faces"][0]
    assert set(face) >= {"box", "probabilities", "label", "detection"}
    assert abs(sum(face["probabilities"].values()) - 1) < 1e-4 and face["label"] in CLASSES
    status_json, again = _post(
        server,
        json.dumps(
            {"image": base64.b64encode(photo("angry.jpg").read_bytes()).decode(), "name": "angry.jpg"}
        ).encode(),
        "application/json",
    )
    assert (
        status_json == 200 and again["faces"][0]["probabilities"] == face["probabilities"]
    )  # one model, same answer


def test_bad_uploads_get_json_errors_and_the_service_keeps_serving(server, tmp_path):
    status, body = _post(server, *_multipart("corrupt.jpg", b"\xff\xd8\xff not a jpeg at all"))
    assert status == 415 and "corrupt.jpg" in body["error"]
    buf = tmp_path / "wall.png"
    Image.fromarray(np.tile(np.linspace(0, 255, 300, dtype=np.uint8), (200, 1))).convert("RGB").save(buf)
    status, body = _post(server, *_multipart("wall.png", buf.read_bytes()))
    assert status == 422 and "no face" in body["error"]
    status, body = _post(server, *_multipart("big.bin", b"\0" * (2 * 2**20)))
    assert status == 413
    status, body = _post(server, b'{"image": "%%% not base64"}', "application/json")
    assert status == 400 and "base64" in body["error"]
    status, body = _post(server, b"raw bytes", "application/octet-stream")
    assert status == 400
    with urllib.request.urlopen(server + "/health") as reply:
        assert reply.status == 200


def _chromium() -> tuple[str, str]:
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver") or "/usr/bin/chromedriver"
    if not browser or not Path(driver).exists():
        if os.environ.get("PASM_REQUIRE_CHROMIUM"):
            pytest.fail(
                "chromium and chromedriver are required here (apt-get install chromium chromium-driver)"
            )
        pytest.skip("no chromium/chromedriver (Debian: apt-get install chromium chromium-driver)")
    return browser, driver


def test_the_page_shows_boxed_faces_and_seven_bars_in_headless_chromium(server, tmp_path):
    browser, driver = _chromium()
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1280,900"):
        options.add_argument(flag)
    chrome = webdriver.Chrome(service=webdriver.ChromeService(executable_path=driver), options=options)
    try:
        chrome.get(server + "/")
        chrome.find_element(By.ID, "file").send_keys(str(photo("angry.jpg")))
        WebDriverWait(chrome, 120).until(lambda d: d.find_elements(By.CSS_SELECTOR, ".bar-row"))
        bars = chrome.find_elements(By.CSS_SELECTOR, ".bar-row")
        assert len(bars) == len(CLASSES)
        assert chrome.find_element(By.ID, "canvas").get_attribute("data-faces") == "1"
        widths = chrome.execute_script(
            "return [...document.querySelectorAll('.bar')].map(b => b.offsetWidth)"
        )
        assert max(widths) > 0
        # the box is drawn: red pixels in the canvas
        red = chrome.execute_script(
            "const c = document.getElementById('canvas'), "
            "d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;"
            "let n = 0; for (let i = 0; i < d.length; i += 4) "
            "if (d[i] > 240 && d[i+1] < 60 && d[i+2] < 60) n++; return n;"
        )
        assert red > 100
        chrome.save_screenshot(str(tmp_path / "page.png"))
    finally:
        chrome.quit()
    assert (tmp_path / "page.png").stat().st_size > 0


def test_a_bad_model_file_stops_the_service_at_start_up_with_one_line(tmp_path):
    bad = tmp_path / "weights.pt"
    bad.write_bytes(b"PK\x03\x04 truncated")
    proc = subprocess.run(
        [sys.executable, "-m", "pasm.app.cli", "serve", "--model", str(bad), "--port", str(_free_port())],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 1
    assert "pasm serve:" in proc.stderr and str(bad) in proc.stderr


def _error_only(body: dict) -> bool:
    """The documented error form: exactly {"error": <text>}, with no Python repr or server path in it."""
    text = body.get("error")
    return (
        set(body) == {"error"}
        and isinstance(text, str)
        and text
        and " at 0x" not in text
        and "<_io." not in text
        and str(REPO) not in text
        and "/tmp/" not in text
    )


def test_every_error_is_json_with_an_error_field_and_no_internals(server):
    cases = [
        (_post(server, b"--x\r\n\r\nabc\r\n--x--\r\n", "multipart/form-data"), 400),  # no boundary
        (_post(server, *_multipart("corrupt.jpg", b"\xff\xd8\xff not a jpeg at all")), 415),
        (_post(server, *_multipart("notes.txt", b"some text, not a picture\n" * 20)), 415),
        (_post(server, b'{"image": "abc', "application/json"), 400),
        (_post(server, b'["image"]', "application/json"), 400),
        (_get(server, "/no/such/page"), 404),
        (_get(server, "/predict"), 405),
        (_get(server, "/health", method="DELETE"), 405),
    ]
    for (status, body), expected in cases:
        assert status == expected and _error_only(body), (status, body)


def test_json_nested_100000_deep_is_a_400_and_not_a_crash(server):
    deep = b'{"image": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    status, body = _post(server, deep, "application/json")
    assert status == 400 and _error_only(body) and "nested" in body["error"], (status, body)
    status, body = _get(server, "/health")
    assert status == 200


def test_health_names_the_model_file_without_its_path(server):
    status, health = _get(server, "/health")
    assert status == 200 and health["model"] == "model.pt"


def test_the_page_puts_text_from_the_server_in_as_text_not_html(server):
    with urllib.request.urlopen(server + "/") as reply:
        page = reply.read().decode()
    assert "textContent" in page
    for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write"):
        assert sink not in page, sink


def _png_header(width: int, height: int) -> bytes:
    """A PNG that declares width x height pixels (RGB, 8 bits) but holds the data of one row only."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return len(data).to_bytes(4, "big") + kind + data + zlib.crc32(kind + data).to_bytes(4, "big")

    header = width.to_bytes(4, "big") + height.to_bytes(4, "big") + bytes([8, 2, 0, 0, 0])
    idat = zlib.compress(bytes(1 + 3 * min(width, 1000)))
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def test_images_with_more_pixels_than_the_cap_get_413_before_decoding(server):
    cap = serve_pixel_limit()
    for width, height in ((cap // 1000 + 1, 1000), (20_000, 20_000)):  # over the cap; a PIL "bomb"
        status, body = _post(server, *_multipart("huge.png", _png_header(width, height)))
        assert status == 413 and _error_only(body) and "pixels" in body["error"], (width, height, body)
    status, body = _post(server, *_multipart("small.png", _png_header(300, 1)))
    assert status in (415, 422)  # within the cap: decoded (truncated data, or no face)


def _hwm_reset(pid: int) -> bool:
    """Start the process's peak resident memory (VmHWM) afresh from its present one, where Linux lets us."""
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")
        return True
    except OSError:
        return False


@pytest.mark.parametrize("kind", ["multipart", "json"])
def test_a_chunked_body_over_the_limit_is_refused_while_it_streams(served, kind):
    """64 MiB sent chunked (no Content-Length) to a server with --max-mb 1: the 413 comes while the
    body is still being sent, and the server's memory does not grow by the body."""
    load = _load_benchmark()
    url, proc = served
    port = urllib.parse.urlsplit(url).port
    total = 64 * 2**20
    if kind == "multipart":
        head, tail, content_type = load.multipart("huge.jpg", b"")
    else:  # valid base64 ("AAAA..."): only the size is wrong
        head, tail, content_type = b'{"image": "', b'"}', "application/json"
    reset = _hwm_reset(proc.pid)
    before = load.memory_mb(proc.pid)
    fill = b"A" if kind == "json" else b"\0"
    reply = load.post_chunked(port, head, total, tail, content_type, fill=fill)
    after = load.memory_mb(proc.pid)
    assert reply.status == 413 and _error_only(_json(reply.body)), (reply.status, reply.error, reply.body)
    assert reply.sent < total / 2, f"the answer came after {reply.sent / 2**20:.1f} MiB of 64 were sent"
    growth = after["VmHWM"] - (before["VmRSS"] if reset else before["VmHWM"])
    assert growth < 32, f"the server's peak memory grew by {growth:.0f} MiB"
    assert _get(url, "/health")[0] == 200


@contextmanager
def _uvicorn_thread(app):
    """Serve `app` from a thread of this process on a free loopback port (so a test can patch it)."""
    import uvicorn

    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        for _ in range(600):  # 60 s at most
            if server.started or not thread.is_alive():
                break
            time.sleep(0.1)
        assert server.started, "uvicorn did not start"
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)


@pytest.fixture(scope="module")
def in_process(tmp_path_factory):
    """The service in this process (create_app, on uvicorn in a thread) with an extra route that fails."""
    from pasm.app.serve import create_app

    app = create_app(tiny_model_file(tmp_path_factory.mktemp("inproc") / "model.pt"), "cpu", MAX_MB * 2**20)

    @app.get("/fails")
    def fails() -> dict:
        raise RuntimeError("a bug, with a detail from /srv/secret/place")

    with _uvicorn_thread(app) as url:
        yield url


def test_an_internal_error_is_a_500_with_a_generic_error_and_its_traceback_in_the_log(
    in_process, monkeypatch, caplog
):
    import pasm.app.serve as serve_module

    def broken(*args, **kwargs):
        raise RuntimeError("model exploded at /srv/secret/model.pt")

    monkeypatch.setattr(serve_module, "answer", broken)
    status, body = _post(in_process, *_multipart("angry.jpg", photo("angry.jpg").read_bytes()))
    assert (status, body) == (500, {"error": "internal error"})
    status, body = _get(in_process, "/fails")
    assert (status, body) == (500, {"error": "internal error"})
    assert "Traceback" in caplog.text and "model exploded" in caplog.text and "a bug, with" in caplog.text


def test_the_pixel_cap_is_the_lower_of_the_services_and_pasm_data_decodes(in_process, monkeypatch):
    assert serve_pixel_limit() == 50_000_000  # the service's own cap, below decode's 160 MP
    monkeypatch.setattr(decode, "MAX_PIXELS", 1000)
    status, body = _post(in_process, *_multipart("angry.jpg", photo("angry.jpg").read_bytes()))
    assert status == 413 and "1000" in body["error"], (status, body)


def test_an_image_a_step_would_make_too_large_is_a_413(in_process, monkeypatch):
    too_large = decode.ImageTooLarge
    import pasm.app.serve as serve_module

    def refuse(*args, **kwargs):
        raise too_large("face box [0, 0, 90000, 90000]: 8,100,000,000 pixels, more than the limit")

    monkeypatch.setattr(serve_module, "answer", refuse)
    status, body = _post(in_process, *_multipart("angry.jpg", photo("angry.jpg").read_bytes()))
    assert status == 413 and _error_only(body) and "pixels" in body["error"], (status, body)
