"""Benchmark web page rendering: one shared browser with parallel contexts vs simpler baselines.

    python bench/web.py --pages 12 --delay 0.3     # last line is a JSON object

Pages are served from localhost; each loads a stylesheet and two images that the server delays
by `--delay` seconds (network latency, which is what rendering mostly waits on). Modes, timed
over the same pages in the same run:
  fresh       a new browser per page (what rendering each source on its own would cost)
  shared-1    one browser, one page at a time
  shared-N    one browser, N pages at a time (`WebRenderer(max_parallel=N)`, the default 4)
With `--real K`, the K smallest ../shared/data/real-docs/web/readability pages (offline: their
remote resources fail) are rendered too, reporting seconds per page and how many settled.
"""

from __future__ import annotations

import argparse
import http.server
import json
import os
import platform
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from ingest.web import WebOptions, WebRenderer, render_web

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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pages", type=int, default=12)
    parser.add_argument("--delay", type=float, default=0.3, help="seconds the server delays each subresource")
    parser.add_argument("--parallel", type=int, default=4)
    parser.add_argument("--real", type=int, default=10, help="real readability pages to render (0: none)")
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
    for name, parallel, fresh in (
        ("fresh", 1, True),
        ("shared-1", 1, False),
        (f"shared-{args.parallel}", args.parallel, False),
    ):
        seconds, tiles = _timed(urls, options, parallel, fresh)
        timings[name] = seconds
        print(
            f"{name:>10}: {seconds:6.1f} s for {args.pages} pages ({tiles} tiles), "
            f"{seconds / args.pages:.2f} s/page",
            file=sys.stderr,
        )
    best = timings[f"shared-{args.parallel}"]
    results["seconds"] = {name: round(value, 2) for name, value in timings.items()}
    results["speedup_vs_fresh"] = round(timings["fresh"] / best, 2)
    results["speedup_vs_shared_1"] = round(timings["shared-1"] / best, 2)
    print(
        f"shared-{args.parallel} is {results['speedup_vs_fresh']}x faster than a browser per page and "
        f"{results['speedup_vs_shared_1']}x faster than one page at a time",
        file=sys.stderr,
    )
    folder = ROOT.parent / "shared" / "data" / "real-docs" / "web" / "readability"
    if args.real and folder.is_dir():
        files = sorted(folder.glob("*.html"), key=lambda path: (path.stat().st_size, path.name))[: args.real]
        start = time.perf_counter()
        with WebRenderer(max_parallel=args.parallel) as renderer:
            real = render_web(files, WebOptions(), renderer=renderer)
        seconds = time.perf_counter() - start
        ok = [r for r in real if r.error is None]
        results["real"] = {
            "files": len(files),
            "rendered": len(ok),
            "settled": sum(bool(r.pages[0].metadata["settled"]) for r in ok),
            "tiles": sum(len(r.pages) for r in ok),
            "seconds": round(seconds, 1),
        }
        print(f"real readability pages: {results['real']}", file=sys.stderr)
    server.shutdown()
    print(json.dumps(results))


if __name__ == "__main__":
    main()
