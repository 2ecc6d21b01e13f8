"""Query rewriting before retrieval: pseudo-relevance feedback (RM3) and reasoning LLM rewrites.

    from dse.rewrite import load_rewriter
    rewriter = load_rewriter("prf")                      # RM3 over the index's own BM25
    rewriter = load_rewriter("llm", model="~/models/qwen2.5-0.5b-instruct")   # local causal LM
    rewriter = load_rewriter("llm", url="http://127.0.0.1:8000/v1", model="qwen")  # chat endpoint
    retriever.search("why did margins fall?", rewrite=rewriter)
"""

from __future__ import annotations

from dse.rewrite.base import QueryRewriter, Rewrite, RewriteError
from dse.rewrite.registry import available_rewriters, load_rewriter, load_rewriters, register_rewriter
from dse.rewrite.summary import RewriteSummary, RewriteTerm, summarize

__all__ = ["QueryRewriter", "Rewrite", "RewriteError", "RewriteSummary", "RewriteTerm", "available_rewriters",
           "load_rewriter", "load_rewriters", "register_rewriter", "summarize"]
