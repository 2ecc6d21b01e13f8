"""The `llm` rewriter: BRIGHT's reasoning rewrite of a query by a causal LM (Su et al., 2024).

The LLM reads the query and BRIGHT's instructions (`dse.prompts.LLM_REWRITE_TEMPLATE`: identify
the essential problem, reason step by step about what information would help, draft an answer)
and what it writes is the query the encoder and BM25 see: BRIGHT's `reason.py` replaces the
query with the reasoning. `include_query=True` puts the original query first (query, a blank
line, the reasoning) instead. The generator is either a local transformers causal LM
(`model=DIR`) or an OpenAI-compatible chat endpoint (`url=...`, `model=NAME`); neither has a
default, so nothing is downloaded or called unasked.

Generations are cached (`dse.rewrite.cache.RewriteCache`) by (rewriter name, the generator's
identity: weights fingerprint or endpoint + model, with its decoding options; prompt version;
query), in memory and in `rewrites.sqlite` under dse's cache folder unless `cache=False`.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Protocol, Sequence

from dse.prompts import LLM_REWRITE_SYSTEM, LLM_REWRITE_TEMPLATE, PROMPT_VERSIONS
from dse.rewrite.base import QueryRewriter, Rewrite, check_queries
from dse.rewrite.cache import RewriteCache, cache_key, default_cache_path
from dse.rewrite.registry import register_rewriter

if TYPE_CHECKING:
    from dse.backends import IndexBackend

logger = logging.getLogger(__name__)

PROMPT_FAMILY = "llm-rewrite"


class Generator(Protocol):
    """What writes a rewrite: a local causal LM or a chat endpoint."""

    @property
    def identity(self) -> str: ...

    def generate(self, system: str, prompt: str) -> str: ...


def rewrite_prompt(query: str) -> str:
    """BRIGHT's prompt for `query` (its newlines made spaces, as BRIGHT's reason.py does)."""
    return LLM_REWRITE_TEMPLATE.format(query=query.replace("\n", " "))


@register_rewriter("llm", "BRIGHT's reasoning rewrite by a local causal LM (model=DIR) or a chat endpoint (url=)")
class LLMRewriter(QueryRewriter):
    """Rewrites each query into an LLM's reasoning about it (BRIGHT).

    Args:
        model: With `url`: the model name the endpoint serves. Without: the local directory (or a
            hub id the user names) of a transformers causal LM. Required.
        url: An OpenAI-compatible API base URL (e.g. http://127.0.0.1:8000/v1); None: local model.
        api_key_env: Endpoint only: the environment variable holding the API key.
        max_new_tokens: Tokens generated at most per rewrite.
        temperature: Endpoint only (the local model decodes greedily).
        timeout: Endpoint only: seconds to wait for an answer.
        device: Local only: "auto", "cpu", "cuda", ...
        dtype: Local only: "auto", float32, float16, bfloat16.
        include_query: The rewrite is the query, a blank line, then the reasoning (default False:
            the reasoning alone, as BRIGHT).
        cache: Keep generations in memory and on disk (False: generate every time).
        cache_path: The cache file (None: `dse.rewrite.cache.default_cache_path()`).
        generator: A ready generator instead of `model`/`url` (tests, other backends).

    Raises:
        ValueError: no model given, or options out of range.
        RewriteError: the local model does not load.
    """

    name = "llm"
    needs_index = False

    def __init__(self, model: str | None = None, url: str | None = None, *, api_key_env: str = "OPENAI_API_KEY",
                 max_new_tokens: int = 512, temperature: float = 0.0, timeout: float = 120.0,
                 device: str | None = "auto", dtype: Any = "auto", include_query: bool = False, cache: bool = True,
                 cache_path: str | Path | None = None, generator: Generator | None = None) -> None:
        if generator is None:
            if not model:
                raise ValueError("the llm rewriter needs model=: a local causal LM directory, or with url= the "
                                 "endpoint's model name (CLI: --rewrite-model, --rewrite-url)")
            if url is not None:
                from dse.rewrite.chat_endpoint import ChatEndpoint

                generator = ChatEndpoint(url, model, api_key_env=api_key_env, max_new_tokens=max_new_tokens,
                                         temperature=temperature, timeout=timeout)
            else:
                from dse.rewrite.local_lm import LocalCausalLM

                generator = LocalCausalLM(model, max_new_tokens=max_new_tokens, device=device, dtype=dtype)
        if not (callable(getattr(generator, "generate", None)) and hasattr(generator, "identity")):
            raise TypeError(f"generator must have generate(system, prompt) and identity, got {type(generator).__name__}")
        self.generator = generator
        self.include_query = bool(include_query)
        self.cache = RewriteCache(cache_path or default_cache_path()) if cache else None

    @property
    def identity(self) -> str:
        """The generator's identity (weights or endpoint, decoding options) and the query option."""
        return f"{self.generator.identity} include_query={self.include_query}"

    @property
    def prompt_version(self) -> str:
        """The version of BRIGHT's prompt in `dse.prompts`."""
        return PROMPT_VERSIONS[PROMPT_FAMILY]

    def rewrite_many(
        self, queries: Sequence[str], index: IndexBackend | None = None, where: Mapping[str, Any] | None = None,
    ) -> list[Rewrite]:
        """Each query rewritten (from the cache when it was rewritten before by the same model and prompt)."""
        queries = check_queries(queries)
        return [self._one(q) for q in queries]

    def generation(self, query: str) -> tuple[str, bool]:
        """The LLM's text for `query` and whether it came from the cache."""
        key = cache_key(self.name, self.generator.identity, self.prompt_version, query)
        if self.cache is not None:
            found = self.cache.get(key)
            if found is not None:
                return found, True
        text = self.generator.generate(LLM_REWRITE_SYSTEM, rewrite_prompt(query))
        if self.cache is not None:
            self.cache.put(key, text)
        return text, False

    def _one(self, query: str) -> Rewrite:
        text, cached = self.generation(query)
        if not text.strip():
            logger.warning("llm rewriter: %s wrote nothing for %r; the query is searched as given",
                           self.generator.identity, query[:80])
            out = query
        else:
            out = f"{query}\n\n{text}" if self.include_query else text
        return Rewrite(query, out, self.name, self.identity, self.prompt_version, cached)
