"""Many searchers and a writer process at once: every answer is one committed state of the index.

The corpus makes consistency checkable. Every page of every source holds the word `shared` and
its source's own marker word (an animal), so a text query for `shared` with k over the page
count returns every live page of the state searched, and a query for a marker returns every page
of that source or none. The writer (a Python process, or `dse index` / `dse delete` processes)
follows a plan fixed in advance in which every add uses bytes never indexed before, so the
sequence of committed states S0, S1, ... is known: each answer must equal (its part of) some
state, never a partial source or a mix of two states, an updated source never vanishes, and one
thread never sees an older state after a newer one. Nothing here is timed: loops are bounded by
the plan's length and generous deadlines.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import random
import shutil
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from test_ingest import make_pdf, write

import dse
from dse.testing.server import serve_index
from ingest.page import make_page_id

STABLE = ("aardvark", "bison", "cheetah")  # updated (same path, new bytes) again and again, never deleted
CHURN = ("dingo", "ferret", "hyena")  # deleted and added back (with new bytes each time)
MARKERS = STABLE + CHURN
SHARED = "shared"  # on every page of every source
THREADS = 8
K = 100  # over the most pages live at once (6 sources x 4 pages)
DEADLINE = 180.0  # seconds a run may take at most (it takes a fraction of that)
CLI = [sys.executable, "-m", "dse.cli.main"]

WRITER = r"""
import json, os, shutil, sys
import dse

index, plan_file = sys.argv[1], sys.argv[2]
plan = json.loads(open(plan_file).read())
with dse.Retriever.open(index) as r:
    for i, op in enumerate(plan):
        if op["kind"] == "add":
            for src, dst in op["files"]:
                shutil.copyfile(src, dst + ".tmp")
                os.replace(dst + ".tmp", dst)
            report = r.add([dst for _, dst in op["files"]], workers=0)
            assert not report.failures and not report.skipped, report
        else:
            report = r.delete(sources=op["paths"])
            assert not report.missing, report
        print(i, flush=True)
