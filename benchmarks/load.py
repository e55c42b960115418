"""Load test of `pasm serve` on loopback: throughput, latency, errors and the server's memory.

Starts `pasm serve` (its own process, a free 127.0.0.1 port, a small model file) and sends it rounds
of POST /predict requests from a pool of threads (http.client, one connection per request): the
shared face photographs (../shared/images/**/*.jpg) as multipart uploads and as JSON, with a few
bad requests mixed in (corrupt bytes, a non-image, chunked multipart and JSON bodies far over
--max-mb, one over it by Content-Length, invalid JSON, JSON nested 100,000 deep, multipart without
a boundary). Meanwhile another thread polls GET /health. Each round reports requests/s, latency
percentiles, the answers by kind and status (expected or not), /health's latency and the server's
peak resident memory (VmHWM in /proc/<pid>/status), so growth from one round to the next shows.

Every request goes to 127.0.0.1; every loop is bounded in count and in time.

    .venv/bin/python benchmarks/load.py                       # 2 rounds of 200 requests, 50 at once
    .venv/bin/python benchmarks/load.py --requests 40 --concurrency 10 --json out.json
"""

from __future__ import annotations

import argparse
import collections
import http.client
import json
import os
import select
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
PHOTOS = (REPO.parent / "shared" / "images").resolve()
HOST = "127.0.0.1"
DEEP = 100_000
"""Nesting depth of the deeply nested JSON request."""


@dataclass
class Server:
    """A running `pasm serve` process and where it listens."""

    proc: subprocess.Popen
    port: int
    log: Path
    max_bytes: int

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def small_model(path: Path) -> Path:
    """The tests' small model file (a seeded compact CNN of width 8, 48 px: tests/predict_cases.py)."""
    sys.path.insert(0, str(REPO / "tests"))
    try:
        from predict_cases import tiny_model_file
    finally:
        sys.path.remove(str(REPO / "tests"))
    return tiny_model_file(path)


@contextmanager
def running_server(
    model: Path, log: Path, max_mb: float = 1.0, threads: int = 1, startup_s: float = 180.0
) -> Iterator[Server]:
    """`pasm serve --model model --max-mb max_mb` on a free loopback port until the block ends.

    threads: OMP_NUM_THREADS of the server (1, as tests/test_serve.py runs it)."""
    port = free_port()
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    command = [sys.executable, "-m", "pasm.app.cli", "serve", "--model", str(model), "--host", HOST]
    command += ["--port", str(port), "--device", "cpu", "--max-mb", str(max_mb)]
    with open(log, "w") as out:
        proc = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=REPO)
    server = Server(proc, port, log, int(max_mb * 2**20))
    try:
        deadline = time.monotonic() + startup_s
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"pasm serve exited ({proc.returncode}): {log.read_text()[-2000:]}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"pasm serve did not answer /health in {startup_s:.0f} s")
            try:
                if get(server.port, "/health", timeout=2).status == 200:
                    break
            except OSError:
                time.sleep(0.1)
        yield server
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=30)


def memory_mb(pid: int) -> dict[str, float]:
    """VmHWM (peak resident) and VmRSS (resident now) of a process, in MiB."""
    found = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmHWM", "VmRSS"):
            found[key] = int(value.split()[0]) / 1024
    return found


@dataclass
class Reply:
    status: int  # 0: no HTTP answer (see error)
    body: bytes = b""
    seconds: float = 0.0
    error: str = ""
    sent: int = 0  # bytes of body sent before the answer came (chunked requests)

    def json(self) -> Any:
        try:
            return json.loads(self.body)
        except ValueError:
            return None


def get(port: int, path: str, timeout: float = 30) -> Reply:
    start = time.perf_counter()
    conn = http.client.HTTPConnection(HOST, port, timeout=timeout)
    try:
        conn.request("GET", path)
        reply = conn.getresponse()
        return Reply(reply.status, reply.read(), time.perf_counter() - start)
    finally:
        conn.close()


