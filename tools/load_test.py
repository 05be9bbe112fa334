"""Load-test a `detect serve` server on this machine: requests/s, latency percentiles, errors by
status, and the server's resident memory before and after.

    # a running server (loopback only):
    python tools/load_test.py http://127.0.0.1:8000 --concurrency 8 --duration 120 --bad 500
    # start a server per --max-batch value and compare them in one run:
    python tools/load_test.py --serve runs/.../best.pt --max-batch 1 --max-batch 8 --concurrency 8 --duration 60

Each of `--concurrency` clients sends POST /v1/detect with one image at a time (from `--images DIR`,
or synthetic shapes images), back to back, for `--duration` seconds after a `--warmup` of the same
load. Every loop is bounded in time and in count (`--max-requests`), and only loopback addresses are
accepted. `--bad N` adds one client that sends N bad requests spread over the run (not an image,
truncated, over the upload limit, no file field, a bad option, and a wrong API key when `--api-key` is
given) and checks that each gets its own 4xx. Memory is the server's `process_resident_memory_bytes`
from /metrics: before the warm-up, after it, and after the run.
"""

from __future__ import annotations

import argparse
import http.client
import ipaddress
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np

MAX_DURATION_S = 3600
REQUEST_TIMEOUT_S = 60
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp"}


# ---------------------------------------------------------------------------------------------------
# Requests


def multipart(fields: list[tuple[str, str, bytes]]) -> tuple[bytes, str]:
    """[(field, file name, bytes)] -> (multipart/form-data body, its content type)."""
    boundary = uuid.uuid4().hex
    parts = []
    for name, filename, data in fields:
        head = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"; filename=\"{filename}\"\r\n"
                f"Content-Type: application/octet-stream\r\n\r\n").encode()
        parts.append(head + data + b"\r\n")
    return b"".join(parts) + f"--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


@dataclass
class Request:
    """One request to send, and the status it should get (None: any 2xx is right)."""

    kind: str
    path: str
    body: bytes
    headers: dict[str, str]
    expect: int | None = None
    declared_length: int | None = None  # announce more bytes than are sent (the upload-limit check)


def good_request(image: bytes, name: str, api_key: str | None) -> Request:
    body, content_type = multipart([("files", name, image)])
    return Request("good", "/v1/detect", body, {"Content-Type": content_type, **_key_header(api_key)})


