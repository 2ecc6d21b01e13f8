"""Pins every prompt string in `dse.prompts` letter by letter: changing one needs a new PROMPT_VERSION."""

from __future__ import annotations

import types

import pytest

import dse.prompts as prompts

PINNED = {
    "DSE_QUERY_TEMPLATE": "Query: {query}",
    "DSE_PAGE_PROMPT": "What is shown in this image?",
    "DSE_SUFFIX": "<|endoftext|>",
    "QWEN3VL_DEFAULT_INSTRUCTION": "Represent the user's input.",
    "QWEN3VL_QUERY_INSTRUCTION": "Find a document image that matches the given query.",
    "QWEN3VL_EMPTY_TEXT": "NULL",
    "GME_TEMPLATE": (
        "<|im_start|>system\n{instruction}<|im_end|>\n<|im_start|>user\n{input}<|im_end|>\n"
        "<|im_start|>assistant\n<|endoftext|>"
    ),
    "GME_IMAGE_TOKENS": "<|vision_start|><|image_pad|><|vision_end|>",
    "GME_DEFAULT_INSTRUCTION": "You are a helpful assistant.",
    "GME_QUERY_INSTRUCTION": "Find a screenshot that relevant to the user's question.",
    "JINA_V4_TASK": "retrieval",
    "JINA_V4_QUERY_PROMPT_NAME": "query",
    "LLM_REWRITE_TEMPLATE": (
        "{query}\n\nInstructions:\n1. Identify the essential problem.\n2. Think step by step to reason and describe "
        "what information could be relevant and helpful to address the questions in detail.\n3. Draft an answer "
        "with as many thoughts as you have.\n"
    ),
    "LLM_REWRITE_SYSTEM": "You are a helpful assistant",
}


def test_prompt_versions_are_pinned() -> None:
    """Bump a family's version when one of its strings changes; never the others' (their indexes stay valid)."""
    assert prompts.PROMPT_VERSION == "1"
    assert dict(prompts.PROMPT_VERSIONS) == {"dse": "1", "qwen3vl": "1", "gme": "1", "jina-v4": "1",
                                            "llm-rewrite": "1"}


def test_encoders_record_their_familys_version() -> None:
    from dse.encoders.bm25 import BM25Encoder
    from dse.encoders.qwen.dse_qwen2 import DSEQwen2Encoder
    from dse.encoders.qwen.gme_qwen2 import GMEQwen2Encoder
    from dse.encoders.qwen.qwen3_vl_embedding import Qwen3VLEmbeddingEncoder

    assert (DSEQwen2Encoder.prompt_family, GMEQwen2Encoder.prompt_family, Qwen3VLEmbeddingEncoder.prompt_family) == (
        "dse", "gme", "qwen3vl")
    assert BM25Encoder().prompt_version == prompts.PROMPT_VERSION


@pytest.mark.parametrize("name", sorted(PINNED))
def test_prompt_string_is_pinned(name: str) -> None:
    assert getattr(prompts, name) == PINNED[name]


def test_every_prompt_string_is_pinned() -> None:
    """A new string constant in dse/prompts.py must be added to PINNED (and bump PROMPT_VERSION)."""
    constants = {
        name for name, value in vars(prompts).items()
        if name.isupper() and isinstance(value, str) and name != "PROMPT_VERSION"
    }
    assert constants == set(PINNED)


def test_prompts_mapping_is_frozen_and_complete() -> None:
    assert isinstance(prompts.PROMPTS, types.MappingProxyType)
    assert dict(prompts.PROMPTS) == {
        "dse.query_template": "Query: {query}",
        "dse.page_prompt": "What is shown in this image?",
        "dse.suffix": "<|endoftext|>",
        "qwen3vl.default_instruction": PINNED["QWEN3VL_DEFAULT_INSTRUCTION"],
        "qwen3vl.query_instruction": PINNED["QWEN3VL_QUERY_INSTRUCTION"],
        "qwen3vl.empty_text": "NULL",
        "gme.template": PINNED["GME_TEMPLATE"],
        "gme.image_tokens": PINNED["GME_IMAGE_TOKENS"],
        "gme.default_instruction": PINNED["GME_DEFAULT_INSTRUCTION"],
        "jina-v4.task": "retrieval",
        "jina-v4.query_prompt_name": "query",
        "gme.query_instruction": PINNED["GME_QUERY_INSTRUCTION"],
        "llm-rewrite.template": PINNED["LLM_REWRITE_TEMPLATE"],
        "llm-rewrite.system": "You are a helpful assistant",
    }
    with pytest.raises(TypeError):
        prompts.PROMPTS["dse.suffix"] = "x"  # type: ignore[index]


def test_query_template_formats() -> None:
    assert prompts.DSE_QUERY_TEMPLATE.format(query="hello") == "Query: hello"


def test_gme_template_formats() -> None:
    text = prompts.GME_TEMPLATE.format(instruction="I.", input=prompts.GME_IMAGE_TOKENS + "q")
    assert text == (
        "<|im_start|>system\nI.<|im_end|>\n<|im_start|>user\n<|vision_start|><|image_pad|><|vision_end|>q"
        "<|im_end|>\n<|im_start|>assistant\n<|endoftext|>"
    )


def test_llm_rewrite_template_formats_as_brights() -> None:
    """xlang-ai/BRIGHT reason.py: f'{cur_post}\\n\\nInstructions:\\n1. ...' with the query's newlines made spaces."""
    from dse.rewrite.llm import rewrite_prompt

    assert rewrite_prompt("why\ndoes it rain?") == (
        "why does it rain?\n\nInstructions:\n1. Identify the essential problem.\n2. Think step by step to reason and "
        "describe what information could be relevant and helpful to address the questions in detail.\n3. Draft an "
        "answer with as many thoughts as you have.\n"
    )
