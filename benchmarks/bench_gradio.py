"""Load test of the browser demo's /render endpoint on the loopback: latency under concurrent requests, and memory.

Starts ``app_gradio.py`` in a subprocess on a free 127.0.0.1 port (or uses ``--url``), warms it up, then runs each
scenario as ``--requests`` calls sent by ``--concurrency`` client threads at once:

* sequential:  one request at a time, camera moves only (tri-planes cached): the latency of one render;
* camera:      concurrent camera moves of one seed (cache hits: renderer + super-resolution only);
* new seeds:   concurrent requests for seeds never seen (cache misses: backbone + render, LRU evictions).

Usage:  python benchmarks/bench_gradio.py [--model PATH] [--requests 20] [--concurrency 20] [--url URL]
Prints a markdown table (latencies in seconds, server RSS in MiB before/after each scenario); writes nothing.
Bounded: a fixed number of requests, each with a timeout, to the loopback only.
"""
from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import argparse  # noqa: E402
import socket  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import urllib.request  # noqa: E402
from collections.abc import Callable  # noqa: E402
from concurrent.futures import ThreadPoolExecutor  # noqa: E402
from dataclasses import dataclass  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
from gradio_client import Client  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
FIXTURE = ROOT / "tests" / "fixtures" / "tiny_cars128" / "network-snapshot.pkl"
DEMO_WEIGHTS = ROOT / "assets" / "demo" / "model.safetensors"


@dataclass
class Row:
    scenario: str
    requests: int
    concurrency: int
    failed: int
    latencies: list[float]
    total: float
    rss_before: float | None
    rss_after: float | None


def rss_mb(pid: int | None) -> float | None:
    if pid is None:
        return None
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return None


def start_server(model: str, log: Path, timeout: float = 300.0) -> tuple[subprocess.Popen, str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with open(log, "wb") as fh:
        proc = subprocess.Popen([sys.executable, str(ROOT / "app_gradio.py"), "--model", model, "--port", str(port)],
                                cwd=ROOT, stdout=fh, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"server exited with {proc.returncode}:\n{log.read_text()}")
        try:
            with urllib.request.urlopen(url, timeout=5):
                return proc, url
        except OSError:
            time.sleep(0.5)
    proc.terminate()
    raise SystemExit(f"server not up after {timeout} s")


def run(client: Client, scenario: str, args_of: Callable[[int], tuple], requests: int, concurrency: int,
        pid: int | None, timeout: float) -> Row:
    def call(i: int) -> float | None:
        t0 = time.perf_counter()
        try:
            client.submit(*args_of(i), api_name="/render").result(timeout=timeout)
        except Exception as e:  # noqa: BLE001 - counted and reported, the run goes on
            print(f"  {scenario} request {i} failed: {type(e).__name__}: {e}", file=sys.stderr)
            return None
        return time.perf_counter() - t0

    before = rss_mb(pid)
    t0 = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        results = list(pool.map(call, range(requests)))
    total = time.perf_counter() - t0
    ok = [r for r in results if r is not None]
    return Row(scenario, requests, concurrency, len(results) - len(ok), ok, total, before, rss_mb(pid))


def table(rows: list[Row]) -> str:
    def mb(x: float | None) -> str:
        return "-" if x is None else f"{x:.0f}"

    lines = ["| scenario | requests | concurrent | failed | p50 s | p95 s | max s | total s | req/s | RSS before → after MiB |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |"]
    for r in rows:
        lat = np.array(r.latencies) if r.latencies else np.array([np.nan])
        lines.append(f"| {r.scenario} | {r.requests} | {r.concurrency} | {r.failed} | {np.percentile(lat, 50):.2f} | "
                     f"{np.percentile(lat, 95):.2f} | {lat.max():.2f} | {r.total:.1f} | {r.requests / r.total:.2f} | "
                     f"{mb(r.rss_before)} → {mb(r.rss_after)} |")
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default=None, help="checkpoint for the server (default: the demo model, else the "
                                                  "tiny test fixture)")
    ap.add_argument("--url", default=None, help="benchmark a running server instead (no RSS figures)")
    ap.add_argument("--requests", type=int, default=20)
    ap.add_argument("--concurrency", type=int, default=20)
    ap.add_argument("--timeout", type=float, default=300.0, help="per request, seconds")
    args = ap.parse_args()
    if not 1 <= args.requests <= 1000 or not 1 <= args.concurrency <= 100:
        ap.error("--requests must be in [1, 1000] and --concurrency in [1, 100]")

    proc = None
    with tempfile.TemporaryDirectory(prefix="bench-gradio-") as tmp:
        if args.url:
            url, pid, model = args.url, None, "(running server)"
        else:
            model = args.model or ("demo" if DEMO_WEIGHTS.exists() else str(FIXTURE))
            t0 = time.perf_counter()
            proc, url = start_server(model, Path(tmp) / "server.log")
            print(f"server up in {time.perf_counter() - t0:.1f} s: {url} ({model})", file=sys.stderr)
            pid = proc.pid
        try:
            client = Client(url, verbose=False, download_files=str(Path(tmp) / "downloads"))
            n, k = args.requests, args.concurrency
            # Warm-up: the first requests pay for lazy initialisation (allocator pools, the queue's workers).
            run(client, "warm-up", lambda i: (1, 0.7, 0, 0), 3, 1, pid, args.timeout)
            rows = [
                run(client, "sequential (cached planes)", lambda i: (1, 0.7, -45 + 5 * i, 0), min(n, 10), 1, pid,
                    args.timeout),
                run(client, "camera moves (cached planes)", lambda i: (1, 0.7, -90 + 9 * i, 5), n, k, pid,
                    args.timeout),
                run(client, "new seeds (cache misses)", lambda i: (10_000 + i, 0.7, 20, 0), n, k, pid, args.timeout),
            ]
        finally:
            if proc is not None:
                proc.terminate()
                proc.wait(30)
    load = os.getloadavg()
    print(f"model: {model}; {os.cpu_count()} CPUs, load average {load[0]:.1f} {load[1]:.1f} {load[2]:.1f}")
    print(table(rows))
    return 1 if any(r.failed for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
