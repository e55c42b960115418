"""`pasm serve` for real: the service started on a loopback port, answering a face photo, a
corrupt file, a photo without a face, bad requests; and its page driven by headless Chromium."""

from __future__ import annotations

import base64
import http.client
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from predict_cases import photo, tiny_model_file

from pasm.data.labels import CLASSES

pytest.importorskip("fastapi")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """A running `pasm serve` (its own process) and its base URL; stopped after the module."""
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
            "1",
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
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        log.close()


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
        return reply.status, json.loads(reply.read())
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
