"""Multi-vector cascade search: residual token lists (WARP), then exact MaxSim.

Tiers, each cheaper and coarser than the next:

0. *residual token lists* (`dse.engines.cascade.residuals`, `warp`; ColBERTv2 / PLAID
   compression, WARP's search): every (pooled) token has the id of its nearest centroid in a
   k-means codebook of real page tokens (`dse.engines.cascade.tokens`, shared by the shards) and
   its residual in `residual_bits` bits a dimension. A query token probes its `n_probe` nearest
   centroids (`cascade.centroids`) and scores every token of their lists as centroid similarity
   plus decoded residual; a page scores the sum over query tokens of its best such token, the
   best unprobed centroid's similarity when it has none (WARP's imputation). The best
   `n_shortlist` pages go on to the exact tier. The residuals tell near-duplicate siblings apart.
   Without residual lists (``residual_bits=0``, or shards without ``.tok-res-*`` files) the
   *token lists* stage: a page scores its best probed centroid's similarity per query token,
   the best `n_shortlist` go on, then PLAID's centroid interaction keeps `n_coarse`. Shards
   without token lists keep the oldest stage 0, *coarse lists* (`dse.engines.ivf.coarse`, then
   the binary coarse stage keeps `n_coarse`); `token_lists=False` builds that layout.
1. *coarse*: the page summarised in `coarse_tokens` k-means tokens (`kernels.kmeans_pages`),
   sign-binarised (resident) and int8 (memory-mapped): MaxSim against them keeps `n_refine`.
2. *bits* (memory-mapped): every (pooled) token sign-binarised; Hamming-MaxSim keeps the best
   `n_candidates`.
3. *exact* (memory-mapped): every (pooled) token as float16 or int8; MaxSim with the float
   query tokens ranks the pages left and returns the top k.

Knobs (recall for speed): `n_probe`, `n_shortlist`, `n_coarse`, `n_refine` and `n_candidates`,
set on the engine (recorded in the manifest) or per call of `search`; None (the default) sizes
them from the index (`CascadeEngine.knobs`: with residual lists 32, 256, 0, 0, 0: the exact
tier gets the 256 pages the residual scores keep; with token lists only 16, pages / 16 in
[1024, 16384], 256, 0, 0). 0 turns a stage off: `n_probe=0` sends every page on; `n_coarse=0`
skips the centroid interaction (or the coarse tier); `n_candidates=0` keeps every page that
reaches the bits. `n_probe=0, n_coarse=0, n_candidates=0` is the exhaustive mode (exact MaxSim
up to float16/int8 rounding). `pool_factor` > 1 pools each page's tokens at indexing time.

On disk: one set of files per shard (`dse.engines.cascade.tiers`), one ``tokens-<key>.npy`` per codebook.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from dse.engines.cascade import centroids as cascade_centroids
from dse.engines.cascade import probe as cascade_probe
from dse.engines.cascade import retrain as cascade_retrain
from dse.engines.cascade import search as cascade_search
from dse.engines.cascade import tiers as cascade_tiers
from dse.engines.cascade import tokens as cascade_tokens
from dse.engines.cascade import warp as cascade_warp
from dse.engines.cascade.encode import check_pages, encode_pages
from dse.engines.cascade.tiers import EXACT_DTYPES, Tiers
from dse.engines.files import load_npy, save_npy, shard_path
from dse.engines.ivf import coarse as coarse_lists
from dse.engines.results import check_k, empty_result
from dse.engines.shards import SegmentedEngine
from dse.types import VectorKind


class CascadeEngine(SegmentedEngine):
    """Late-interaction (MaxSim) search through a binary cascade; see the module docstring.

    Args:
        dim: Token width; inferred from the first add (or the shards) when None.
        mode: Always "cascade" (recorded in the manifest so `engines.engine_for` finds this class).
        exact_dtype: "float16" (default) or "int8" for the exact tier.
        pool_factor: Hierarchical token pooling factor at indexing time (1: keep every token).
        coarse_tokens: Tokens per page in the resident coarse tier (0: no coarse tier, no coarse lists).
        n_probe: Centroids (token lists) or coarse lists probed per query token (0: no list stage;
            None: from the index, see `knobs`).
        n_shortlist: Pages the list stage keeps (None: from the index).
        n_coarse: Pages the centroid interaction (or, without token lists, the binary coarse stage)
            keeps (0: no such stage; None: from the index).
        n_refine: Pages the int8 coarse stage then keeps (0: no such pruning; None: from the index).
        n_candidates: Pages the token-bits stage keeps (0: no pruning there; None: from the index).
        cluster_probe: Coarse clusters of a page scanned per query token on an int8 exact tier
            (0: every token, exact MaxSim).
        token_lists: Build token lists for new pages (False: the coarse-list layout of old indexes).
        residual_bits: Bits a dimension of the residual token lists built for new pages (2 or 4; 0:
            none, the centroid-only token stage of indexes written before them).
        retrain: Retrain the token codebook each time the index doubles and re-encode older shards
            (`cascade.retrain`); False: train it once, on the first add of `MIN_PAGES` pages.
        max_centroids: Most centroids a codebook trains (`cascade.tokens.centroids_for`: n / 64 up to
            16384, then PLAID's 16 sqrt(n)); 16384 keeps the rule of indexes written before.
    """

    kind: ClassVar[VectorKind] = "multi"
    marker: ClassVar[str] = cascade_tiers.MARKER

    def __init__(
        self, dim: int | None = None, mode: str = "cascade", exact_dtype: str = "float16", pool_factor: int = 1,
        coarse_tokens: int = 32, n_probe: int | None = None, n_shortlist: int | None = None,
        n_coarse: int | None = None, n_refine: int | None = None, n_candidates: int | None = None,
        cluster_probe: int = 0, token_lists: bool = True, residual_bits: int = 2, retrain: bool = True,
        max_centroids: int = cascade_tokens.MAX_CENTROIDS,
    ) -> None:
        super().__init__(dim)
        if mode != "cascade":
            raise ValueError(f"CascadeEngine mode must be 'cascade', got {mode!r}")
        if exact_dtype not in EXACT_DTYPES:
            raise ValueError(f"exact_dtype must be one of {', '.join(EXACT_DTYPES)}, got {exact_dtype!r}")
        for name, value, low in (("pool_factor", pool_factor, 1), ("coarse_tokens", coarse_tokens, 0),
                                 ("n_probe", 0 if n_probe is None else n_probe, 0),
                                 ("n_shortlist", 1 if n_shortlist is None else n_shortlist, 1),
                                 ("n_coarse", 0 if n_coarse is None else n_coarse, 0),
                                 ("n_refine", 0 if n_refine is None else n_refine, 0),
                                 ("n_candidates", 0 if n_candidates is None else n_candidates, 0),
                                 ("cluster_probe", cluster_probe, 0)):
            if isinstance(value, bool) or int(value) != value or value < low:
                raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
        self.exact_dtype, self.pool_factor, self.coarse_tokens = exact_dtype, int(pool_factor), int(coarse_tokens)
        for name, flag in (("token_lists", token_lists), ("retrain", retrain)):
            if not isinstance(flag, bool):
                raise ValueError(f"{name} must be true or false, got {flag!r}")
        self.n_probe = None if n_probe is None else int(n_probe)
        self.n_shortlist = None if n_shortlist is None else int(n_shortlist)
        self.token_lists, self.retrain = token_lists, retrain
        if isinstance(residual_bits, bool) or residual_bits not in (0, 2, 4):
            raise ValueError(f"residual_bits must be 0, 2 or 4, got {residual_bits!r}")
        self.residual_bits, self.max_centroids = int(residual_bits), cascade_tokens.check_cap(max_centroids)
        self._like: Any = None  # the residual lists of the engine's codebook whose buckets new pages share
        self.n_coarse, self.n_refine, self.n_candidates = (None if v is None else int(v)
                                                           for v in (n_coarse, n_refine, n_candidates))
        self.cluster_probe = int(cluster_probe)
        self._lists: coarse_lists.Stacked | None = None  # every segment's lists, stacked (built lazily)
        self._tokens: cascade_probe.TokenStack | None = None  # every segment's token lists, stacked (lazily)
        self._codebook: cascade_tokens.Codebook | None = None  # the token codebook new pages are encoded with
        self._codebooks: dict[str, cascade_tokens.Codebook] = {}  # codebooks read, by key

    @property
    def _words(self) -> int:
        return -(-(self._dim or 0) // 64)

    def options(self) -> dict[str, Any]:
        """Constructor options, recorded in the manifest."""
        return {"mode": "cascade", "dim": self._dim, "exact_dtype": self.exact_dtype, "pool_factor": self.pool_factor,
                "coarse_tokens": self.coarse_tokens, "n_probe": self.n_probe, "n_shortlist": self.n_shortlist,
                "n_coarse": self.n_coarse, "n_refine": self.n_refine, "n_candidates": self.n_candidates,
                "cluster_probe": self.cluster_probe, "token_lists": self.token_lists,
                "residual_bits": self.residual_bits, "retrain": self.retrain, "max_centroids": self.max_centroids}

    def knobs(self, **overrides: int | None) -> dict[str, Any]:
        """The effective settings of a search: the first stage used and every knob, resolved.

        A knob is the call's override, else the engine's option, else (None, the default) sized
        from the index by the stage every segment supports (`cascade_search.defaults`):
        "residual" (`cascade_warp`), "tokens" (token lists without residuals) or "coarse".
        """
        stage = "residual" if self._use_residuals() else "tokens" if self._use_tokens() else "coarse"
        auto = cascade_search.defaults(stage, self._n)
        out: dict[str, Any] = {"stage": stage}
        for name, default in auto.items():
            value = overrides.get(name)
            value = getattr(self, name) if value is None else value
            out[name] = int(default if value is None else value)
        return out

    def _use_residuals(self) -> bool:
        """True when every segment has residual token lists (or is too small to need them)."""
        has = [seg.tok is not None and seg.tok.res is not None for seg in self._segments]
        return any(has) and all(h or seg.pages < cascade_tokens.MIN_PAGES for h, seg in zip(has, self._segments))

    def _use_tokens(self) -> bool:
        """True when every segment has token lists (or is too small to need them)."""
        has = [seg.tok is not None for seg in self._segments]
        return any(has) and all(h or seg.pages < cascade_tokens.MIN_PAGES for h, seg in zip(has, self._segments))

    def resident_bytes(self) -> int:
        """Bytes this engine keeps in memory (the token tiers are memory-mapped and excluded)."""
        books = {seg.tok.codebook.key: seg.tok.codebook.centroids for seg in self._segments if seg.tok is not None}
        total = sum(c.nbytes + cascade_centroids.lists_nbytes(*c.shape) for c in books.values())
        for seg in self._segments:
            total += seg.coarse.nbytes + seg.coarse_offsets.nbytes + seg.offsets.nbytes + seg.codebook.nbytes
            total += 0 if seg.lists is None else seg.lists.offsets.nbytes + seg.lists.pages.nbytes
            total += 0 if seg.tok is None else seg.tok.fwd_offsets.nbytes
            total += 0 if seg.tok is None or seg.tok.res is None else seg.tok.res.offsets.nbytes
        return total + (0 if self._tokens is None else self._tokens.nbytes)

    def _check(self, items: Sequence[Any], what: str, adopt: bool) -> list[np.ndarray]:
        """Float32 (tokens_i, dim) matrices of this engine's width (`encode.check_pages`)."""
        out, dim = check_pages(items, what, self._dim)
        if adopt and self._dim is None:
            self._dim = dim
        return out

    def _stacked(self) -> coarse_lists.Stacked:
        """Every segment's inverted lists stacked (rebuilt after the segments change)."""
        if self._lists is None:
            segments = [(seg.lists, first, seg.pages) for seg, first in zip(self._segments, self._starts)]
            self._lists = coarse_lists.stack(segments, self._dim or 0)
        return self._lists

    def _token_stack(self) -> cascade_probe.TokenStack:
        """Every segment's token lists stacked (rebuilt after the segments change)."""
        if self._tokens is None:
            self._tokens = cascade_probe.stack([(seg.tok, first, seg.pages)
                                                for seg, first in zip(self._segments, self._starts)])
        return self._tokens

    def prepare(self) -> None:
        """Stack the inverted lists, or group the centroids of codebooks past 16384, now (the first search would)."""
        if self._n and not self._use_residuals():
            self._token_stack() if self._use_tokens() else self._stacked()
        for seg in self._segments if self._n and self._use_residuals() else []:
            cascade_centroids.prepare(seg.tok.codebook.key, seg.tok.codebook.centroids) if seg.tok else None

    def _copy_containers(self) -> None:
        super()._copy_containers()
        self._codebooks = dict(self._codebooks)

    def _append(self, segment: Tiers) -> None:
        self._lists = self._tokens = None  # the stacked lists are rebuilt on the next search
        if segment.tok is not None and segment.pages:
            self._codebook = segment.tok.codebook
            self._like = segment.tok.res if segment.tok.res is not None else self._like
        super()._append(segment)

    def add(self, vectors: Sequence[Any]) -> None:
        """Append pages, each a float32 (tokens_i, dim) array (pooled and encoded: `cascade.encode.encode_pages`).

        Raises:
            ValueError: an item is not 2-D, has the wrong width, or non-finite values.
        """
        pages = self._check(vectors, "pages", adopt=True)
        if not pages:
            return
        book = self._codebook if self.token_lists else None
        self._append(encode_pages(pages, self._dim or 0, self.pool_factor, self.coarse_tokens, self.exact_dtype,
                                  self.token_lists, book, self.residual_bits, self._like,
                                  cascade_retrain.trainer(self, len(pages)), self.max_centroids))
        if self._disk is None and self._codebook is not book:  # never saved: re-encode in memory now
            cascade_retrain.reencode(self, None)

    def save(self, directory: Path) -> None:
        """Append the unsaved pages as one shard; then remove token files no shard refers to any more and
        re-encode the shards not on the current codebook (`dse.engines.cascade.retrain`)."""
        super().save(directory)
        cascade_retrain.collect(directory, self.marker)
        cascade_retrain.reencode(self, Path(directory))

    def extend(self, rows: int) -> None:
        """Read the rows another writer committed since, and the token lists it re-encoded (`retrain.follow`)."""
        super().extend(rows)
        cascade_retrain.follow(self)

    def search(
        self, queries: Sequence[Any], k: int, allowed: np.ndarray | None = None, n_coarse: int | None = None,
        n_candidates: int | None = None, n_probe: int | None = None, n_shortlist: int | None = None,
        n_refine: int | None = None, cluster_probe: int | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-k pages per query by MaxSim on the exact tier, among the cascade's candidates.

        Args:
            queries: List of float32 (query_tokens_i, dim) arrays.
            k: Depth; clipped to the number of allowed pages.
            allowed: Optional bool (n_pages,) mask; False pages are never returned.
            n_coarse: Override of the engine's `n_coarse` for this call.
            n_candidates: Override of the engine's `n_candidates` for this call.
            n_probe: Override of the engine's `n_probe` for this call.
            n_shortlist: Override of the engine's `n_shortlist` for this call.
            n_refine: Override of the engine's `n_refine` for this call.
            cluster_probe: Override of the engine's `cluster_probe` for this call.

        Returns:
            scores float32 (n_queries, k'), rows int64 (n_queries, k'), best first.
        """
        k = check_k(k)
        qs = self._check(queries, "queries", adopt=False)
        mask = np.ones(self._n, np.bool_) if allowed is None else self._mask(allowed)  # (n,)
        rows = np.flatnonzero(mask)
        kk = min(k, len(rows))
        if kk == 0 or not qs:
            return empty_result(len(qs))
        knobs = self.knobs(n_probe=n_probe, n_shortlist=n_shortlist, n_coarse=n_coarse, n_refine=n_refine,
                           n_candidates=n_candidates)
        n2 = max(knobs["n_candidates"], kk) if knobs["n_candidates"] else 0
        nr = max(knobs["n_refine"], n2, kk) if knobs["n_refine"] else 0
        n1 = max(knobs["n_coarse"], nr, n2, kk) if knobs["n_coarse"] else 0
        tokens, n0, probe = knobs["stage"] == "tokens", max(knobs["n_shortlist"], n1, kk), knobs["n_probe"]
        clusters = self.cluster_probe if cluster_probe is None else int(cluster_probe)
        if knobs["stage"] == "residual":
            found = [cascade_warp.search_one(self, q, rows, mask, kk, n0, n2, probe, clusters) for q in qs]
            return (np.stack([f[0] for f in found]).astype(np.float32),
                    np.stack([f[1] for f in found]).astype(np.int64))
        if tokens:
            stacked = self._token_stack()
        else:
            stacked = self._stacked() if probe else None
        out_scores, out_rows = [], []
        for q in qs:
            scores_q, rows_q = cascade_search.search_one(self, q, rows, mask, kk, (n0, n1, nr, n2), probe, tokens,
                                                         stacked, clusters)
            out_scores.append(scores_q)
            out_rows.append(rows_q)
        return np.stack(out_scores).astype(np.float32), np.stack(out_rows).astype(np.int64)

    def page_tokens(self, row: int) -> np.ndarray:
        """One row's exact-tier tokens, decoded: float32 (tokens, dim), grouped by coarse cluster
        (MaxSim does not depend on token order; `dse export-vectors`)."""
        if not 0 <= row < self._n:
            raise IndexError(f"row {row} out of range [0, {self._n})")
        s = int(np.searchsorted(self._starts, row, side="right")) - 1
        seg = self._segments[s]
        return cascade_retrain.decoded(seg, seg.offsets[row - self._starts[s]], seg.offsets[row - self._starts[s] + 1])

    def _mask(self, allowed: np.ndarray) -> np.ndarray:
        mask = np.asarray(allowed)
        if mask.dtype != np.bool_ or mask.shape != (self._n,):
            raise ValueError(f"allowed must be a bool array of shape ({self._n},), got {mask.dtype} {mask.shape}")
        return mask

    # ------------------------------------------------------------------ persistence
    def _read_shard(self, directory: Path, number: int, keep: int) -> int:
        tiers = cascade_tiers.read(directory, number, self.exact_dtype, self._dim, self._codebooks)
        self._dim = int(tiers.exact.shape[1]) if self._dim is None else self._dim
        self._append(tiers.rows(0, min(keep, tiers.pages)) if keep < tiers.pages else tiers)
        return tiers.pages

    def _write_shard(self, directory: Path, number: int, start: int, stop: int) -> None:
        parts = []
        for seg, first in zip(self._segments, self._starts):
            a, b = max(start - first, 0), min(stop - first, seg.pages)
            if a < b:
                parts.append(seg if (a, b) == (0, seg.pages) else seg.rows(a, b))
        book = self._codebook if self.token_lists else None
        tiers = cascade_tiers.concat(parts, self._words, self._dim or 0, EXACT_DTYPES[self.exact_dtype], book,
                                     self.residual_bits if self.token_lists else 0)
        cascade_tiers.save(directory, number, tiers, self.exact_dtype == "int8")

    def _truncate_shard(self, directory: Path, number: int, keep: int) -> None:
        offsets = np.array(load_npy(shard_path(directory, number, self.marker)))
        save_npy(shard_path(directory, number, self.marker), offsets[: keep + 1])  # first: data stays a superset
        tiers = cascade_tiers.read(directory, number, self.exact_dtype, self._dim, self._codebooks).rows(0, keep)
        cut = cascade_tiers.concat([tiers], self._words, self._dim or 0, EXACT_DTYPES[self.exact_dtype])
        if cut.tok is not None:  # the residual files stay as they are: a superset, filtered on reading
            cut = replace(cut, tok=replace(cut.tok, res=None))
        cascade_tiers.save(directory, number, cut, self.exact_dtype == "int8")