"""


# --------------------------------------------------------------------------- corpus and plan
@dataclass
class Corpus:
    """Version files of each source, their page ids, a plan of writes and the states it commits."""

    root: Path
    versions: dict[tuple[str, int], Path] = field(default_factory=dict)  # (marker, version) -> bytes on disk
    ids: dict[tuple[str, int], frozenset[str]] = field(default_factory=dict)  # (marker, version) -> page ids
    where: dict[str, tuple[str, int]] = field(default_factory=dict)  # page id -> (source path, page number)
    plan: list[dict[str, Any]] = field(default_factory=list)
    live: list[dict[str, int | None]] = field(default_factory=list)  # per state: marker -> live version

    def path(self, marker: str) -> Path:
        return self.root / "docs" / f"{marker}.pdf"

    def version(self, marker: str, v: int) -> Path:
        """The file of version v of a source (made on first use: 2-4 pages, bytes never seen before)."""
        if (marker, v) not in self.versions:
            n = 2 + (v + MARKERS.index(marker)) % 3
            data = make_pdf([f"{marker} {SHARED} rev{v} p{p}" for p in range(1, n + 1)], size=(200, 50))  # small: few patches
            file = write(self.root / "versions" / f"{marker}-v{v}.pdf", data)
            digest = hashlib.sha256(data).hexdigest()
            self.versions[marker, v] = file
            self.ids[marker, v] = frozenset(make_page_id(digest, p) for p in range(1, n + 1))
            for p in range(1, n + 1):
                self.where[make_page_id(digest, p)] = (str(self.path(marker)), p)
        return self.versions[marker, v]

    def state_ids(self, i: int) -> frozenset[str]:
        return frozenset().union(*(self.ids[m, v] for m, v in self.live[i].items() if v is not None))

    def marker_ids(self, i: int, marker: str) -> frozenset[str]:
        v = self.live[i][marker]
        return frozenset() if v is None else self.ids[marker, v]


def make_corpus(root: Path, n_ops: int, seed: int) -> Corpus:
    """Version 0 of every source in place (state S0) and a plan of `n_ops` writes, one commit each."""
    corpus = Corpus(root)
    live: dict[str, int | None] = {}
    for m in MARKERS:
        shutil.copyfile(corpus.version(m, 0), write(corpus.path(m), b""))
        live[m] = 0
    corpus.live.append(dict(live))
    rng = random.Random(seed)
    next_v = {m: 1 for m in MARKERS}

    def fresh(m: str) -> list[str]:
        v = next_v[m]
        next_v[m] += 1
        live[m] = v
        return [str(corpus.version(m, v)), str(corpus.path(m))]

    for _ in range(n_ops):
        roll = rng.random()
        gone = [m for m in CHURN if live[m] is None]
        present = [m for m in CHURN if live[m] is not None]
        if roll < 0.3:  # update one source
            op = {"kind": "add", "files": [fresh(rng.choice(STABLE + tuple(present)))]}
        elif roll < 0.45:  # update two sources in one commit
            op = {"kind": "add", "files": [fresh(m) for m in rng.sample(STABLE, 2)]}
        elif roll < 0.6 and gone:  # add a source back and update another, in one commit
            op = {"kind": "add", "files": [fresh(rng.choice(gone)), fresh(rng.choice(STABLE))]}
        elif gone and (not present or rng.random() < 0.5):
            op = {"kind": "add", "files": [fresh(rng.choice(gone))]}
        elif present:
            doomed = rng.sample(present, min(len(present), rng.choice((1, 1, 2))))
            for m in doomed:
                live[m] = None
            op = {"kind": "delete", "paths": [str(corpus.path(m)) for m in doomed]}
        else:
            op = {"kind": "add", "files": [fresh(rng.choice(STABLE))]}
        corpus.plan.append(op)
        corpus.live.append(dict(live))
    return corpus


# --------------------------------------------------------------------------- checking answers
class Checker:
    """Checks each answer against the planned states; one per reader thread (its `last` state only grows)."""

    def __init__(self, corpus: Corpus) -> None:
        self.corpus = corpus
        self.last = 0  # the oldest state this thread may still see
        self.answers = 0
        self.seen: set[int] = set()

    def _advance(self, what: str, ids: frozenset[str], matches: Callable[[int], bool]) -> None:
        for i in range(self.last, len(self.corpus.live)):
            if matches(i):
                self.last = i
                self.seen.add(i)
                self.answers += 1
                return
        older = [i for i in range(self.last) if matches(i)]
        raise AssertionError(
            f"{what}: the answer {sorted(ids)} is no committed state at or after S{self.last}"
            + (f" (it is S{older[-1]}: an older state after a newer one)" if older else " (nor any state)"))

    def hits(self, hits: list[Any]) -> frozenset[str]:
        """Page ids of an answer, after checking each hit's source, page, rank and order."""
        assert [h.rank for h in hits] == list(range(1, len(hits) + 1)), hits
        assert all(a.score >= b.score for a, b in itertools.pairwise(hits)), hits
        for h in hits:
            assert self.corpus.where.get(h.page_id) == (h.source, h.page), h
        ids = frozenset(h.page_id for h in hits)
        assert len(ids) == len(hits), f"a page twice in one answer: {hits}"
        return ids

    def everything(self, hits: list[Any], what: str = SHARED) -> None:
        """An answer holding every live page: it must be one whole committed state."""
        ids = self.hits(hits)
        self._advance(what, ids, lambda i: self.corpus.state_ids(i) == ids)

    def source(self, marker: str, hits: list[Any], what: str) -> None:
        """An answer holding every live page of one source: all of one version or (deleted) none."""
        ids = self.hits(hits)
        versions = [v for (m, v), page_ids in self.corpus.ids.items() if m == marker and page_ids == ids]
        if marker in STABLE:
            assert ids, f"{what}: the source {marker} vanished (it is only ever updated)"
        assert versions or not ids, f"{what}: {sorted(ids)} is part of a version of {marker}, not all of one"
        self._advance(what, ids, lambda i: self.corpus.marker_ids(i, marker) == ids)


