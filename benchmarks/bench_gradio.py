"""Load test of the browser demo's /render endpoint on the loopback: latency under concurrent requests, and memory.

Starts ``app_gradio.py`` in a subprocess on a free 127.0.0.1 port (or uses ``--url``), warms it up, then runs each
scenario as ``--requests`` calls sent by ``--concurrency`` client threads at once:

* sequential:  one request at a time, camera moves only (tri-planes cached): the latency of one render;
* camera:      concurrent camera moves of one seed (cache hits: renderer + super-resolution only);
* new seeds:   concurrent requests for seeds never seen (cache misses: backbone + render, LRU evictions).

With ``--flood``, instead: one raw HTTP client from another loopback address (127.0.0.2) posts 65 maximum-size videos
at once and re-posts one every 0.5 s for ``--duration`` seconds, while ``--concurrency`` gradio_client sessions (from
127.0.0.1) send camera moves and new seeds as fast as they are answered and one of them also asks for short videos.

Usage:  python benchmarks/bench_gradio.py [--model PATH] [--requests 20] [--concurrency 20] [--url URL]
        python benchmarks/bench_gradio.py --flood [--duration 60] [--concurrency 4]
Prints a markdown table (latencies in seconds, server RSS in MiB before/after each scenario); writes nothing.
Bounded: a fixed number of requests (or a fixed duration), each with a timeout, to the loopback only.
"""
from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import argparse  # noqa: E402
import http.client  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import socket  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
import urllib.parse  # noqa: E402
import urllib.request  # noqa: E402
from collections.abc import Callable  # noqa: E402
from concurrent.futures import ThreadPoolExecutor, wait  # noqa: E402
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


FLOODER = "127.0.0.2"  # all of 127.0.0.0/8 is the loopback: another address, so another client to the server
# /video's parameters: seed, psi, yaw, pitch, fov, output, cutoff, precision, resolution, frames, fps, path (the
# largest job the demo's limits allow: 240 frames at the highest neural rendering resolution, set per model below).
FLOOD_VIDEO = [0, 0.7, 0, 0, None, "all", None, "fp32", None, 240, 30, "orbit"]


def raw_video(url: str, data: list, timeout: float) -> tuple[str, float]:
    """POST /gradio_api/call/video from FLOODER and read its stream: ("refused" | "done" | "error: ..." |
    "unfinished", seconds from the post to the outcome)."""
    t0 = time.perf_counter()
    parts = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout, source_address=(FLOODER, 0))
    try:
        conn.request("POST", "/gradio_api/call/video", json.dumps({"data": data}), {"Content-Type": "application/json"})
        r = conn.getresponse()
        body = r.read()
        if r.status != 200:
            return f"error: HTTP {r.status} {body[:80]!r}", time.perf_counter() - t0
        conn.request("GET", f"/gradio_api/call/video/{json.loads(body)['event_id']}")
        event = ""
        for raw in conn.getresponse():
            line = raw.decode().strip()
            if line.startswith("event:"):
                event = line.removeprefix("event:").strip()
            elif line.startswith("data:") and event in ("complete", "error"):
                if event == "complete":
                    return "done", time.perf_counter() - t0
                kind = "refused" if "busy:" in line else f"error: {line[:100]}"
                return kind, time.perf_counter() - t0
        return "unfinished", time.perf_counter() - t0
    except OSError:  # the server stopped at the end of the run with this job still queued or running
        return "unfinished", time.perf_counter() - t0
    finally:
        conn.close()