def bad_requests(image: bytes, api_key: str | None, max_upload_mb: float) -> list[Request]:
    """One request of each bad kind, with the status the server must answer."""
    key = _key_header(api_key)

    def upload(data: bytes, name: str, query: str = "", field_name: str = "files", headers=None) -> tuple:
        body, content_type = multipart([(field_name, name, data)])
        return f"/v1/detect{query}", body, {"Content-Type": content_type, **(key if headers is None else headers)}

    kinds = [
        Request("not_an_image", *upload(b"this is plain text, not an image\n" * 20, "notes.txt"), expect=415),
        Request("truncated", *upload(image[: len(image) // 2], "half.jpg"), expect=422),
        Request("no_file_field", *upload(image, "a.jpg", field_name="picture"), expect=422),
        Request("bad_option", *upload(image, "a.jpg", query="?score_threshold=2"), expect=422),
        Request("too_large", *upload(image, "big.jpg"), expect=413,
                declared_length=int(max_upload_mb * 2**20) + 1),
    ]
    if api_key:
        kinds.append(Request("wrong_key", *upload(image, "a.jpg", headers={"X-API-Key": api_key + "-wrong"}),
                             expect=401))
    return kinds


def _key_header(api_key: str | None) -> dict[str, str]:
    return {"X-API-Key": api_key} if api_key else {}


class Connection:
    """A keep-alive HTTP connection that reconnects after the server closes it."""

    def __init__(self, host: str, port: int):
        self.host, self.port, self._conn = host, port, None

    def send(self, request: Request) -> tuple[int | str, float]:
        """(status, or the exception's name when no answer came; seconds)."""
        started = time.perf_counter()
        try:
            status = self._exchange(request)
        except (OSError, http.client.HTTPException) as error:
            self.close()
            return type(error).__name__, time.perf_counter() - started
        return status, time.perf_counter() - started

    def _exchange(self, request: Request) -> int:
        if self._conn is None:
            self._conn = http.client.HTTPConnection(self.host, self.port, timeout=REQUEST_TIMEOUT_S)
        conn = self._conn
        conn.putrequest("POST", request.path)
        for name, value in request.headers.items():
            conn.putheader(name, value)
        conn.putheader("Content-Length", str(request.declared_length or len(request.body)))
        conn.endheaders()
        try:
            conn.send(request.body)
        except OSError:  # a server that refused the upload early may close before the body is sent
            if request.declared_length is None:
                raise
        answer = conn.getresponse()
        answer.read()
        if answer.will_close or request.declared_length is not None:
            self.close()  # the rest of a declared-too-long body must never follow on this connection
        return answer.status

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


# ---------------------------------------------------------------------------------------------------
# The run


@dataclass
class Phase:
    """What the clients saw in one timed phase."""

    seconds: float = 0.0
    latencies: list[float] = field(default_factory=list)  # good requests answered 2xx
    good_status: Counter = field(default_factory=Counter)
    bad_status: dict[str, Counter] = field(default_factory=dict)
    bad_expected: dict[str, int] = field(default_factory=dict)

    def summary(self) -> dict:
        ok = len(self.latencies)
        percentiles = np.percentile(self.latencies, [50, 95, 99]) * 1000 if ok else [float("nan")] * 3
        bad_sent = sum(sum(c.values()) for c in self.bad_status.values())
        bad_right = sum(c[self.bad_expected[kind]] for kind, c in self.bad_status.items())
        return {
            "seconds": round(self.seconds, 2),
            "requests": sum(self.good_status.values()),
            "ok": ok,
            "requests_per_s": round(ok / self.seconds, 2) if self.seconds else 0.0,
            "p50_ms": round(float(percentiles[0]), 1), "p95_ms": round(float(percentiles[1]), 1),
            "p99_ms": round(float(percentiles[2]), 1),
            "status": {str(k): v for k, v in sorted(self.good_status.items(), key=str)},
            "server_errors_5xx": sum(v for k, v in self.good_status.items() if isinstance(k, int) and k >= 500)
            + sum(v for c in self.bad_status.values() for k, v in c.items() if isinstance(k, int) and k >= 500),
            "bad_sent": bad_sent,
            "bad_with_expected_4xx": bad_right,
            "bad_status": {kind: {str(k): v for k, v in c.items()} for kind, c in self.bad_status.items()},
        }


def run_phase(host: str, port: int, goods: list[Request], bads: list[Request], concurrency: int, duration: float,
              max_requests: int, bad_total: int) -> Phase:
    """`concurrency` clients send good requests back to back until `duration` s or `max_requests` are
    done; one more client sends `bad_total` bad requests evenly spread over the duration."""
    phase = Phase(bad_status={r.kind: Counter() for r in bads}, bad_expected={r.kind: r.expect for r in bads})
    lock = threading.Lock()
    issued = [0]
    started = time.monotonic()
    deadline = started + duration

    def take_ticket() -> int | None:
        with lock:
            if issued[0] >= max_requests:
                return None
            issued[0] += 1
            return issued[0]

    def good_client(index: int) -> None:
        connection = Connection(host, port)
        while time.monotonic() < deadline and (ticket := take_ticket()) is not None:
            status, seconds = connection.send(goods[(index + ticket) % len(goods)])
            with lock:
                phase.good_status[status] += 1
                if isinstance(status, int) and 200 <= status < 300:
                    phase.latencies.append(seconds)
        connection.close()

    def bad_client() -> None:
        connection = Connection(host, port)
        for number in range(bad_total):
            due = started + duration * (number + 0.5) / bad_total
            time.sleep(max(0.0, due - time.monotonic()))
            if time.monotonic() >= deadline:
                break
            request = bads[number % len(bads)]
            status, _ = connection.send(request)
            with lock:
                phase.bad_status[request.kind][status] += 1
        connection.close()

    threads = [threading.Thread(target=good_client, args=(i,), daemon=True) for i in range(concurrency)]
    if bad_total and bads:
        threads.append(threading.Thread(target=bad_client, daemon=True))
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(duration + REQUEST_TIMEOUT_S + 5)
    phase.seconds = time.monotonic() - started
    return phase


def server_rss_mb(host: str, port: int, api_key: str | None) -> float | None:
    """The server's resident memory from /metrics (process_resident_memory_bytes), in MB."""
    conn = http.client.HTTPConnection(host, port, timeout=10)
    try:
        conn.request("GET", "/metrics", headers=_key_header(api_key))
        answer = conn.getresponse()
        text = answer.read().decode()
    except (OSError, http.client.HTTPException):
        return None
    finally:
        conn.close()
    for line in text.splitlines():
        if line.startswith("process_resident_memory_bytes "):
            return round(float(line.split()[1]) / 2**20, 1)
    return None


def load_test(host: str, port: int, args) -> dict:
    """Warm-up, then the measured phase; memory read before, after the warm-up, and after."""
    images = load_images(args.images, args.num_images)
    goods = [good_request(data, name, args.api_key) for name, data in images]
    bads = bad_requests(images[0][1], args.api_key, args.max_upload_mb)
    rss_before = server_rss_mb(host, port, args.api_key)
    if args.warmup > 0:
        run_phase(host, port, goods, [], args.concurrency, args.warmup, args.max_requests, 0)
    rss_warm = server_rss_mb(host, port, args.api_key)
    phase = run_phase(host, port, goods, bads, args.concurrency, args.duration, args.max_requests, args.bad)
    rss_after = server_rss_mb(host, port, args.api_key)
    result = phase.summary()
    result.update(concurrency=args.concurrency, rss_mb_before=rss_before, rss_mb_after_warmup=rss_warm,
                  rss_mb_after=rss_after)
    if rss_warm and rss_after:
        result["rss_change_after_warmup_pct"] = round(100.0 * (rss_after - rss_warm) / rss_warm, 1)
    return result


def load_images(folder: Path | None, count: int) -> list[tuple[str, bytes]]:
    """Up to `count` image files from the folder (sorted), or `count` synthetic shapes JPEGs."""
    if folder is not None:
        files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)[:count]
        if not files:
            raise SystemExit(f"error: {folder}: no image files ({', '.join(sorted(IMAGE_SUFFIXES))})")
        return [(path.name, path.read_bytes()) for path in files]
    from detect.data.synthetic import draw_image, encode_jpeg

    rng = np.random.default_rng(0)
    return [(f"shapes_{i}.jpg", encode_jpeg(draw_image(rng, 320)[0])) for i in range(count)]


# ---------------------------------------------------------------------------------------------------
# Servers started by the tool (--serve)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_server(checkpoint: Path, port: int, max_batch: int, args) -> subprocess.Popen:
    command = [sys.executable, "-m", "detect", "serve", str(checkpoint), "--host", "127.0.0.1", "--port", str(port),
               "--device", args.device, "--max-batch", str(max_batch), "--max-wait-ms", str(args.max_wait_ms),
               "--max-upload-mb", str(args.max_upload_mb)]
    env = dict(os.environ)
    if args.api_key:
        env["DETECT_API_KEY"] = args.api_key
    # The server's stderr goes to a file, not a pipe: nobody reads a pipe during the run, and once its
    # buffer filled (a decoder's warning per truncated upload, say) the server would block on writing.
    log = tempfile.TemporaryFile(mode="w+", prefix="detect-serve-", suffix=".log")
    server = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=log, text=True)
    server.log = log
    deadline = time.monotonic() + args.start_timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            message = server_log(server).strip()
            stop_server(server)
            raise SystemExit(f"error: the server exited with {server.returncode}: {message}")
        if _ready(port):
            return server
        time.sleep(0.25)
    stop_server(server)
    raise SystemExit(f"error: the server was not ready within {args.start_timeout} s")


def server_log(server: subprocess.Popen) -> str:
    """What a server started by `start_server` has written to stderr so far."""
    server.log.flush()
    server.log.seek(0)
    return server.log.read()


def _ready(port: int) -> bool:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
    try:
        conn.request("GET", "/readyz")
        return conn.getresponse().status == 200
    except (OSError, http.client.HTTPException):
        return False
    finally:
        conn.close()


def stop_server(server: subprocess.Popen) -> None:
    server.terminate()
    try:
        server.wait(15)
    except subprocess.TimeoutExpired:
        server.kill()
        server.wait()
    server.log.close()


# ---------------------------------------------------------------------------------------------------
# Command line


def loopback_address(url: str) -> tuple[str, int]:
    """(host, port) of an http:// URL on this machine; SystemExit for anything else."""
    parts = urlsplit(url)
    if parts.scheme != "http" or not parts.hostname:
        raise SystemExit(f"error: {url}: give an http:// URL, e.g. http://127.0.0.1:8000")
    try:
        addresses = {info[4][0] for info in socket.getaddrinfo(parts.hostname, parts.port or 80)}
    except socket.gaierror as error:
        raise SystemExit(f"error: {url}: cannot resolve {parts.hostname} ({error})") from None
    if not all(ipaddress.ip_address(address.split("%")[0]).is_loopback for address in addresses):
        raise SystemExit(f"error: {url}: this tool only sends load to this machine (loopback addresses)")
    return parts.hostname, parts.port or 80


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("url", nargs="?", help="A running server, e.g. http://127.0.0.1:8000 (loopback only).")
    parser.add_argument("--serve", type=Path, metavar="CKPT",
                        help="Start `detect serve CKPT` on a free loopback port for each --max-batch instead.")
    parser.add_argument("--max-batch", type=int, action="append", dest="max_batches",
                        help="With --serve: the server's --max-batch (repeat to compare; default 8).")
    parser.add_argument("--max-wait-ms", type=float, default=10.0, help="With --serve: the server's --max-wait-ms.")
    parser.add_argument("--device", default="cpu", help="With --serve: the server's --device.")
    parser.add_argument("--start-timeout", type=float, default=120.0, help="With --serve: seconds to wait for /readyz.")
    parser.add_argument("--concurrency", "-c", type=int, default=8, help="Clients sending at once.")
    parser.add_argument("--duration", "-d", type=float, default=30.0, help="Seconds of measured load (per server).")
    parser.add_argument("--warmup", type=float, default=5.0, help="Seconds of the same load before measuring.")
    parser.add_argument("--max-requests", type=int, default=100_000, help="Upper bound on good requests per phase.")
    parser.add_argument("--images", type=Path, help="Folder of images to send (default: synthetic shapes JPEGs).")
    parser.add_argument("--num-images", type=int, default=16, help="How many different images to cycle through.")
    parser.add_argument("--bad", type=int, default=0, help="Bad requests to mix into the measured load.")
    parser.add_argument("--api-key", default=os.environ.get("DETECT_API_KEY"), help="The server's API key.")
    parser.add_argument(
        "--max-upload-mb", type=float, default=20.0, help="The server's upload limit (for the 413 case).")
    parser.add_argument("--json", type=Path, help="Also write the results here.")
    args = parser.parse_args(argv)
    if (args.url is None) == (args.serve is None):
        parser.error("give a server URL or --serve CKPT (one of them)")
    if args.max_batches and args.serve is None:
        parser.error("--max-batch needs --serve (a running server keeps its own)")
    if not 0 < args.duration <= MAX_DURATION_S or args.warmup < 0 or args.warmup > MAX_DURATION_S:
        parser.error(f"--duration must be in (0, {MAX_DURATION_S}] s and --warmup in [0, {MAX_DURATION_S}] s")
    if not 1 <= args.concurrency <= 256 or args.max_requests < 1 or args.bad < 0 or args.num_images < 1:
        parser.error("--concurrency must be 1..256, --max-requests and --num-images at least 1, --bad at least 0")
    return args


def print_result(label: str, result: dict) -> None:
    print(f"{label}: {result['requests_per_s']:.2f} requests/s ({result['ok']} ok of {result['requests']} in "
          f"{result['seconds']:.0f} s, {result['concurrency']} clients); latency p50 {result['p50_ms']:.0f} ms, "
          f"p95 {result['p95_ms']:.0f} ms, p99 {result['p99_ms']:.0f} ms")
    print(f"  status of good requests: {result['status']}; 5xx answers in all: {result['server_errors_5xx']}")
    if result["bad_sent"]:
        print(f"  bad requests: {result['bad_with_expected_4xx']} of {result['bad_sent']} got their expected 4xx; "
              f"by kind: {result['bad_status']}")
    change = result.get("rss_change_after_warmup_pct")
    print(f"  server RSS: {result['rss_mb_before']} MB before, {result['rss_mb_after_warmup']} MB after warm-up, "
          f"{result['rss_mb_after']} MB after" + (f" ({change:+.1f} % since warm-up)" if change is not None else ""))


def main(argv=None) -> int:
    args = parse_args(argv)
    results = {}
    if args.url is not None:
        host, port = loopback_address(args.url)
        results[args.url] = load_test(host, port, args)
        print_result(args.url, results[args.url])
    else:
        for max_batch in args.max_batches or [8]:
            port = free_port()
            server = start_server(args.serve, port, max_batch, args)
            try:
                results[f"max_batch={max_batch}"] = load_test("127.0.0.1", port, args)
            finally:
                stop_server(server)
            print_result(f"--max-batch {max_batch}", results[f"max_batch={max_batch}"])
        if len(results) > 1:
            rates = [r["requests_per_s"] for r in results.values()]
            labels = list(results)
            print(f"{labels[-1]} / {labels[0]}: {rates[-1] / rates[0]:.2f}x requests/s" if rates[0] else "")
    if args.json is not None:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