def post(port: int, body: bytes, content_type: str, timeout: float = 120) -> Reply:
    """POST /predict; the answer is read also when the server answers early (413) and closes while
    the body is still being sent."""
    start = time.perf_counter()
    conn = http.client.HTTPConnection(HOST, port, timeout=timeout)
    try:
        try:
            conn.request("POST", "/predict", body=body, headers={"Content-Type": content_type})
        except (BrokenPipeError, ConnectionResetError):
            pass
        reply = conn.getresponse()
        return Reply(reply.status, reply.read(), time.perf_counter() - start)
    except OSError as exc:
        return Reply(0, seconds=time.perf_counter() - start, error=type(exc).__name__)
    finally:
        conn.close()


def post_chunked(
    port: int,
    head: bytes,
    size: int,
    tail: bytes,
    content_type: str,
    timeout: float = 120,
    chunk: int = 2**18,
    fill: bytes = b"\0",
) -> Reply:
    """POST /predict with Transfer-Encoding: chunked: `head`, then `fill` bytes up to `size` bytes in
    all, then `tail`; sending stops as soon as an answer is there to read (Reply.sent: how much went
    out before)."""
    start = time.perf_counter()
    conn = http.client.HTTPConnection(HOST, port, timeout=timeout)
    sent = 0
    try:
        conn.putrequest("POST", "/predict", skip_accept_encoding=True)
        conn.putheader("Content-Type", content_type)
        conn.putheader("Transfer-Encoding", "chunked")
        conn.endheaders()
        filler = fill * chunk
        pieces = [head] + [filler] * max(0, (size - len(head) - len(tail)) // chunk) + [tail]
        try:
            for piece in pieces:  # bounded: size / chunk pieces
                if select.select([conn.sock], [], [], 0)[0]:
                    break  # answered already
                conn.send(b"%x\r\n" % len(piece) + piece + b"\r\n")
                sent += len(piece)
            else:
                conn.send(b"0\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError):
            pass
        reply = conn.getresponse()
        return Reply(reply.status, reply.read(), time.perf_counter() - start, sent=sent)
    except OSError as exc:
        return Reply(0, seconds=time.perf_counter() - start, error=type(exc).__name__, sent=sent)
    finally:
        conn.close()


def multipart(name: str, data: bytes, boundary: str | None = None) -> tuple[bytes, bytes, str]:
    """(head, tail, content type) of a multipart/form-data body with one file field around `data`."""
    boundary = boundary or uuid.uuid4().hex
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{name}"\r\n'
        "Content-Type: application/octet-stream\r\n\r\n"
    ).encode()
    return head, f"\r\n--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


@dataclass
class Case:
    """One kind of request: how to send it and the statuses that are right for it."""

    kind: str
    send: Any  # (port) -> Reply
    expected: set[int]


def photo_cases(photos: list[Path]) -> list[Case]:
    """Each photo as a multipart upload and as JSON (expected statuses are set by `probe`)."""
    import base64

    cases = []
    for path in photos:
        data = path.read_bytes()
        head, tail, kind = multipart(path.name, data)
        body = head + data + tail
        doc = json.dumps({"image": base64.b64encode(data).decode(), "name": path.name}).encode()
        cases.append(Case(f"photo-multipart:{path.name}", lambda p, b=body, k=kind: post(p, b, k), set()))
        cases.append(Case(f"photo-json:{path.name}", lambda p, b=doc: post(p, b, "application/json"), set()))
    return cases


def bad_cases(max_bytes: int, oversize: int) -> list[Case]:
    """Bad requests and the status each must get."""

    def upload(name: str, data: bytes) -> Any:
        head, tail, kind = multipart(name, data)
        return lambda p: post(p, head + data + tail, kind)

    head, tail, kind = multipart("huge.jpg", b"")
    big = bytes(max_bytes + 2**20)
    deep = b'{"image": ' + b"[" * DEEP + b"]" * DEEP + b"}"
    return [
        Case("corrupt-jpeg", upload("corrupt.jpg", b"\xff\xd8\xff\xe0 not a jpeg" + bytes(2000)), {415}),
        Case("non-image", upload("notes.txt", b"just some text, not a picture\n" * 50), {415}),
        Case("oversized-chunked-multipart", lambda p: post_chunked(p, head, oversize, tail, kind), {413}),
        Case(  # valid base64 ("AAAA..."): only the size is wrong
            "oversized-chunked-json",
            lambda p: post_chunked(p, b'{"image": "', oversize, b'"}', "application/json", fill=b"A"),
            {413},
        ),
        Case("oversized-length", upload("big.jpg", big), {413}),
        Case("bad-json", lambda p: post(p, b'{"image": "abc', "application/json"), {400}),
        Case("deep-json", lambda p: post(p, deep, "application/json"), {400}),
        Case("no-boundary", lambda p: post(p, b"--x\r\n\r\nabc\r\n--x--\r\n", "multipart/form-data"), {400}),
    ]


def probe(port: int, cases: list[Case]) -> None:
    """Set each photo case's expected status to what it gets alone (200, or 422 without a face)."""
    for case in cases:
        reply = case.send(port)
        if reply.status not in (200, 422):
            raise RuntimeError(f"{case.kind} alone: {reply.status} {reply.error} {reply.body[:300]!r}")
        case.expected = {reply.status}


def shape_ok(reply: Reply) -> bool:
    """The answer is a JSON object with "faces" (a list) or "error" (a string)."""
    doc = reply.json()
    return isinstance(doc, dict) and (
        isinstance(doc.get("faces"), list) or (isinstance(doc.get("error"), str) and reply.status >= 400)
    )


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100); nan for no values."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, int(-(-q * len(ordered) // 100)) - 1))]


