"""Benchmark web page rendering: one shared browser with parallel contexts vs simpler baselines.

    python bench/web.py --pages 12 --delay 0.3     # last line is a JSON object

Pages are served from localhost; each loads a stylesheet and two images that the server delays
by `--delay` seconds (network latency, which is what rendering mostly waits on). Modes, timed
over the same pages in the same run:
  fresh       a new browser per page (what rendering each source on its own would cost)
  shared-1    one browser, one page at a time
  shared-N    one browser, N pages at a time (`WebRenderer(max_parallel=N)`, the default 4)
With `--real K`, the K smallest ../shared/data/real-docs/web/readability pages (offline: their
remote resources fail; `--real -1`: all of them) are rendered too, reporting seconds, how many
settled, and how the tiles went (retried, taken by the fallback, pages stopped by the time limit).
`--hogs N` runs N busy-loop processes during that pass (a machine under full CPU load):

    python bench/web.py --pages 0 --real -1 --hogs 2
"""

from __future__ import annotations

import argparse
import http.server
import json
import os
import platform
import subprocess
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from ingest.web.render import WebOptions, WebRenderer, render_web

ROOT = Path(__file__).resolve().parents[1]


def _serve(delay: float) -> http.server.ThreadingHTTPServer:
    class Handler(http.server.BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def do_GET(self) -> None:
            if self.path.startswith("/page/"):
                number = self.path.rsplit("/", 1)[1]
                paragraphs = "".join(f"<p>Page {number}, paragraph {i}: lorem ipsum.</p>" for i in range(120))
                body = (
                    f"<html><head><title>Page {number}</title><link rel=stylesheet href='/style.css?{number}'>"
                    f"</head><body><img src='/a.svg?{number}'><img src='/b.svg?{number}'>{paragraphs}"
                    "</body></html>"
                ).encode()
                kind = "text/html"
            else:
                time.sleep(delay)
                body = (
                    b"body { font: 18px serif }"
                    if "css" in self.path
                    else (
                        b"<svg xmlns='http://www.w3.org/2000/svg' width='200' height='100'>"
                        b"<rect width='200' height='100' fill='teal'/></svg>"
                    )
                )
                kind = "text/css" if "css" in self.path else "image/svg+xml"
            self.send_response(200)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def _timed(urls: list[str], options: WebOptions, parallel: int, fresh: bool) -> tuple[float, int]:
    """Seconds to render `urls` (browser start included) and the number of tiles."""
    start = time.perf_counter()
    tiles = 0
    if fresh:
        for url in urls:
            with WebRenderer(max_parallel=1) as renderer:
                tiles += sum(len(r.pages) for r in render_web([url], options, renderer=renderer))
    else:
        with WebRenderer(max_parallel=parallel) as renderer:
            tiles += sum(len(r.pages) for r in render_web(urls, options, renderer=renderer))
    return time.perf_counter() - start, tiles


def _hogs(count: int, seconds: float) -> list[subprocess.Popen]:
    """`count` busy-loop processes that end on their own after `seconds`."""
    code = f"import time\nend = time.time() + {seconds}\nwhile time.time() < end: pass\n"
    return [subprocess.Popen([sys.executable, "-c", code]) for _ in range(count)]


def _real(count: int, parallel: int, hogs: int) -> dict[str, object]:
    """Render the `count` smallest real readability pages (all if negative), under `hogs` CPU hogs."""
    folder = ROOT.parent / "shared" / "data" / "real-docs" / "web" / "readability"
    files = sorted(folder.glob("*.html"), key=lambda path: (path.stat().st_size, path.name))
    files = files if count < 0 else files[:count]
    busy = _hogs(hogs, 900)
    try:
        start = time.perf_counter()
        with WebRenderer(max_parallel=parallel) as renderer:
            real = render_web(files, WebOptions(), renderer=renderer)
        seconds = time.perf_counter() - start
    finally:
        for hog in busy:
            hog.kill()
            hog.wait()
    ok = [r for r in real if r.error is None]
    firsts = [r.pages[0].metadata for r in ok]
    return {
        "files": len(files),
        "rendered": len(ok),
        "failed": [str(r.error) for r in real if r.error is not None],
        "settled": sum(bool(meta["settled"]) for meta in firsts),
        "tiles": sum(len(r.pages) for r in ok),
        "tiles_retried": sum(meta["tile_retries"] for meta in firsts),
        "tiles_fallback": sum(meta["tile_fallbacks"] for meta in firsts),
        "stopped": sum(meta["stopped"] is not None for meta in firsts),
        "cpu_hogs": hogs,
        "seconds": round(seconds, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pages", type=int, default=12)
    parser.add_argument("--delay", type=float, default=0.3, help="seconds the server delays each subresource")
    parser.add_argument("--parallel", type=int, default=4)
    parser.add_argument("--real", type=int, default=10, help="real readability pages to render (0: none, -1: all)")
    parser.add_argument("--hogs", type=int, default=0, help="busy-loop processes during the real pages")
    args = parser.parse_args()
    server = _serve(args.delay)
    urls = [f"http://127.0.0.1:{server.server_port}/page/{i}" for i in range(args.pages)]
    options = WebOptions(allow_private=True)
    results: dict[str, object] = {
        "machine": f"{platform.node()} {platform.machine()} {os.cpu_count()} cpus, {platform.platform()}",
        "pages": args.pages,
        "delay_s": args.delay,
    }
    timings = {}
    modes = (("fresh", 1, True), ("shared-1", 1, False), (f"shared-{args.parallel}", args.parallel, False))
    for name, parallel, fresh in modes if args.pages else ():
        seconds, tiles = _timed(urls, options, parallel, fresh)
        timings[name] = seconds
        print(
            f"{name:>10}: {seconds:6.1f} s for {args.pages} pages ({tiles} tiles), "
            f"{seconds / args.pages:.2f} s/page",
            file=sys.stderr,
        )
    if args.pages:
        best = timings[f"shared-{args.parallel}"]
        results["seconds"] = {name: round(value, 2) for name, value in timings.items()}
        results["speedup_vs_fresh"] = round(timings["fresh"] / best, 2)
        results["speedup_vs_shared_1"] = round(timings["shared-1"] / best, 2)
        print(
            f"shared-{args.parallel} is {results['speedup_vs_fresh']}x faster than a browser per page and "
            f"{results['speedup_vs_shared_1']}x faster than one page at a time",
            file=sys.stderr,
        )
    if args.real and (ROOT.parent / "shared" / "data" / "real-docs" / "web").is_dir():
        results["real"] = _real(args.real, args.parallel, args.hogs)
        print(f"real readability pages: {results['real']}", file=sys.stderr)
    server.shutdown()
    print(json.dumps(results))


if __name__ == "__main__":
    main()
