"""Bounded concurrent load for `bench/serve.py`: N workers, a fixed list of queries each, a time cap.

The same runner drives HTTP clients (one keep-alive `http.client.HTTPConnection` per worker
thread, POST /v1/search) and in-process searches (threads sharing one `Retriever`), so both are
measured the same way: each worker first sends its warm-up queries (untimed), all wait at a
barrier, then each sends its own queries one after the other, each latency measured from the
request to its parsed answer.
"""

from __future__ import annotations

import http.client
import json
import os
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import numpy as np

KEEP_ALIVE_S = 4.0  # uvicorn closes a keep-alive connection idle for 5 s (its timeout_keep_alive default)
# A worker's caller: query -> (page ids ranked, server-side took_ms or None); and a close function.
Caller = Callable[[str], tuple[list[str], float | None]]
MakeCaller = Callable[[], tuple[Caller, Callable[[], None]]]


@dataclass
class Load:
    """What one load run measured."""

    workers: int
    load_before: float = 0.0  # 1-minute load average when the run started
    idle_before: float = 1.0  # share of CPU time idle just before the run (other processes' load)
    latencies_ms: list[float] = field(default_factory=list)
    took_ms: list[float] = field(default_factory=list)  # the server's own timing (HTTP only)
    errors: int = 0
    error_samples: list[str] = field(default_factory=list)
    wall_s: float = 0.0
    capped: bool = False  # stopped by the wall-time cap before every query was sent
    hits: dict[str, list[str]] = field(default_factory=dict)  # query -> ranked page ids

    def stats(self) -> dict[str, Any]:
        """p50/p95/p99 latency (ms), requests per second, errors."""
        lat = np.array(self.latencies_ms) if self.latencies_ms else np.array([np.nan])
        out = {"workers": self.workers, "requests": len(self.latencies_ms), "errors": self.errors,
               "p50_ms": _r(np.percentile(lat, 50)), "p95_ms": _r(np.percentile(lat, 95)),
               "p99_ms": _r(np.percentile(lat, 99)), "mean_ms": _r(lat.mean()),
               "rps": _r(len(self.latencies_ms) / self.wall_s if self.wall_s else float("nan")),
               "wall_s": _r(self.wall_s, 3), "capped": self.capped, "load1_before": self.load_before,
               "idle_before": self.idle_before}
        if self.took_ms:
            out["server_took_p50_ms"] = _r(np.percentile(self.took_ms, 50))
        if self.error_samples:
            out["error_samples"] = self.error_samples[:5]
        return out


def _r(x: float, digits: int = 2) -> float:
    return round(float(x), digits)


def cpu_idle(window: float = 1.0) -> float:
    """Share of this machine's CPU time that was idle over the next `window` seconds (Linux; else 1)."""
    def sample() -> tuple[int, int]:
        fields = [int(x) for x in open("/proc/stat").readline().split()[1:]]
        return fields[3] + (fields[4] if len(fields) > 4 else 0), sum(fields[:8])  # idle + iowait, total

    try:
        idle0, total0 = sample()
        time.sleep(window)
        idle1, total1 = sample()
    except (OSError, ValueError, IndexError):
        return 1.0
    return (idle1 - idle0) / max(total1 - total0, 1)


def wait_idle(max_wait: float, threshold: float = 0.9) -> float:
    """Wait (at most `max_wait` s) for a second in which the CPUs are `threshold` idle; the last idle share."""
    deadline = time.monotonic() + max_wait
    idle = cpu_idle()
    while idle < threshold and time.monotonic() < deadline:
        idle = cpu_idle()
    return idle