@dataclass
class Round:
    requests: int
    concurrency: int
    seconds: float = 0.0
    latencies: list[float] = field(default_factory=list)
    health: list[float] = field(default_factory=list)
    health_failures: int = 0
    answers: collections.Counter = field(default_factory=collections.Counter)  # (kind, status, expected)
    bad_shape: list[str] = field(default_factory=list)
    unfinished: int = 0
    chunked_sent: list[int] = field(default_factory=list)  # bytes of each oversized chunked body sent
    memory: dict[str, float] = field(default_factory=dict)

    @property
    def unexpected(self) -> int:
        return sum(n for (_, _, ok), n in self.answers.items() if not ok) + len(self.bad_shape)

    def summary(self) -> dict[str, Any]:
        by_kind: dict[str, dict[str, int]] = collections.defaultdict(dict)
        for (kind, status, ok), n in sorted(self.answers.items()):
            by_kind[kind][f"{status}{'' if ok else ' UNEXPECTED'}"] = n
        return {
            "requests": self.requests,
            "concurrency": self.concurrency,
            "seconds": round(self.seconds, 3),
            "requests_per_s": round(self.requests / self.seconds, 2) if self.seconds else None,
            "latency_ms": {f"p{q}": round(1000 * percentile(self.latencies, q), 1) for q in (50, 90, 99)}
            | {"max": round(1000 * max(self.latencies, default=float("nan")), 1)},
            "health_during_load": {
                "samples": len(self.health),
                "failures": self.health_failures,
                "p50_ms": round(1000 * percentile(self.health, 50), 1),
                "p99_ms": round(1000 * percentile(self.health, 99), 1),
                "max_ms": round(1000 * max(self.health, default=float("nan")), 1),
            },
            "expected_answers": sum(n for (_, _, ok), n in self.answers.items() if ok),
            "unexpected_answers": self.unexpected,
            "unfinished": self.unfinished,
            "answers_by_kind": dict(by_kind),
            "bad_shape": self.bad_shape[:10],
            "oversized_chunked_mib_sent_before_answer": [round(n / 2**20, 2) for n in self.chunked_sent],
            "server_memory_mb": {k: round(v, 1) for k, v in self.memory.items()},
        }


