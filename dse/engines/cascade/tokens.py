"""Token-level inverted lists: the cascade's first stage (PLAID / WARP centroid interaction).

Every (pooled) token of a page gets the id of its nearest centroid in a k-means codebook of
real page tokens (not of the page's coarse summaries, which lose exactly the few tokens that
tell near-duplicate siblings apart). A page is posted once in the list of each centroid one of
its tokens falls in (``list_pages``), and keeps its distinct centroid ids (``fwd_codes``).

Search (`TokenStack.shortlist`): a query token probes its `n_probe` most similar centroids; a
page scores, per query token, the similarity of its best probed centroid, or, when none of its
tokens is in a probed list, the similarity of the best centroid not probed (WARP's / XTR's
imputation of the missing similarity: an upper bound of what the page can have), summed over
query tokens. The best `n_shortlist` pages go on to the exact tiers.

One codebook is shared by the segments (trained on the first segment of at least `MIN_PAGES`
pages, retrained on a sample of the whole index each time it doubles, and every older shard
re-encoded with it: `dse.engines.cascade.retrain`), so a query probes each codebook once, not
each segment (`dse.engines.cascade.centroids`); its size grows with the index (`centroids_for`).
The codebook is its own file, ``tokens-<key>.npy``, named by a hash of its content and written
before the first shard that refers to it (crash-safe: a shard is only committed once everything
it refers to is on disk).

A shard's ``.tok-ref.npy`` names its codebook. Its lists are in the files of `FILES` (as a shard
is first written), or, once re-encoded with another codebook, in ``.tok-<key>.<name>.npy`` files
of that key (`names`): those are written first and the ref replaced last, so the switch is one
atomic rename and a crash leaves the shard on one codebook or the other.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from dse.engines.cascade import centroids as cascade_centroids
from dse.engines.cascade import residuals as cascade_residuals
from dse.engines.cascade.residuals import Residuals
from dse.engines.files import load_npy, save_npy

MIN_PAGES = 256  # segments with fewer pages never train a codebook (they reuse one, or go on unpruned)
MAX_CENTROIDS = 16384  # default cap of `centroids_for` (the engine's `max_centroids`): the earlier rule, kept
# until larger codebooks are measured at 20k-100k pages (`max_centroids: 262144` opts in: 1M pages x 768 tokens)
SMALL_CENTROIDS = 16384  # up to it, n / 64 centroids (the rule, and the cap, of indexes written before)
_TOKENS_PER_CENTROID = 64  # tokens of the training segment per centroid
_POINTS_PER_CENTROID = 32  # k-means sample per centroid
_MAX_SAMPLE = 1 << 21  # most tokens k-means trains on (16 a centroid up to 131072 centroids)
FILES = (".tok-ref.npy", ".tok-list-offsets.npy", ".tok-list-pages.npy", ".tok-fwd-offsets.npy", ".tok-fwd-codes.npy")
_LIST_NAMES = ("list-offsets", "list-pages", "fwd-offsets", "fwd-codes")


def names(key: str | None) -> tuple[str, ...]:
    """Suffixes of a shard's list files then its residual files: as first written (None), or of codebook `key`."""
    if key is None:
        return FILES[1:] + cascade_residuals.FILES
    res = tuple(f"res-{n}" for n in cascade_residuals.NAMES)
    return tuple(f".tok-{key}.{n}.npy" for n in _LIST_NAMES + res)


def shard_key(directory: Path, number: int) -> tuple[str, bool] | None:
    """Shard `number`'s codebook key and whether its lists are in that key's files (None: no token lists)."""
    from dse.engines.files import shard_path

    ref = shard_path(directory, number, FILES[0])
    if not ref.exists():
        return None
    key = bytes(np.asarray(load_npy(ref))).decode("ascii")
    return key, shard_path(directory, number, names(key)[0]).exists()