def flood(url: str, pid: int | None, sessions: int, duration: float, resolution: int, timeout: float,
          downloads: Path) -> tuple[list[Row], dict[str, int]]:
    """The --flood scenario: (rows of the other clients' requests, the flood's outcomes by kind)."""
    stop = threading.Event()
    lock = threading.Lock()
    renders: list[float | None] = []
    videos: list[float | None] = []
    outcomes: list[tuple[str, float]] = []
    video = [*FLOOD_VIDEO[:8], resolution, *FLOOD_VIDEO[9:]]

    def flooder(pool: ThreadPoolExecutor) -> None:
        posted = [pool.submit(raw_video, url, [1000 + i, *video[1:]], timeout) for i in range(65)]
        while not stop.wait(0.5):
            posted.append(pool.submit(raw_video, url, [2000 + len(posted), *video[1:]], timeout))
        wait(posted, timeout=10)  # the last posts' answers; admitted jobs are still queued or running
        outcomes.extend(f.result() if f.done() else ("unfinished", math.nan) for f in posted)

    def user(k: int) -> None:
        client = Client(url, verbose=False, download_files=str(downloads / str(k)))
        i = 0
        while not stop.is_set():
            i += 1
            short = k == 0 and i % 10 == 0
            t0 = time.perf_counter()
            try:
                if short:
                    client.submit(k, frames=8, fps=8, api_name="/video").result(timeout=timeout)
                else:  # camera moves of one seed, a new seed every fifth request
                    seed = 50_000 + 1000 * k + i if i % 5 == 0 else k
                    client.submit(seed, 0.7, -60 + (7 * i) % 120, 0, api_name="/render").result(timeout=timeout)
                took: float | None = time.perf_counter() - t0
            except Exception as e:  # noqa: BLE001 - counted and reported, the run goes on
                print(f"  session {k} request {i} failed: {type(e).__name__}: {e}", file=sys.stderr)
                took = None
            with lock:
                (videos if short else renders).append(took)

    before = rss_mb(pid)
    t0 = time.perf_counter()
    flood_pool = ThreadPoolExecutor(256)
    with ThreadPoolExecutor(sessions + 1) as pool:
        flooding = pool.submit(flooder, flood_pool)
        time.sleep(1.0)  # the wave is in before the others start
        users = [pool.submit(user, k) for k in range(sessions)]
        time.sleep(duration)
        stop.set()
        for f in users:
            f.result()
        after = rss_mb(pid)
        total = time.perf_counter() - t0
        flooding.result()
    flood_pool.shutdown(wait=False, cancel_futures=True)

    def row(name: str, results: list[float | None]) -> Row:
        ok = [r for r in results if r is not None]
        return Row(name, len(results), sessions, len(results) - len(ok), ok, total, before, after)

    refused = [t for kind, t in outcomes if kind == "refused"]
    rows = [row("renders of other sessions during the flood", renders),
            row("their short videos (8 frames) during the flood", videos)]
    counts: dict[str, int] = {}
    for kind, _ in outcomes:
        counts[kind.split(":")[0]] = counts.get(kind.split(":")[0], 0) + 1
    rows.append(Row("flood: /video from one address (latency: refusals)", len(outcomes), 1, counts.get("error", 0),
                    refused, total, before, after))
    return rows, counts


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default=None, help="checkpoint for the server (default: the demo model, else the "
                                                  "tiny test fixture)")
    ap.add_argument("--url", default=None, help="benchmark a running server instead (no RSS figures)")
    ap.add_argument("--requests", type=int, default=20)
    ap.add_argument("--concurrency", type=int, default=20)
    ap.add_argument("--timeout", type=float, default=300.0, help="per request, seconds")
    ap.add_argument("--flood", action="store_true", help="the flood scenario (see above) instead")
    ap.add_argument("--duration", type=float, default=60.0, help="--flood: seconds of flooding")
    ap.add_argument("--flood-resolution", type=int, default=128,
                    help="--flood: the videos' neural rendering resolution (the demo model's largest: 128)")
    args = ap.parse_args()
    if args.flood and not 1 <= args.duration <= 600:
        ap.error("--duration must be in [1, 600]")
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
            if args.flood:
                rows, counts = flood(url, pid, k, args.duration, args.flood_resolution, args.timeout,
                                     Path(tmp) / "flood")
                print("flood outcomes: " + ", ".join(f"{v} {kind}" for kind, v in sorted(counts.items())))
            else:
                rows = [
                    run(client, "sequential (cached planes)", lambda i: (1, 0.7, -45 + 5 * i, 0), min(n, 10), 1, pid,
                        args.timeout),
                    run(client, "camera moves (cached planes)", lambda i: (1, 0.7, -90 + 9 * i, 5), n, k, pid,
                        args.timeout),
                    run(client, "new seeds (cache misses)", lambda i: (10_000 + i, 0.7, 20, 0), n, k, pid,
                        args.timeout),
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