def schedule(photos: list[Case], bad: list[Case], n: int) -> list[Case]:
    """n requests: every 10th a bad one (more often when n is too small for each bad kind to come at
    least once, every 2nd at most), taking turns; the others the photo cases in turn."""
    bad_every = min(10, max(2, n // max(1, len(bad))))
    order, next_photo, next_bad = [], 0, 0
    for i in range(n):
        if bad and i % bad_every == bad_every - 1:
            order.append(bad[next_bad % len(bad)])
            next_bad += 1
        else:
            order.append(photos[next_photo % len(photos)])
            next_photo += 1
    return order


def run_round(
    server: Server,
    order: list[Case],
    concurrency: int,
    time_limit_s: float = 600,
    health_every_s: float = 0.02,
) -> Round:
    """Send `order` with `concurrency` threads while another thread polls /health; the server's
    VmHWM after. Requests not started within time_limit_s are skipped (counted as unfinished)."""
    result = Round(len(order), concurrency)
    deadline = time.monotonic() + time_limit_s
    done = threading.Event()
    lock = threading.Lock()

    def one(case: Case) -> None:
        if time.monotonic() > deadline:
            with lock:
                result.unfinished += 1
            return
        reply = case.send(server.port)
        with lock:
            result.latencies.append(reply.seconds)
            status = reply.status or reply.error
            result.answers[(case.kind, status, reply.status in case.expected)] += 1
            if case.kind.startswith("oversized-chunked"):
                result.chunked_sent.append(reply.sent)
            if reply.status and not shape_ok(reply):
                result.bad_shape.append(f"{case.kind}: {reply.status} {reply.body[:120]!r}")

    def poll_health() -> None:
        for _ in range(int(time_limit_s / health_every_s) + 1):  # bounded; ends with the load
            if done.is_set() or time.monotonic() > deadline:
                return
            try:
                reply = get(server.port, "/health", timeout=30)
                if done.is_set():
                    return  # finished after the load: not a sample of /health under load
                result.health.append(reply.seconds)
                result.health_failures += reply.status != 200
            except OSError:
                result.health_failures += 1
            time.sleep(health_every_s)

    poller = threading.Thread(target=poll_health, daemon=True)
    start = time.perf_counter()
    poller.start()
    with ThreadPoolExecutor(concurrency) as pool:
        for future in [pool.submit(one, case) for case in order]:
            future.result()
    result.seconds = time.perf_counter() - start
    done.set()
    poller.join(timeout=60)
    result.memory = memory_mb(server.proc.pid)
    return result


def load_test(
    requests: int = 200,
    concurrency: int = 50,
    rounds: int = 2,
    max_mb: float = 1.0,
    oversize_mb: float = 32.0,
    model: Path | None = None,
    threads: int = 1,
    photos: list[Path] | None = None,
    time_limit_s: float = 600,
    folder: Path | None = None,
) -> dict[str, Any]:
    """Start a server and run the rounds; a JSON-able report (also the server log's path)."""
    photos = sorted(PHOTOS.rglob("*.jpg")) if photos is None else photos
    if not photos:
        raise FileNotFoundError(f"no photographs (*.jpg) under {PHOTOS}")
    with tempfile.TemporaryDirectory(prefix="pasm-load-") as tmp:
        folder = Path(folder or tmp)
        model = model or small_model(folder / "model.pt")
        with running_server(model, folder / "serve.log", max_mb, threads) as server:
            photo_list = photo_cases(photos)
            probe(server.port, photo_list)
            bad = bad_cases(server.max_bytes, int(oversize_mb * 2**20))
            order = schedule(photo_list, bad, requests)
            report: dict[str, Any] = {
                "server": {"max_mb": max_mb, "omp_threads": threads, "model": model.name},
                "photos": [p.name for p in photos],
                "memory_after_warm_up_mb": {k: round(v, 1) for k, v in memory_mb(server.proc.pid).items()},
                "rounds": [],
            }
            for _ in range(rounds):
                report["rounds"].append(run_round(server, order, concurrency, time_limit_s).summary())
            report["server_alive"] = server.proc.poll() is None
            log_text = server.log.read_text()
            report["server_log_tracebacks"] = log_text.count("Traceback")
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--requests", type=int, default=200, help="requests per round (default 200)")
    parser.add_argument("--concurrency", type=int, default=50, help="requests in flight (default 50)")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--max-mb", type=float, default=1.0, help="the server's --max-mb (default 1)")
    parser.add_argument("--oversize-mb", type=float, default=32.0, help="the chunked oversized body")
    parser.add_argument("--model", type=Path, help="a model file (default: the tests' small model)")
    parser.add_argument("--threads", type=int, default=1, help="the server's OMP_NUM_THREADS")
    parser.add_argument("--time-limit", type=float, default=600, help="seconds per round at most")
    parser.add_argument("--json", type=Path, help="also write the report here")
    args = parser.parse_args(argv)
    report = load_test(
        args.requests,
        args.concurrency,
        args.rounds,
        args.max_mb,
        args.oversize_mb,
        args.model,
        args.threads,
        time_limit_s=args.time_limit,
    )
    text = json.dumps(report, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")
    return 0 if all(r["unexpected_answers"] == 0 for r in report["rounds"]) else 1


if __name__ == "__main__":
    sys.exit(main())