# --------------------------------------------------------------------------- readers and writers
class Searcher:
    """What a reader thread searches through: a shared Retriever (which it also refreshes now and
    then, beside the refresher thread), or its own Client of a server."""

    def __init__(self, target: Any, multi: bool, refresh: Callable[[], Any] | None = None,
                 look: Callable[[Any], None] | None = None) -> None:
        self.target, self.multi, self.refresh, self.look = target, multi, refresh, look

    def search(self, query: str, rng: random.Random, **options: Any) -> list[Any]:
        if self.multi and "mode" not in options:
            options["mode"] = rng.choice(("visual", "hybrid", "text"))
        return self.target.search(query, K, **options)


def read_loop(searcher: Searcher, corpus: Corpus, checker: Checker, seed: int, stop: threading.Event,
              started: threading.Barrier) -> None:
    rng = random.Random(seed)
    first = True
    while not stop.is_set():
        roll = rng.random()
        marker = rng.choice(MARKERS)
        if roll < 0.4:
            checker.everything(searcher.search(SHARED, rng))
        elif roll < 0.65:
            mode = {"mode": "text"} if searcher.multi else {}
            checker.source(marker, searcher.search(marker, rng, **mode), f"query {marker!r}")
        elif roll < 0.8:
            where = {"source": str(corpus.path(marker))}
            checker.source(marker, searcher.search(SHARED, rng, where=where), f"{SHARED!r} where source={marker}")
        else:
            hits = searcher.search(f"{marker} {SHARED}", rng)
            checker.everything(hits, f"query '{marker} {SHARED}'")
            if searcher.look is not None and hits:
                searcher.look(rng.choice(hits))
        if searcher.refresh is not None and rng.random() < 0.05:
            searcher.refresh()
        if first:
            first = False
            started.wait(timeout=60)
        stop.wait(0.1 if searcher.multi else 0.002)  # leave the writer process some CPU


def run_writer(kind: str, index: Path, corpus: Corpus, tmp: Path) -> None:
    """Carry out the plan in other processes: one Python process, or one `dse` command per write."""
    if kind == "python":
        plan = write(tmp / "plan.json", json.dumps(corpus.plan).encode())
        done = subprocess.run([sys.executable, "-c", WRITER, str(index), str(plan)], capture_output=True, check=False,
                              text=True, timeout=DEADLINE)
        assert done.returncode == 0, done.stderr[-3000:]
        assert done.stdout.split() == [str(i) for i in range(len(corpus.plan))], done.stdout
        return
    for op in corpus.plan:
        if op["kind"] == "add":
            for src, dst in op["files"]:
                shutil.copyfile(src, dst + ".tmp")
                os.replace(dst + ".tmp", dst)
            cmd = [*CLI, "index", *[dst for _, dst in op["files"]], "--index", str(index), "--workers", "0",
                   "--no-progress"]
        else:
            cmd = [*CLI, "delete", "--index", str(index), "--source", *op["paths"]]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=DEADLINE, check=False)
        assert done.returncode == 0, (cmd, done.stdout[-2000:], done.stderr[-3000:])




def race(searchers: list[Searcher], corpus: Corpus, writer: Callable[[], None],
         refresh: Callable[[], Any] | None = None) -> list[Checker]:
    """Readers search until they have seen the plan's last state; the writer runs the plan meanwhile.

    The writer starts once every reader has answered once (from S0). Returns the readers' checkers.
    """
    checkers = [Checker(corpus) for _ in searchers]
    stop = threading.Event()
    started = threading.Barrier(len(searchers) + 1)
    errors: list[str] = []

    def guarded(fn: Callable[..., Any], *args: Any) -> None:
        try:
            fn(*args)
        except BaseException:  # noqa: BLE001 - reported by the test
            errors.append(traceback.format_exc())
            stop.set()
            started.abort()

    def refresher() -> None:
        while not stop.wait(0.02):
            refresh()

    threads = [threading.Thread(target=guarded, args=(read_loop, s, corpus, c, 1000 + i, stop, started), daemon=True)
               for i, (s, c) in enumerate(zip(searchers, checkers))]
    if refresh is not None:
        threads.append(threading.Thread(target=guarded, args=(refresher,), daemon=True))
    for t in threads:
        t.start()
    final = len(corpus.live) - 1
    try:
        started.wait(timeout=60)
        guarded(writer)
        deadline = time.monotonic() + 30  # the readers catch up with the last commit
        while not errors and time.monotonic() < deadline and min(c.last for c in checkers) < final:
            time.sleep(0.05)
    except threading.BrokenBarrierError:
        pass
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=60)
    assert not errors, f"{len(errors)} error(s); the first:\n{errors[0]}"
    assert not any(t.is_alive() for t in threads), "a reader did not stop"
    lagging = [i for i, c in enumerate(checkers) if c.last < final]
    assert not lagging, f"readers {lagging} never saw the last committed state S{final} " \
                        f"(they stopped at {[checkers[i].last for i in lagging]})"
    return checkers


