"""The long-query policy: what an encoder does with a text query past its token limit.

Reasoning queries are long (ReasonIR trains on 300 to 2,000 words; an LLM rewrite is often
longer), and a model reads at most so many tokens. The limit of each family is the whole input
the model reads for one query, its template included:

* bm25: no limit.
* dse-qwen2: the text model's `max_position_embeddings` (32,768 for Qwen2-VL).
* gme-qwen2, qwen3-vl-embedding: the encoder's `max_length` (the cards' 1,800 and 8,192).
* the colpali-engine families (Col*, Bi*): the tokenizer's `model_max_length` when it sets one,
  else the text model's `max_position_embeddings`.

A text query over the limit raises `QueryTooLongError` (a ValueError naming the query, its
length and the limit) unless the encoder was loaded with `truncate_queries=True`: then the
query's own text is cut, token by token from its end, until the whole input fits, the template
(the instruction, the end tokens the embedding is read at) kept whole, and a warning is logged.
Nothing is cut silently. Image and (image, text) queries are not checked here.
"""

from __future__ import annotations

import logging
from typing import Any, Callable, Sequence

logger = logging.getLogger(__name__)


class QueryTooLongError(ValueError):
    """A text query is longer than its encoder reads.

    Attributes:
        position: The query's index in the batch.
        tokens: The tokens the model would read for it (template included).
        limit: The encoder's limit.
        encoder: The encoder's registry name.
    """

    def __init__(self, position: int, tokens: int, limit: int, encoder: str) -> None:
        super().__init__(
            f"queries[{position}] is {tokens} tokens long with {encoder}'s template, over its limit of {limit} "
            f"tokens: shorten it, or load the encoder with truncate_queries=True (CLI: --truncate-queries) to cut "
            f"it to the limit (logged as a warning)")
        self.position, self.tokens, self.limit, self.encoder = position, tokens, limit, encoder


def max_positions(config: Any) -> int | None:
    """`max_position_embeddings` of a model config or of its text config (None when neither sets one)."""
    vlm = getattr(config, "vlm_config", None)  # colpali-engine's ColPali wraps a PaliGemma config
    for cfg in (getattr(config, "text_config", None), getattr(vlm, "text_config", None), vlm, config):
        value = getattr(cfg, "max_position_embeddings", None) if cfg is not None else None
        if isinstance(value, int) and value > 0:
            return value
    return None


def tokenizer_limit(tokenizer: Any, config: Any) -> int | None:
    """The tokenizer's `model_max_length` when it sets a real one, else `max_positions(config)`."""
    value = getattr(tokenizer, "model_max_length", None)
    if isinstance(value, int) and 0 < value < 1_000_000:  # transformers' "unset" is about 1e30
        return value
    return max_positions(config)


def fit_encoder_queries(encoder: Any, queries: Sequence[Any]) -> list[Any]:
    """`fit_queries` with an encoder's own limit, counter, tokenizer and `truncate_queries`.

    Encoders without a `query_limit` (bm25, jina-v4) get their queries back unchanged.
    """
    limit = getattr(encoder, "query_limit", None)
    if limit is None:
        return list(queries)
    overhead = getattr(encoder, "_query_overhead", None)
    if overhead is None:  # the template's own tokens, counted once per encoder
        overhead = encoder._query_overhead = encoder.query_tokens("")
    return fit_queries(queries, limit=limit, count=encoder.query_tokens, tokenizer=encoder.processor.tokenizer,
                       encoder=encoder.name or type(encoder).__name__, truncate=bool(encoder.truncate_queries),
                       overhead=overhead)


def fit_queries(
    queries: Sequence[Any], *, limit: int | None, count: Callable[[str], int], tokenizer: Any, encoder: str,
    truncate: bool, overhead: int | None = None,
) -> list[Any]:
    """The queries with the long-query policy applied to the text ones (see the module docstring).

    Args:
        queries: The batch (texts; other queries pass through unchecked).
        limit: Tokens the model reads at most per input (None: no limit).
        count: Tokens the model reads for one text query, its template included (exact).
        tokenizer: Splits the query's own text into tokens, to cut it.
        encoder: The encoder's name, for messages.
        truncate: Cut a query over the limit (with a warning) instead of raising.
        overhead: `count("")` when known (the template's tokens).

    Raises:
        QueryTooLongError: a text query over the limit, when `truncate` is False.
    """
    out = list(queries)
    if limit is None:
        return out
    for i, query in enumerate(out):
        if not isinstance(query, str):
            continue
        if overhead is None:
            overhead = count("")
        if len(query.encode("utf-8")) + overhead + 2 <= limit:
            continue  # a token covers at least one byte (+2: a tokenizer's word-start marker): it fits
        tokens = count(query)
        if tokens <= limit:
            continue
        if not truncate:
            raise QueryTooLongError(i, tokens, limit, encoder)
        cut = _cut(query, tokens, limit, count, tokenizer)
        logger.warning("%s: queries[%d] is %d tokens long, over the limit of %d: cut to its first %d characters "
                       "(truncate_queries=True)", encoder, i, tokens, limit, len(cut))
        out[i] = cut
    return out


def _cut(query: str, tokens: int, limit: int, count: Callable[[str], int], tokenizer: Any) -> str:
    """The longest token prefix of `query` whose input fits in `limit` tokens."""
    ids = list(tokenizer(query, add_special_tokens=False)["input_ids"])
    keep = max(0, len(ids) - (tokens - limit))
    while True:
        text = tokenizer.decode(ids[:keep], skip_special_tokens=False) if keep else ""
        if keep == 0 or count(text) <= limit:
            if keep == 0 and count("") > limit:
                raise ValueError(f"the template alone is {count('')} tokens, over the limit of {limit}")
            return text
        keep -= 1
