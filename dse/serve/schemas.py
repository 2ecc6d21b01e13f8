"""Request and response bodies of the HTTP API (pydantic models; they make /openapi.json)."""

from __future__ import annotations

from typing import Any, Literal, Optional

from pydantic import BaseModel, ConfigDict, Field

MAX_QUERY_CHARS = 2000
MAX_IMAGE_QUERY_BYTES = 16 * 1024 * 1024  # a query picture, decoded
MAX_IMAGE_QUERY_PIXELS = 40_000_000


class SearchRequest(BaseModel):
    """`POST /v1/search`: one query (`query`) or several (`queries`), with `Retriever.search`'s options."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    query: Optional[str] = Field(None, max_length=MAX_QUERY_CHARS, description="the query text")
    queries: Optional[list[str]] = Field(None, max_length=64, description="several queries, answered in order")
    image: Optional[str] = Field(
        None, max_length=MAX_IMAGE_QUERY_BYTES * 4 // 3 + 4,
        description="a picture as the query (a photo of a page, a chart, a slide), base64 PNG/JPEG/WebP; with "
                    "'query' as its text; for indexes whose encoder takes image queries (dse-qwen2, gme-qwen2, "
                    "qwen3-vl-embedding)")
    k: int = Field(10, ge=1, le=1000, description="pages per query (at most the server's --max-k)")
    mode: Optional[Literal["visual", "text", "hybrid"]] = Field(None, description="default: the index's own")
    where: Optional[dict[str, Any]] = Field(None, description="metadata filter, e.g. {\"kind\": \"pdf\"}")
    fusion: Literal["rrf", "weighted"] = "rrf"
    weight: float = Field(1.0, ge=0, le=1e6, description="weighted fusion: the visual side's weight")
    rrf_k: float = Field(60.0, gt=0, le=1e6)
    rerank: Optional[str] = Field(None, max_length=64, description="a reranker the server offers (GET /v1/index)")
    alpha: float = Field(0.5, ge=0, le=1, description="reranking: weight of the first stage")
    depth: int = Field(50, ge=1, le=1000, description="reranking: first-stage pages rescored")
    snippets: bool = Field(True, description="include text snippets with highlights")
    rewrite: Optional[str] = Field(
        None, max_length=64,
        description="rewrite each text query first with a rewriter the server offers (GET /v1/index: 'rewriters'; "
                    "prf, llm); the answer's 'rewrite' shows the text searched")


class HitOut(BaseModel):
    """One page found."""

    page_id: str
    source: str
    source_name: str
    page: int
    score: float
    rank: int
    image_url: str
    source_url: Optional[str]
    snippet: str
    highlights: list[tuple[int, int]]
    metadata: dict[str, Any]


class RewriteTermOut(BaseModel):
    """One distinct term of a rewritten query."""

    term: str = Field(description="the word (of the query, or of the pages that expanded it)")
    token: str = Field(description="the index's token it stands for: the stem BM25 matches")
    weight: float = Field(description="its weight in the rewrite (prf: RM3's; all the terms' weights sum to 1)")
    original: bool = Field(description="a term of the query itself (true) or an expansion term (false)")


class RewrittenOut(BaseModel):
    """What a rewritten query searched, readable: its distinct terms, the query's own first."""

    text: str = Field(description="one line for a person: the query's terms, then '+' and the heaviest expansion "
                                  "terms with their weights ('bird dives + falcon 0.05, stoop 0.05, ... 6 more'); "
                                  "an LLM's rewrite as it is")
    terms: list[RewriteTermOut] = Field(
        description="every distinct term: the query's own (in its order), then the expansion's, heaviest first "
                    "(prf; empty for llm)")
    rewriter: str


class SearchOut(BaseModel):
    """The answer to one query."""

    query: str
    mode: str
    took_ms: float
    hits: list[HitOut]
    rewrite: Optional[dict[str, Any]] = Field(
        None, description="with 'rewrite': {'query', 'text' (the text searched: prf repeats each term by its weight), "
                          "'rewriter', 'prompt_version', 'cached', 'terms' (prf: [token, weight] pairs)}")
    rewritten: Optional[RewrittenOut] = Field(None, description="with 'rewrite': what was searched, readable")


class BatchOut(BaseModel):
    """The answers to several queries, in order."""

    mode: str
    took_ms: float
    results: list[SearchOut]


class PageOut(BaseModel):
    """`GET /v1/pages/{page_id}`."""

    page_id: str
    source: str
    source_name: str
    page: int
    text: str
    metadata: dict[str, Any]
    image_url: str
    source_url: Optional[str]


class UrlSource(BaseModel):
    """`POST /v1/sources` with a JSON body: index a web page."""

    model_config = ConfigDict(extra="forbid")

    url: str = Field(..., max_length=4096, pattern=r"^https?://", description="an http(s) URL")
    metadata: Optional[dict[str, Any]] = None


class JobOut(BaseModel):
    """An indexing job."""

    id: str
    state: Literal["queued", "running", "done", "failed"]
    sources: list[str]
    sources_total: int
    sources_done: int
    pages_done: int
    pages_total: Optional[int]
    added: list[str]
    skipped: list[str]
    failures: list[dict[str, str]]
    ocr_pages: int = Field(0, description="pages whose text OCR read (tesseract), once the job is done")
    warnings: list[dict[str, str]] = Field(
        default_factory=list,
        description="{'source', 'error'} per source indexed short of text, once done: pages whose OCR failed, or "
                    "source 'tesseract' when it is not installed and pages without a text layer got no text")
    created: str
    finished: Optional[str]


class DeleteOut(BaseModel):
    """`DELETE /v1/sources`."""

    pages: int
    sources: int