def build(root: Path, encoder: str, n_ops: int, seed: int = 7) -> tuple[Path, Corpus]:
    """The corpus, its plan, and an index holding S0."""
    corpus = make_corpus(root / "corpus", n_ops, seed)
    index = root / "idx"
    with dse.Retriever.create(index, dse.load_encoder(encoder)) as r:
        report = r.add([corpus.path(m) for m in MARKERS], workers=0)
        assert not report.failures and len(report.added) == len(MARKERS)
        assert {h.page_id for h in r.search(SHARED, K, mode="text")} == corpus.state_ids(0)
    return index, corpus


# --------------------------------------------------------------------------- tests
CASES = [  # (encoder, writer, readers, writes in the plan)
    ("bm25", "python", "inprocess", 30),
    ("bm25", "python", "http", 30),
    ("bm25", "cli", "inprocess", 6),
    ("bm25", "cli", "http", 6),
    ("tiny-colqwen2", "python", "inprocess", 5),
]


@pytest.mark.parametrize(("encoder", "writer", "readers", "n_ops"), CASES,
                         ids=["-".join(map(str, c)) for c in CASES])
def test_searches_see_only_committed_states(tmp_path: Path, encoder: str, writer: str, readers: str,
                                            n_ops: int) -> None:
    index, corpus = build(tmp_path, encoder, n_ops)
    multi = encoder != "bm25"
    run = lambda: run_writer(writer, index, corpus, tmp_path)
    if readers == "inprocess":
        with dse.Retriever.open(index) as shared:  # one Retriever, shared by every thread
            batcher = None
            if multi:  # visual queries as the server encodes them: batched, cached (the readers repeat them)
                from dse.serve.batching import QueryBatcher

                batcher = QueryBatcher(lambda texts: shared.encoder.encode_queries(texts), 16, 5.0, 64)
                shared.query_encoder = batcher

            def look(hit: Any) -> None:
                try:
                    text = shared.page_text(hit.page_id)
                except KeyError:  # deleted since the search
                    return
                assert SHARED in text and Path(hit.source).stem in text

            searchers = [Searcher(shared, multi, shared.refresh, look) for _ in range(THREADS)]
            checkers = race(searchers, corpus, run, shared.refresh)
            shared.refresh()
            assert {h.page_id for h in shared.search(SHARED, K, mode="text")} == corpus.state_ids(len(corpus.plan))
            if batcher is not None:
                batcher.close()
                assert batcher.hits > 0 and batcher.encoded >= 1
    else:
        with serve_index(index) as url:

            def look_remote(hit: Any) -> None:
                try:
                    page = dse.Client(url).page(hit.page_id)
                except dse.RemoteError as exc:
                    assert exc.status == 404, exc  # deleted since the search
                    return
                assert (page["source"], page["page"]) == (hit.source, hit.page)
                assert SHARED in page["text"]

            searchers = [Searcher(dse.Client(url), multi, None, look_remote) for _ in range(THREADS)]
            checkers = race(searchers, corpus, run)
    seen = set().union(*(c.seen for c in checkers))
    assert {0, len(corpus.plan)} <= seen and sum(c.answers for c in checkers) >= THREADS
    print(f"{sum(c.answers for c in checkers)} answers checked; {len(seen)} of {len(corpus.live)} states seen")


