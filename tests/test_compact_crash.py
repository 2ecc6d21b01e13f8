"""`compact` killed with SIGKILL, in a real child process, at each stage and at seeded moments.

The index must then open and answer exactly as before compaction (killed before the catalogue's
switch) or exactly as after (killed after it), visual and text side alike, with every row
numbered by the engines it opens; the next compaction finishes the job and removes what the
killed one left. Its manifest never says format 1 (what a dse older than compaction opens, reading
generation 0's files) over a catalogue of generation >= 1: 2 from the moment before the switch,
put back to 1 by the next writable open if the switch never came.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import random
import select
import shutil
import signal
import time
from pathlib import Path
from typing import Any

import pytest

from dse.storage.compaction.run import STAGES
from dse.storage.manifest import format_for
from dse.storage.page_index import PageIndex
from tests.test_compact import Corpus, build, hits, records, text_queries


def _child(directory: str, stop_at: str, fd: int) -> None:
    """Compact the index; at stage `stop_at` say so on `fd` and wait to be killed ("" : say so before starting)."""
    index = PageIndex.open(directory)

    def stage(name: str) -> None:
        if name == stop_at:
            os.write(fd, b"x")
            time.sleep(120)

    if not stop_at:
        os.write(fd, b"x")
    index.compact(stage)
    os.write(fd, b"done")


def _run_and_kill(directory: Path, stop_at: str, delay: float | None = None) -> bool:
    """Start a compaction in a forked child, kill it with SIGKILL at `stop_at` (or `delay` s after it starts).

    Returns True if the child finished before the kill.
    """
    r, w = os.pipe()
    proc = multiprocessing.get_context("fork").Process(target=_child, args=(str(directory), stop_at, w), daemon=True)
    proc.start()
    os.close(w)
    ready, _, _ = select.select([r], [], [], 120)
    assert ready, f"the compaction did not reach {stop_at or 'its start'}"
    os.read(r, 1)
    if delay is not None:
        time.sleep(delay)
    os.kill(proc.pid, signal.SIGKILL)
    proc.join()
    finished = os.read(r, 16) == b"done"
    os.close(r)
    return finished


def _answers(directory: Path, corpus: Corpus) -> tuple:
    with PageIndex.open(directory) as index:
        view = index.view()
        assert len(view.engine) == view.rows == len(view.text_engine)  # engines of the catalogue's generation
        return (hits(index, corpus.queries()), hits(index, text_queries(), text=True), records(index),
                index.counts().pages)


def _format_and_generation(directory: Path) -> tuple[int, int]:
    """The manifest file's format version and the catalogue's generation, read without writing anything."""
    version = json.loads((directory / "manifest.json").read_text(encoding="utf-8"))["format_version"]
    with PageIndex.open(directory, read_only=True) as index:
        generation = index.view().generation
    assert version == 2 or generation == 0, "an older dse would open this index and read generation 0"
    return version, generation


def _finish(directory: Path, corpus: Corpus, after: tuple) -> None:
    """A later compaction completes (or finds nothing to do) and leaves only the current generation."""
    with PageIndex.open(directory) as index:
        index.compact()
        generation = index.view().generation
    assert _answers(directory, corpus) == after
    assert _format_and_generation(directory) == (2, generation)
    names = sorted(p.name for p in directory.iterdir() if p.name.startswith(("vectors", "text")))
    assert names == [f"text.{generation}", f"vectors.{generation}"]


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Corpus, tuple, tuple]:
    """An index with deleted pages, its answers before compaction, and after (on a copy)."""
    from dse.encoders.bm25 import BM25Encoder

    BM25Encoder().encode_pages(["warm up"])  # import the tokenizer once, before forking
    base = tmp_path_factory.mktemp("compact-crash")
    corpus = Corpus("multi")
    build(base / "pristine", corpus, None, n=60, group=4).close()
    before = _answers(base / "pristine", corpus)
    shutil.copytree(base / "pristine", base / "done")
    with PageIndex.open(base / "done") as index:
        assert index.compact().compacted
    after = _answers(base / "done", corpus)
    assert after[2] == before[2] and after[0] == before[0] and after[1] != before[1]  # BM25 statistics changed
    return base, corpus, before, after


@pytest.mark.parametrize("stage", STAGES[:-1])
def test_kill_9_at_each_stage(pristine: tuple, stage: str, tmp_path: Path) -> None:
    base, corpus, before, after = pristine
    directory = tmp_path / "idx"
    shutil.copytree(base / "pristine", directory)
    assert not _run_and_kill(directory, stage)
    switched = STAGES.index(stage) >= STAGES.index("committed")
    marked = STAGES.index(stage) >= STAGES.index("marked")
    assert _format_and_generation(directory) == (2 if marked else 1, 1 if switched else 0)
    assert _answers(directory, corpus) == (after if switched else before)  # a writable open: the format repaired
    assert _format_and_generation(directory) == (2 if switched else 1, 1 if switched else 0)
    _finish(directory, corpus, after)


def test_kill_9_at_seeded_moments(pristine: tuple, tmp_path: Path) -> None:
    base, corpus, before, after = pristine
    probe = tmp_path / "probe"
    shutil.copytree(base / "pristine", probe)
    t0 = time.perf_counter()
    with PageIndex.open(probe) as index:
        index.compact()
    duration = time.perf_counter() - t0
    rng = random.Random(2024)
    outcomes = []
    for round_no in range(6):
        directory = tmp_path / f"idx{round_no}"
        shutil.copytree(base / "pristine", directory)
        finished = _run_and_kill(directory, "", rng.uniform(0.0, duration * 1.2))
        _format_and_generation(directory)
        answers = _answers(directory, corpus)
        assert _format_and_generation(directory)[0] == format_for(int(answers == after))
        assert answers in (before, after) and (not finished or answers == after)
        outcomes.append(answers == after)
        _finish(directory, corpus, after)
    print("compaction", round(duration, 3), "s; switched:", outcomes)  # both outcomes, on an idle machine