def centroids_for(n_tokens: int, cap: int = MAX_CENTROIDS) -> int:
    """Codebook size for an index of `n_tokens` tokens, a power of two in [64, `cap`]: the one nearest
    n / 64 up to SMALL_CENTROIDS (16384, reached at 741k tokens), then PLAID's 2**floor(log2(16 sqrt(n)))
    once that is larger (32768 from 4.2M tokens, 65536 from 16.8M, 131072 from 67M).

    `cap` = 16384 is the rule of indexes written before the codebook grew past it.
    """
    target = max(n_tokens // _TOKENS_PER_CENTROID, 64)
    k = min(1 << int(np.round(np.log2(target))), SMALL_CENTROIDS)
    plaid = 1 << int(np.floor(np.log2(16 * np.sqrt(max(n_tokens, 1)))))
    return int(min(plaid if plaid > SMALL_CENTROIDS else k, cap))


def check_cap(cap: object) -> int:
    """`cap` as an int when it is a power of two in [64, 2**20].

    Raises:
        ValueError: it is not.
    """
    if isinstance(cap, bool) or not isinstance(cap, (int, np.integer)) or not 64 <= cap <= 1 << 20 or cap & (cap - 1):
        raise ValueError(f"max_centroids must be a power of two from 64 to 1048576 (default {MAX_CENTROIDS}), "
                         f"got {cap!r}")
    return int(cap)


def shortlist_for(n_pages: int) -> int:
    """Default `n_shortlist` for an index of `n_pages` pages: n / 16 in [1024, 16384]."""
    return int(min(max(n_pages // 16, 1024), 16384))


@dataclass(frozen=True)
class Codebook:
    """A token codebook and its content key (the name of its file)."""

    key: str  # 16 hex digits of the sha256 of the centroids
    centroids: np.ndarray  # (n_centroids, dim) float32, unit rows

    @staticmethod
    def of(centroids: np.ndarray) -> Codebook:
        c = np.ascontiguousarray(centroids, np.float32)  # (n_centroids, dim)
        return Codebook(hashlib.sha256(c.tobytes()).hexdigest()[:16], c)

    def path(self, directory: Path) -> Path:
        return Path(directory) / f"tokens-{self.key}.npy"


@dataclass(frozen=True)
class TokenLists:
    """One segment's token codes: posting lists (centroid -> pages) and forward lists (page -> centroids)."""

    codebook: Codebook
    list_offsets: np.ndarray  # (n_centroids + 1,) int64
    list_pages: np.ndarray  # (pairs,) int32 local pages, ascending within a list
    fwd_offsets: np.ndarray  # (pages + 1,) int64
    fwd_codes: np.ndarray  # (pairs,) int32 distinct centroid ids of each page, ascending
    res: Residuals | None = None  # every token by centroid, residual-compressed (None: not built)

    def rows(self, a: int, b: int) -> TokenLists:
        """Pages [a, b) (the forward lists are sliced, the posting lists rebuilt)."""
        f0, f1 = self.fwd_offsets[a], self.fwd_offsets[b]
        out = from_forward(self.codebook, self.fwd_offsets[a : b + 1] - f0, np.asarray(self.fwd_codes[f0:f1]))
        return out if self.res is None else replace(out, res=self.res.rows(a, b))


def sample_size(n_tokens: int, cap: int = MAX_CENTROIDS) -> int:
    """Tokens `train` samples to train the codebook of an index of `n_tokens` tokens (at most 2**21)."""
    k = centroids_for(n_tokens, cap)
    return min(n_tokens, k * (_POINTS_PER_CENTROID if k <= 4096 else 16), _MAX_SAMPLE)


def train(tokens: np.ndarray, seed: int = 0, n_tokens: int | None = None, cap: int = MAX_CENTROIDS) -> Codebook:
    """A codebook of `centroids_for(n_tokens, cap)` centroids (`n_tokens`: all the index's tokens, of which
    `tokens` is a sample; None: len(tokens)): spherical k-means (faiss) on `sample_size` of `tokens`."""
    import faiss

    total = len(tokens) if n_tokens is None else int(n_tokens)
    k = centroids_for(total, cap)
    rng = np.random.default_rng(seed)
    per = _POINTS_PER_CENTROID if k <= 4096 else 16  # large codebooks: a smaller sample, fewer iterations
    n = min(len(tokens), sample_size(total, cap))
    pick = np.sort(rng.choice(len(tokens), n, replace=False)) if n < len(tokens) else np.arange(len(tokens))
    x = np.ascontiguousarray(np.asarray(tokens[pick], np.float32))  # (n, dim)
    if k <= 4096:
        kmeans = faiss.Kmeans(x.shape[1], k, niter=8, spherical=True, seed=seed, verbose=False,
                              max_points_per_centroid=per, min_points_per_centroid=1)
        kmeans.train(x)
        return Codebook.of(kmeans.centroids)
    # large codebooks: each iteration assigns by HNSW over the centroids (on 262k realistic tokens to
    # 16384 centroids: 95 s against 136 s for exact assignment, mean best cosine 0.910 against 0.906)
    cp = faiss.ClusteringParameters()
    cp.niter, cp.spherical, cp.seed, cp.max_points_per_centroid, cp.min_points_per_centroid = 6, True, seed, per, 1
    clustering = faiss.Clustering(x.shape[1], k, cp)
    index = faiss.IndexHNSWFlat(x.shape[1], 32, faiss.METRIC_INNER_PRODUCT)
    index.hnsw.efConstruction, index.hnsw.efSearch = 40, 32
    clustering.train(x, index)
    return Codebook.of(faiss.vector_to_array(clustering.centroids).reshape(k, x.shape[1]))


def assign(codebook: Codebook, tokens: np.ndarray) -> np.ndarray:
    """The most similar centroid of each token: int32 (T,).

    Above 4096 centroids, approximately, by a faiss IVF over the centroids (`centroids.assigner`,
    built once a codebook): on 154k realistic tokens and 16,384 centroids, 3.5x the speed of the
    HNSW search it replaced, 98.6% of tokens on their exact centroid (HNSW: 96.7%), mean cosine to
    it 0.9069 (exact 0.9092).
    """
    index = cascade_centroids.assigner(codebook.key, codebook.centroids)
    codes = np.empty(len(tokens), np.int32)  # (T,)
    for a in range(0, len(tokens), 65536):
        block = np.ascontiguousarray(np.asarray(tokens[a : a + 65536], np.float32))  # (b, dim)
        codes[a : a + len(block)] = index.search(block, 1)[1][:, 0]
    return codes


def encode(
    codebook: Codebook, tokens: np.ndarray, offsets: np.ndarray, bits: int = 0, like: Residuals | None = None,
) -> TokenLists:
    """The token lists of pages `offsets` over `tokens` (T, dim) with `codebook`, and with `bits` > 0
    their residual lists (`cascade_residuals.encode`; buckets of `like` when it is of this codebook)."""
    codes = assign(codebook, tokens)  # (T,)
    k = len(codebook.centroids)
    page = np.repeat(np.arange(len(offsets) - 1, dtype=np.int64), np.diff(offsets))  # (T,)
    keys = np.unique(page * k + codes)  # (pairs,) sorted by page, then centroid
    pages, cents = np.divmod(keys, k)  # (pairs,) each
    fwd_offsets = np.searchsorted(pages, np.arange(len(offsets))).astype(np.int64)  # (pages + 1,)
    lists = from_forward(codebook, fwd_offsets, cents.astype(np.int32))
    if not bits or not len(tokens):
        return lists
    res = cascade_residuals.encode(codebook.centroids, tokens, offsets, codes, bits, like)
    return replace(lists, res=res)


def from_forward(codebook: Codebook, fwd_offsets: np.ndarray, fwd_codes: np.ndarray) -> TokenLists:
    """Token lists from forward lists (page -> distinct centroids); the posting lists are derived."""
    k = len(codebook.centroids)
    codes = np.asarray(fwd_codes, np.int32)  # (pairs,)
    page = np.repeat(np.arange(len(fwd_offsets) - 1, dtype=np.int32), np.diff(fwd_offsets))  # (pairs,)
    order = np.argsort(codes, kind="stable")  # (pairs,) pages stay ascending within a list
    list_offsets = np.concatenate([[0], np.cumsum(np.bincount(codes, minlength=k))]).astype(np.int64)  # (k + 1,)
    return TokenLists(codebook, list_offsets, page[order], np.asarray(fwd_offsets, np.int64), codes)


def concat(parts: list[TokenLists]) -> TokenLists:
    """Lists of consecutive segments sharing one codebook, back to back."""
    fwd = np.concatenate([[0]] + [np.diff(p.fwd_offsets) for p in parts]).cumsum().astype(np.int64)  # (pages + 1,)
    out = from_forward(parts[0].codebook, fwd, np.concatenate([np.asarray(p.fwd_codes) for p in parts]))
    if not all(p.res is not None for p in parts):
        return out
    return replace(out, res=cascade_residuals.concat([p.res for p in parts], [len(p.fwd_offsets) - 1 for p in parts]))


def save(directory: Path, number: int, lists: TokenLists, keyed: bool = False) -> None:
    """Write the codebook (once, by key), then the segment's lists as shard `number`'s token files,
    then its ref: in the key's own files when `keyed` or when the shard already has them (`names`)."""
    from dse.engines.files import shard_path

    path = lists.codebook.path(directory)
    if not path.exists():
        save_npy(path, lists.codebook.centroids)
    key = lists.codebook.key
    keyed = keyed or shard_path(directory, number, names(key)[0]).exists()
    suffixes = names(key if keyed else None)
    arrays = (lists.list_offsets, lists.list_pages, lists.fwd_offsets, lists.fwd_codes)
    for suffix, array in zip(suffixes, arrays):
        save_npy(shard_path(directory, number, suffix), array)
    if lists.res is not None:
        cascade_residuals.save(directory, number, lists.res, suffixes[len(arrays):])
    save_npy(shard_path(directory, number, FILES[0]), np.frombuffer(key.encode("ascii"), np.uint8))  # (16,) last


def read(directory: Path, number: int, pages: int, cache: dict[str, Codebook], tokens: int = -1) -> TokenLists | None:
    """Shard `number`'s token lists (None for a shard written before token lists existed), with their
    residual lists when the shard has them (`tokens`: the shard's token count; -1: do not read them).

    Raises:
        ValueError: the files do not fit the shard.
    """
    from dse.engines.files import shard_path

    found = shard_key(directory, number)
    if found is None:
        return None
    key, keyed = found
    suffixes = names(key if keyed else None)
    if key not in cache:
        cache[key] = Codebook(key, np.array(load_npy(Path(directory) / f"tokens-{key}.npy"), np.float32))
    list_offsets, list_pages, stored_offsets, fwd_codes = (load_npy(shard_path(directory, number, s))
                                                           for s in suffixes[:4])
    fwd_offsets = np.asarray(stored_offsets[: pages + 1], np.int64)
    if (len(list_offsets) != len(cache[key].centroids) + 1 or len(fwd_offsets) != pages + 1
            or fwd_offsets[-1] > len(fwd_codes)):
        raise ValueError(f"{shard_path(directory, number, suffixes[0])}: token lists do not fit the shard")
    exact = (len(stored_offsets) == pages + 1 and len(fwd_codes) == fwd_offsets[-1]
             and len(list_pages) == list_offsets[-1] == fwd_offsets[-1])
    res = (None if tokens < 0 else
           cascade_residuals.read(directory, number, pages, tokens, len(cache[key].centroids), suffixes[4:]))
    if exact:  # the posting lists on disk are this shard's
        return TokenLists(cache[key], np.asarray(list_offsets, np.int64), list_pages, fwd_offsets, fwd_codes, res)
    # longer than the shard's pages (a cut, or a cut interrupted half-way): the forward lists are
    # cut to the pages and the posting lists derived from them
    return replace(from_forward(cache[key], fwd_offsets, np.asarray(fwd_codes[: fwd_offsets[-1]])), res=res)
