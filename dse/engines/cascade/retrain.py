"""Retraining the token codebook as a cascade index grows, and re-encoding older shards with it.

A codebook trained on the first commit knows the visual words of its few dozen documents only:
pages of later documents sit far from every centroid, their residuals are coarse, and the first
stage misses them (20k realistic pages, same knobs: recall@10 0.86 with the first commit's
codebook, 0.97 with one trained on the whole corpus). So each add that makes the index cross
``MIN_PAGES * 2**j`` pages (`due`) trains a new codebook on a sample of every page's tokens
(`train_on`: `tokens.centroids_for` the index's tokens, past 16384 centroids from 4.2M tokens
on, at most the engine's `max_centroids`) and encodes its own pages with it, and the save that
follows re-encodes the token lists of every older shard with it (`reencode`), one shard at a
time, each switch one atomic rename (`tokens.save(keyed=True)`). A crash leaves some shards on
the old codebook: search is correct over mixed codebooks, and the next save finishes the job
(every shard not on the current codebook, or without the residual lists the engine builds, is
re-encoded). Over an index's life each token is assigned to a centroid about three times.

Files no shard refers to any more (the lists of the old codebook, the old codebook) are removed
by the next save (`collect`), not at once: a reader that read a shard's ref just before its
switch still finds the files it names.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from dse.engines.cascade import tokens as cascade_tokens
from dse.engines.cascade.tiers import Tiers
from dse.engines.cascade.tokens import Codebook
from dse.engines.files import SHARD_RE, committed_shards
from dse.engines.quantize import int8_decode

_KEYED = re.compile(r"^shard-(\d{6})\.tok-([0-9a-f]{16})\.")  # a re-encoded shard's list file
_CODEBOOK = re.compile(r"^tokens-([0-9a-f]{16})\.npy$")


def due(before: int, after: int) -> bool:
    """True when an add taking the index from `before` to `after` pages retrains the codebook."""
    if after < cascade_tokens.MIN_PAGES:
        return False
    return before < cascade_tokens.MIN_PAGES or (
        int(np.log2(after / cascade_tokens.MIN_PAGES)) > int(np.log2(before / cascade_tokens.MIN_PAGES)))


def decoded(seg: Tiers, a: int = 0, b: int | None = None, pick: np.ndarray | None = None) -> np.ndarray:
    """The exact-tier tokens [a, b) of a segment (or its tokens `pick`), as float32 (n, dim)."""
    idx = slice(a, int(seg.offsets[-1]) if b is None else b) if pick is None else pick
    exact = np.asarray(seg.exact[idx])
    if exact.dtype == np.int8:
        return int8_decode(exact, np.asarray(seg.scales[idx], np.float32))  # (n, dim)
    return exact.astype(np.float32)  # (n, dim)


def train_on(segments: Sequence[Tiers], new: np.ndarray, seed: int = 0, cap: int = cascade_tokens.MAX_CENTROIDS,
             ) -> Codebook:
    """A codebook for the whole index (`tokens.centroids_for` its tokens, at most `cap`): trained on a
    uniform sample of the tokens of `segments` and `new` (T, dim)."""
    sizes = [int(seg.offsets[-1]) for seg in segments] + [len(new)]
    starts = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)  # (parts + 1,)
    total = int(starts[-1])
    n = cascade_tokens.sample_size(total, cap)
    pick = np.sort(np.random.default_rng(seed).choice(total, n, replace=False))  # (n,)
    parts = []
    for i, seg in enumerate(list(segments) + [None]):
        local = pick[(pick >= starts[i]) & (pick < starts[i + 1])] - starts[i]
        if len(local):
            parts.append(np.asarray(new[local], np.float32) if seg is None else decoded(seg, pick=local))
    return cascade_tokens.train(np.concatenate(parts), seed, n_tokens=total, cap=cap)


def trainer(engine: Any, adding: int) -> Callable[[np.ndarray], Codebook] | None:
    """What `encode_pages` calls with the new pages' tokens to get the codebook when `adding` pages
    to `engine` retrains it (None: keep the engine's codebook)."""
    if not engine.token_lists or not due(len(engine), len(engine) + adding):
        return None
    if not engine.retrain and (engine._codebook is not None or adding < cascade_tokens.MIN_PAGES):
        return None  # trained once, on the first add of MIN_PAGES pages
    segments, cap = list(engine._segments), engine.max_centroids
    return lambda new: train_on(segments, new, cap=cap)


def stale(seg: Tiers, book: Codebook, bits: int) -> bool:
    """True when a segment's token lists are not `book`'s (or lack the residual lists of `bits` > 0)."""
    return seg.tok is None or seg.tok.codebook.key != book.key or (bits > 0 and seg.tok.res is None)


def reencode(engine: Any, directory: Path | None) -> int:
    """Re-encode every segment of `engine` not on its current codebook; the number re-encoded.

    With `directory` (after a save: every segment is one saved shard), each shard's lists are
    written in the new key's files, then its ref is switched (atomic), and the segment swapped
    for the shard as re-read. Without (an engine never saved), the segments are re-encoded in memory.
    """
    book, bits = engine._codebook, engine.residual_bits if engine.token_lists else 0
    if book is None or not engine.token_lists or not engine.retrain:
        return 0
    numbers: list[int | None] = [None] * len(engine._segments)
    if directory is not None:
        disk = engine._disk
        numbers = [n for n in committed_shards(directory, engine.marker) if disk is not None and n <= disk.last]
        if len(numbers) != len(engine._segments) or disk is None or disk.rows != len(engine):
            return 0  # not every segment is one saved shard: nothing to map
    done = 0
    for i, (number, seg) in enumerate(zip(numbers, list(engine._segments))):
        if not stale(seg, book, bits):
            continue
        lists = cascade_tokens.encode(book, decoded(seg), np.asarray(seg.offsets), bits, engine._like)
        if number is not None:
            cascade_tokens.save(directory, number, lists, keyed=True)
            lists = cascade_tokens.read(directory, number, seg.pages, engine._codebooks, int(seg.offsets[-1]))
        engine._segments[i] = replace(seg, tok=lists)
        engine._tokens = engine._lists = None
        done += 1
    return done


def follow(engine: Any) -> int:
    """Swap in the token lists of saved shards that another process re-encoded since `engine` read them
    (their ref names another codebook); the number swapped. A shard that cannot be read keeps its lists."""
    disk = engine._disk
    if disk is None or not engine.token_lists:
        return 0
    numbers = [n for n in committed_shards(disk.directory, engine.marker) if n <= disk.last]
    if len(numbers) != len(engine._segments):
        return 0
    done = 0
    for i, (number, seg) in enumerate(zip(numbers, list(engine._segments))):
        ref = cascade_tokens.shard_key(disk.directory, number)
        if ref is None or (seg.tok is not None and seg.tok.codebook.key == ref[0]):
            continue
        try:
            tok = cascade_tokens.read(disk.directory, number, seg.pages, engine._codebooks, int(seg.offsets[-1]))
        except (OSError, ValueError):
            continue  # switched again, or removed, while reading: the next refresh tries again
        engine._segments[i] = replace(seg, tok=tok)
        engine._tokens = engine._lists = None
        done += 1
    last = engine._segments[-1].tok if engine._segments else None
    if done and last is not None:
        engine._codebook, engine._like = last.codebook, last.res if last.res is not None else engine._like
    return done


def collect(directory: Path, marker: str) -> list[Path]:
    """Remove token-list files and codebooks no committed shard refers to; the paths removed."""
    directory = Path(directory)
    if not directory.is_dir():
        return []
    refs: dict[int, tuple[str, bool] | None] = {n: cascade_tokens.shard_key(directory, n)
                                                for n in committed_shards(directory, marker)}
    legacy = set(cascade_tokens.names(None))
    removed = []
    for entry in sorted(directory.iterdir()):
        name, ref = entry.name, None
        m = _KEYED.match(name)
        c = _CODEBOOK.match(name)
        if m:  # a re-encoded shard's file: garbage unless its shard's ref names that key
            ref = refs.get(int(m.group(1)))
            dead = ref is None or ref[0] != m.group(2) or not ref[1]
        elif c:
            dead = all(r is None or r[0] != c.group(1) for r in refs.values())
        else:
            s = SHARD_RE.match(name)
            ref = refs.get(int(s.group(1))) if s and not name.startswith(".") else None
            dead = ref is not None and ref[1] and name[len("shard-000000"):] in legacy
        if dead and (m or c or ref is not None):
            entry.unlink(missing_ok=True)
            removed.append(entry)
    return removed