def run_load(make_caller: MakeCaller, chunks: Sequence[Sequence[str]], warmup: Sequence[Sequence[str]],
             max_seconds: float, idle_wait: float = 0.0) -> Load:
    """Run one worker thread per chunk of queries; stop early when `max_seconds` have passed.

    With `idle_wait`, the timed part starts once the machine was 90% idle for a second (after the
    warm-up, waiting at most `idle_wait` seconds); `Load.idle_before` says how idle it was.
    """
    load = Load(workers=len(chunks))
    lock = threading.Lock()
    barrier = threading.Barrier(len(chunks) + 1)
    deadline = [float("inf")]

    def fail(exc: BaseException) -> None:
        with lock:
            load.errors += 1
            if len(load.error_samples) < 5:
                load.error_samples.append(f"{type(exc).__name__}: {exc}"[:300])

    def worker(queries: Sequence[str], warm: Sequence[str]) -> None:
        try:
            call, close = make_caller()
        except BaseException as exc:  # noqa: BLE001 - counted, the run goes on
            fail(exc)
            barrier.wait()
            return
        try:
            for q in warm:
                try:
                    call(q)
                except Exception as exc:  # noqa: BLE001
                    fail(exc)
            barrier.wait()
            for q in queries:
                if time.perf_counter() > deadline[0]:
                    with lock:
                        load.capped = True
                    return
                t = time.perf_counter()
                try:
                    ids, took = call(q)
                except Exception as exc:  # noqa: BLE001 - an error is counted, not timed
                    fail(exc)
                    continue
                ms = (time.perf_counter() - t) * 1000
                with lock:
                    load.latencies_ms.append(ms)
                    load.hits[q] = ids
                    if took is not None:
                        load.took_ms.append(took)
        finally:
            close()

    threads = [threading.Thread(target=worker, args=(c, w), daemon=True) for c, w in zip(chunks, warmup)]
    for t in threads:
        t.start()
    while barrier.n_waiting < len(chunks) and any(t.is_alive() for t in threads):
        time.sleep(0.01)  # the workers are warm and waiting
    load.idle_before = round(wait_idle(idle_wait) if idle_wait > 0 else cpu_idle(0.5), 3)
    load.load_before = round(os.getloadavg()[0], 2)
    barrier.wait(timeout=600)
    start = time.perf_counter()
    deadline[0] = start + max_seconds
    for t in threads:
        t.join(timeout=max_seconds + 120)
    load.wall_s = time.perf_counter() - start
    return load


def http_caller(url: str, k: int, extra: dict[str, Any] | None = None) -> MakeCaller:
    """Workers posting `{"query", "k", **extra}` to `url`/v1/search over one keep-alive connection each."""
    parts = urlsplit(url)

    def make() -> tuple[Caller, Callable[[], None]]:
        conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=120)
        last = [time.monotonic()]

        def call(query: str) -> tuple[list[str], float | None]:
            body = json.dumps({"query": query, "k": k, **(extra or {})}).encode()
            if time.monotonic() - last[0] > KEEP_ALIVE_S:
                conn.close()  # the server has closed an idle connection by now: open a new one, as clients do
            try:
                conn.request("POST", "/v1/search", body=body, headers={"Content-Type": "application/json"})
                resp = conn.getresponse()
                data = resp.read()
            except Exception:
                conn.close()  # the next request opens a new connection
                raise
            last[0] = time.monotonic()
            if resp.status != 200:
                raise RuntimeError(f"HTTP {resp.status}: {data[:200].decode(errors='replace')}")
            out = json.loads(data)
            if not isinstance(out.get("hits"), list) or len(out["hits"]) > k:
                raise RuntimeError(f"malformed answer: {data[:200].decode(errors='replace')}")
            return [h["page_id"] for h in out["hits"]], float(out["took_ms"])

        return call, conn.close

    return make


def inprocess_caller(retriever: Any, k: int, options: dict[str, Any]) -> MakeCaller:
    """Workers calling `retriever.search(query, k, **options)` (the threads share the retriever)."""
    def make() -> tuple[Caller, Callable[[], None]]:
        def call(query: str) -> tuple[list[str], float | None]:
            return [h.page_id for h in retriever.search(query, k, **options)], None

        return call, lambda: None

    return make


def split(queries: Sequence[str], workers: int) -> list[list[str]]:
    """Consecutive equal shares of `queries`, one per worker."""
    per = len(queries) // workers
    return [list(queries[i * per:(i + 1) * per]) for i in range(workers)]
