"""Crash safety and concurrent readers, with real writer processes.

A child process (forked, so it starts at once) adds, updates and deletes sources in a
deterministic loop (`writer_main`) and
logs each operation once committed; the test kills it with SIGKILL at seeded points, reopens the
index and checks it holds exactly the state after the logged operations (or one more: the
operation in flight may have committed before its log line), with every live page searchable
and no row of an uncommitted source. Another test searches while a writer commits.
"""

from __future__ import annotations

import hashlib
import multiprocessing
import os
import random
import signal
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from dse.backends.records import NewPage
from dse.storage.page_index import PageIndex

DIM = 8
TOKENS = 3  # multi-vector pages: tokens per page


def encoder(kind: str) -> dict[str, Any]:
    """A fake encoder description for an index of `kind`."""
    return {"name": f"fake-{kind}", "kind": kind, "input": "image", "model": "m", "revision": None,
            "prompt_version": "1", "dim": DIM, "options": {}}


def digest_of(i: int) -> str:
    """The digest of the content written by operation i."""
    return hashlib.sha256(f"content-{i}".encode()).hexdigest()


def n_pages(digest: str) -> int:
    """Pages of a source with this digest (1 to 3)."""
    return 1 + int(digest[-1], 16) % 3


def page_ids(digest: str) -> list[str]:
    """Ids of the pages of a source (content-derived, like ingest.make_page_id)."""
    from ingest import make_page_id

    return [make_page_id(digest, p) for p in range(1, n_pages(digest) + 1)]


def vectors(digest: str, kind: str) -> Any:
    """Deterministic unit vectors of a source's pages: (pages, dim) or a list of (tokens, dim)."""
    rng = np.random.default_rng(int(digest[:8], 16))
    shape = (n_pages(digest), DIM) if kind == "single" else (n_pages(digest), TOKENS, DIM)
    v = rng.standard_normal(shape).astype(np.float32)  # (pages, dim) or (pages, tokens, dim)
    v /= np.linalg.norm(v, axis=-1, keepdims=True)
    return v if kind == "single" else list(v)


def next_op(i: int, state: dict[str, str]) -> tuple[str, str, str]:
    """Operation i given the live state {path: digest}: ("add" | "delete", path, digest)."""
    live = sorted(state)
    if i % 5 == 3 and live:
        return "add", live[i % len(live)], digest_of(i)  # an update: same path, new bytes
    if i % 5 == 4 and live:
        return "delete", live[(3 * i) % len(live)], ""
    return "add", f"doc{i:04d}.pdf", digest_of(i)


def replay(n_ops: int) -> dict[str, str]:
    """The live state {path: digest} after operations 0..n_ops-1."""
    state: dict[str, str] = {}
    for i in range(n_ops):
        op, path, digest = next_op(i, state)
        if op == "delete":
            del state[path]
        else:
            state[path] = digest
    return state


def writer_main(directory: str, kind: str, start: int, stop: int, log: str, ready: Any = None) -> None:
    """Child process: run operations start..stop-1 on the index, logging each after its commit."""
    index = PageIndex.open(directory) if PageIndex.exists(directory) else PageIndex.create(
        directory, encoder(kind), image_size=0
    )
    state = replay(start)
    if ready is not None:
        ready.set()
    with open(log, "a") as out:
        for i in range(start, stop):
            op, path, digest = next_op(i, state)
            if op == "delete":
                index.delete(sources=[path])
                del state[path]
            else:
                pages = [NewPage(pid, p, f"w{digest[:6]} page {p}", None, {"kind": "pdf"})
                         for p, pid in enumerate(page_ids(digest), 1)]
                index.add_source(path, digest, "pdf", pages, vectors(digest, kind))
                state[path] = digest
            out.write(f"{i}\n")
            out.flush()
    index.close()


def _start_writer(directory: Path, kind: str, start: int, stop: int, log: Path) -> Any:
    """A writer in a child process, forked so that it starts without re-importing (SIGKILL-able)."""
    from dse.encoders.bm25 import BM25Encoder

    BM25Encoder().encode_pages(["warm up"])  # import the tokenizer once, before forking
    ctx = multiprocessing.get_context("fork")
    ready = ctx.Event()
    proc = ctx.Process(target=writer_main, args=(str(directory), kind, start, stop, str(log), ready), daemon=True)
    proc.start()
    assert ready.wait(60), "the writer did not start"
    return proc