def test_the_checker_refuses_partial_mixed_and_stale_answers(tmp_path: Path) -> None:
    """The oracle itself: it accepts the planned states in order and nothing else."""
    corpus = make_corpus(tmp_path / "corpus", 12, seed=3)

    def answer(ids: frozenset[str] | set[str]) -> list[Any]:
        hits = [dse.Hit(i, *corpus.where[i], 1.0, 0, {}) for i in sorted(ids)]
        return [dse.Hit(h.page_id, h.source, h.page, h.score, rank, {}) for rank, h in enumerate(hits, start=1)]

    checker = Checker(corpus)
    for i in range(len(corpus.live)):
        checker.everything(answer(corpus.state_ids(i)))
        for m in MARKERS:
            checker.source(m, answer(corpus.marker_ids(i, m)), m)
    assert checker.last == len(corpus.live) - 1
    changed = next(m for m in STABLE if corpus.live[0][m] != corpus.live[-1][m])
    with pytest.raises(AssertionError, match="older state"):
        checker.everything(answer(corpus.state_ids(0)))
    fresh = Checker(corpus)
    with pytest.raises(AssertionError, match="vanished"):
        fresh.source(changed, [], changed)
    with pytest.raises(AssertionError, match="not all of one"):
        fresh.source(changed, answer(set(list(corpus.marker_ids(0, changed))[:1])), changed)
    mixed = corpus.state_ids(0) | corpus.marker_ids(len(corpus.live) - 1, changed)  # old and new pages at once
    with pytest.raises(AssertionError, match="no committed state"):
        fresh.everything(answer(mixed))


def test_a_dse_index_commit_is_searchable_through_the_server_soon(tmp_path: Path) -> None:
    corpus = make_corpus(tmp_path / "corpus", 0, seed=0)
    index = tmp_path / "idx"
    with dse.Retriever.create(index, dse.load_encoder("bm25")) as r:
        assert r.add([corpus.path("aardvark")], workers=0).pages == len(corpus.ids["aardvark", 0])

    def cli(*args: str) -> None:
        done = subprocess.run([*CLI, *args, "--index", str(index)], capture_output=True, text=True, timeout=120, check=False)
        assert done.returncode == 0, done.stderr[-3000:]

    def poll(query: str, want: frozenset[str], allowed: tuple[frozenset[str], ...] = ()) -> None:
        """Search until the answer is `want` (10 s at most); meanwhile only `allowed` answers may come."""
        deadline = time.monotonic() + 10
        while True:
            got = frozenset(h.page_id for h in client.search(query, K))
            if got == want:
                return
            assert got in allowed, f"{query!r}: {sorted(got)} is neither the old state nor the new one"
            assert time.monotonic() < deadline, f"{query!r}: a commit made beside the server is not searchable"
            time.sleep(0.05)

    with serve_index(index) as url:
        client = dse.Client(url)
        poll("aardvark", corpus.ids["aardvark", 0])
        cli("index", str(corpus.path("bison")), "--workers", "0", "--no-progress")  # a new source
        poll("bison", corpus.ids["bison", 0], (frozenset(),))
        shutil.copyfile(corpus.version("aardvark", 1), corpus.path("aardvark"))  # an update: new bytes
        cli("index", str(corpus.path("aardvark")), "--workers", "0", "--no-progress")
        poll("aardvark", corpus.ids["aardvark", 1], (corpus.ids["aardvark", 0],))
        cli("delete", "--source", str(corpus.path("bison")))
        poll("bison", frozenset(), (corpus.ids["bison", 0],))
        poll(SHARED, corpus.ids["aardvark", 1])


def test_index_counts_follow_commits_made_beside_the_server(tmp_path: Path) -> None:
    """`GET /v1/index` reports the live pages and sources, also after a `dse index` process committed."""
    corpus = make_corpus(tmp_path / "corpus", 0, seed=0)
    index = tmp_path / "idx"
    with dse.Retriever.create(index, dse.load_encoder("bm25")) as r:
        r.add([corpus.path("aardvark")], workers=0)
    with serve_index(index) as url:
        client = dse.Client(url)
        assert (client.info()["pages"], client.info()["sources"]) == (len(corpus.ids["aardvark", 0]), 1)
        done = subprocess.run([*CLI, "index", str(corpus.path("bison")), "--index", str(index), "--workers", "0",
                               "--no-progress"], capture_output=True, text=True, timeout=120, check=False)
        assert done.returncode == 0, done.stderr[-3000:]
        want = len(corpus.ids["aardvark", 0]) + len(corpus.ids["bison", 0])
        deadline = time.monotonic() + 10
        while len(client.search(SHARED, K)) < want and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(client.search(SHARED, K)) == want  # the server searches the new commit ...
        info = client.info()
        while (info["pages"], info["sources"]) != (want, 2) and time.monotonic() < deadline:
            time.sleep(0.05)
            info = client.info()
        assert (info["pages"], info["sources"]) == (want, 2), info  # ... and counts it


