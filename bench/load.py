"""Load benchmark of `denselab serve` (not a test): many POST /predict requests from concurrent clients.

Starts the real server on a free port of 127.0.0.1, waits for /health, then sends a fixed
number of requests — half JSON pixels, half PNG uploads of Fashion-MNIST test images —
from --concurrency clients, and gives up after --time-limit seconds. Prints the result and
writes it to reports/load.json: client-side p50/p99 latency, requests per second, errors
(any answer but 200, or no answer), and the server's own median model time (latency_ms).

Usage: .venv/bin/python bench/load.py MODEL [--requests 2000] [--concurrency 16]
"""

import argparse
import asyncio
import io
import json
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np
from PIL import Image

from denselab.data.sources import load_dataset

ROOT = Path(__file__).resolve().parent.parent
HOST = "127.0.0.1"  # the benchmark only ever talks to its own server
STARTUP_SECONDS = 120
REQUEST_TIMEOUT_SECONDS = 30
DISTINCT_IMAGES = 200  # requests cycle over this many test images, encoded before the clock starts


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        return probe.getsockname()[1]


def start_server(model: Path, port: int, log) -> subprocess.Popen:
    """`denselab serve` as a user runs it; returns once /health answers."""
    process = subprocess.Popen([sys.executable, "-m", "denselab", "serve", str(model), "--port", str(port)],
                               stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + STARTUP_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"denselab serve exited with {process.returncode} before answering /health")
        try:
            if httpx.get(f"http://{HOST}:{port}/health", timeout=1).status_code == 200:
                return process
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    stop_server(process)
    raise RuntimeError(f"denselab serve did not answer /health within {STARTUP_SECONDS} s")


def stop_server(process: subprocess.Popen) -> None:
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def request_bodies(count: int) -> list[tuple[bytes, str]]:
    """(body, content type) for each request: even ones JSON pixels, odd ones PNG files."""
    images = load_dataset("fashion-mnist", allow_download=False).test_images[:DISTINCT_IMAGES]
    as_json = [json.dumps({"pixels": image.tolist()}).encode() for image in images]
    as_png = []
    for image in images:
        buffer = io.BytesIO()
        Image.fromarray(image).save(buffer, format="PNG")
        as_png.append(buffer.getvalue())
    return [(as_json[i // 2 % len(images)], "application/json") if i % 2 == 0
            else (as_png[i // 2 % len(images)], "image/png") for i in range(count)]


async def send_all(url: str, bodies: list[tuple[bytes, str]], concurrency: int, time_limit: float) -> dict:
    """Send every body with `concurrency` clients; stop early when `time_limit` seconds are up."""
    next_request = iter(range(len(bodies)))
    latencies_ms, server_ms, errors = [], [], []
    finished = [0]  # requests answered or failed; one counter shared by the clients

    async def client(http: httpx.AsyncClient) -> None:
        for index in next_request:
            body, content_type = bodies[index]
            started = time.perf_counter()
            try:
                response = await http.post(url, content=body, headers={"Content-Type": content_type})
            except httpx.HTTPError as error:
                finished[0] += 1
                errors.append(f"{type(error).__name__}: {error}")
                continue
            finished[0] += 1
            latencies_ms.append((time.perf_counter() - started) * 1000)
            if response.status_code == 200:
                server_ms.append(response.json()["latency_ms"])
            else:
                errors.append(f"{response.status_code}: {response.text[:200]}")

    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(limits=limits, timeout=REQUEST_TIMEOUT_SECONDS) as http:
        started = time.perf_counter()
        tasks = [asyncio.create_task(client(http)) for _ in range(concurrency)]
        done, pending = await asyncio.wait(tasks, timeout=time_limit)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        for task in done:
            task.result()  # a bug in the client itself should not pass silently
        seconds = time.perf_counter() - started
    return {"latencies_ms": latencies_ms, "server_ms": server_ms, "errors": errors, "finished": finished[0],
            "seconds": seconds, "timed_out": bool(pending)}


def summarize(measured: dict, requested: int, concurrency: int) -> dict:
    answered = measured["latencies_ms"]
    return {
        "requests": requested,
        "completed": measured["finished"],
        "errors": len(measured["errors"]),
        "concurrency": concurrency,
        "p50_ms": float(np.percentile(answered, 50)) if answered else None,
        "p99_ms": float(np.percentile(answered, 99)) if answered else None,
        "requests_per_second": len(answered) / measured["seconds"],
        "server_median_latency_ms": statistics.median(measured["server_ms"]) if measured["server_ms"] else None,
        "seconds": measured["seconds"],
        "timed_out": measured["timed_out"],
        "first_errors": measured["errors"][:5],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", type=Path, help="a .keras or .tflite model that `denselab serve` accepts")
    parser.add_argument("--requests", type=int, default=2000, help="how many POST /predict requests in all")
    parser.add_argument("--concurrency", type=int, default=16, help="how many clients send at once")
    parser.add_argument("--time-limit", type=float, default=120, help="seconds after which the run gives up")
    parser.add_argument("--out", type=Path, default=ROOT / "reports" / "load.json")
    arguments = parser.parse_args()
    if arguments.requests < 1 or arguments.concurrency < 1 or arguments.time_limit <= 0:
        parser.error("--requests, --concurrency and --time-limit must be positive")
    if not arguments.model.is_file():
        parser.error(f"model file {arguments.model} does not exist")

    bodies = request_bodies(arguments.requests)
    port = free_port()
    with tempfile.TemporaryFile() as log:
        try:
            process = start_server(arguments.model, port, log)
        except RuntimeError as problem:
            log.seek(0)
            sys.exit(f"error: {problem}\n{log.read().decode(errors='replace')[-3000:]}")
        try:
            measured = asyncio.run(send_all(f"http://{HOST}:{port}/predict", bodies,
                                            arguments.concurrency, arguments.time_limit))
        finally:
            stop_server(process)

    result = {"model": str(arguments.model), **summarize(measured, arguments.requests, arguments.concurrency)}
    print(json.dumps(result, indent=2))
    arguments.out.parent.mkdir(parents=True, exist_ok=True)
    arguments.out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