def _logged(log: Path) -> int:
    return len(log.read_text().split()) if log.exists() else 0


def check_index(directory: Path, kind: str, done: int) -> int:
    """Reopen and check the invariants; return the operations committed (done or done + 1)."""
    with PageIndex.open(directory) as index:
        actual = {s["path"]: s["digest"] for s in index.catalogue.sources()}
        if actual != replay(done):
            assert actual == replay(done + 1), f"state after {done} logged ops matches neither {done} nor {done + 1}"
            done += 1
        counts = index.counts()
        rows = len(index.catalogue)
        assert len(index.engine) == rows == len(index.text_engine)  # no half-written page
        assert counts.pages == sum(n_pages(d) for d in actual.values()) == len(index)
        assert (index.manifest.pages, index.manifest.sources) == (counts.pages, counts.sources)
        expected = [pid for d in actual.values() for pid in page_ids(d)]
        if expected:  # every committed page is found by its own vectors, and only live pages come back
            if kind == "single":
                queries: Any = np.concatenate([vectors(d, kind) for d in actual.values()])  # (n, dim)
            else:
                queries = [v for d in actual.values() for v in vectors(d, kind)]
            hits = index.search(queries, k=len(expected) + 5)
            assert [h[0].record.page_id for h in hits] == expected
            assert all(sorted(x.record.page_id for x in h) == sorted(expected) for h in hits)
    return done


@pytest.mark.parametrize("kind,rounds", [("single", 5), ("multi", 4)])
def test_kill_9_during_add_and_delete_loses_nothing_committed(tmp_path: Path, kind: str, rounds: int) -> None:
    rng = random.Random(1234 if kind == "single" else 4321)
    directory, log = tmp_path / "idx", tmp_path / "ops.log"
    done = 0
    for round_no in range(rounds):
        proc = _start_writer(directory, kind, done, done + 10_000, log)
        if round_no % 2 == 0:  # after N commits observed
            target = _logged(log) + rng.randint(1, 6)
            while _logged(log) < target and proc.is_alive():
                time.sleep(0.001)
        else:  # at an arbitrary moment
            time.sleep(rng.uniform(0.0, 0.3))
        os.kill(proc.pid, signal.SIGKILL)
        proc.join()
        done = check_index(directory, kind, _logged(log))
        log.write_text("".join(f"{i}\n" for i in range(done)))  # the in-flight op, if committed
    assert done > rounds  # the writer made progress between kills
    proc = _start_writer(directory, kind, done, done + 3, log)  # a writer resumes after the crashes
    proc.join()
    assert proc.exitcode == 0
    assert check_index(directory, kind, _logged(log)) == done + 3


def test_readers_search_while_a_writer_commits(tmp_path: Path) -> None:
    directory, log = tmp_path / "idx", tmp_path / "ops.log"
    proc = _start_writer(directory, "single", 0, 8, log)
    proc.join()
    reader = PageIndex.open(directory)
    seen_rows = len(reader.engine)
    proc = _start_writer(directory, "single", 8, 80, log)
    searches = 0
    while proc.is_alive() or searches < 3:
        state = replay(8)  # pages the reader loaded; some may have been deleted since
        queries = np.concatenate([vectors(d, "single") for d in state.values()])  # (n, dim)
        for hits in reader.search(queries, k=5):
            assert all(h.record.row < len(reader.engine) for h in hits)  # its snapshot, never newer rows
            assert len({h.record.page_id for h in hits}) == len(hits)
        if searches % 4 == 0:
            with PageIndex.open(directory) as other:  # a reader opened while the writer commits
                assert len(other.engine) == len(other.text_engine) <= len(other.catalogue)
                assert len(other.search(queries[:1], k=3)[0]) == min(3, len(other))
        if searches % 3 == 0:
            reader.refresh()
            assert len(reader.engine) >= seen_rows and len(reader.engine) == len(reader.text_engine)
            seen_rows = len(reader.engine)
        searches += 1
    proc.join()
    assert proc.exitcode == 0
    reader.refresh()
    final = replay(80)
    live = {pid for d in final.values() for pid in page_ids(d)}
    hits = reader.search(np.concatenate([vectors(d, "single") for d in final.values()]), k=len(live))
    assert {h.record.page_id for h in hits[0]} == live
    reader.close()
    assert check_index(directory, "single", 80) == 80