def test_queries_arriving_together_are_encoded_in_one_batch(tmp_path: Path) -> None:
    from dse.serve.batching import QueryBatcher

    encoder = dse.load_encoder("tiny-dse")
    corpus = make_corpus(tmp_path / "corpus", 0, seed=0)
    queries = [f"{m} page {i}" for i, m in enumerate(MARKERS + ("koala", "lemur"))]
    assert len(queries) == THREADS
    with dse.Retriever.create(tmp_path / "idx", encoder) as plain:
        plain.add([corpus.path(m) for m in MARKERS], workers=0)
        want = {q: plain.search(q, 5) for q in queries}

    calls: list[list[str]] = []
    entered, entered_lock, all_in = [0], threading.Lock(), threading.Event()

    def encode(texts: list[str]) -> Any:
        calls.append(list(texts))
        if len(calls) == 1:
            all_in.wait(timeout=10)  # the first batch waits until every thread has asked
        return encoder.encode_queries(texts)

    batcher = QueryBatcher(encode, max_batch=16, max_wait_ms=200, cache_size=64)
    embedded: dict[str, Any] = {}

    def query_encoder(texts: list[str]) -> Any:
        with entered_lock:
            entered[0] += 1
            if entered[0] == THREADS:
                all_in.set()
        out = batcher(texts)
        embedded[texts[0]] = out
        return out

    got: dict[str, Any] = {}
    errors: list[str] = []
    barrier = threading.Barrier(THREADS)
    with dse.Retriever.open(tmp_path / "idx", encoder) as batched:
        batched.query_encoder = query_encoder

        def one(query: str) -> None:
            try:
                barrier.wait(timeout=30)
                got[query] = batched.search(query, 5)
            except BaseException:  # noqa: BLE001
                errors.append(traceback.format_exc())

        threads = [threading.Thread(target=one, args=(q,)) for q in queries]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
        assert not errors, errors[0]
        assert batcher.batches == len(calls) < THREADS, calls  # fewer encoder calls than queries
        assert sorted(q for c in calls for q in c) == sorted(queries) and batcher.encoded == THREADS
        for q in queries:
            alone = encoder.encode_queries([q])  # (1, dim)
            assert embedded[q].shape == alone.shape and np.allclose(embedded[q], alone, atol=1e-5), q
            assert [h.page_id for h in got[q]] == [h.page_id for h in want[q]], q
            assert [h.score for h in got[q]] == pytest.approx([h.score for h in want[q]], abs=1e-5), q

        hits_before, batches_before = batcher.hits, batcher.batches
        again = batched.search(queries[0], 5)  # a repeated query: answered by the cache
        assert batcher.hits == hits_before + 1 and batcher.batches == batches_before and len(calls) == batches_before
        assert [h.page_id for h in again] == [h.page_id for h in got[queries[0]]]
        assert np.allclose(batcher([queries[0]]), encoder.encode_queries([queries[0]]), atol=1e-5)
    batcher.close()


def test_an_announced_query_alone_is_encoded_without_waiting_for_others() -> None:
    from dse.serve.batching import QueryBatcher

    calls: list[list[str]] = []

    def encode(texts: list[str]) -> Any:
        calls.append(list(texts))
        return np.ones((len(texts), 4), dtype=np.float32)  # (n, dim)

    batcher = QueryBatcher(encode, max_batch=16, max_wait_ms=600_000, cache_size=0)  # would wait 10 minutes
    done: list[Any] = []

    def one() -> None:
        with batcher.expecting(2):  # one search of two queries: the batch waits for both, not longer
            done.append(batcher(["alone", "too"]))

    t = threading.Thread(target=one, daemon=True)
    t.start()
    t.join(timeout=60)
    assert done and done[0].shape == (2, 4) and sorted(q for c in calls for q in c) == ["alone", "too"]
    batcher.close()
