"""Pins every prompt string in `dse.prompts` letter by letter: changing one needs a new PROMPT_VERSION."""

from __future__ import annotations

import types

import pytest

import dse.prompts as prompts

PINNED = {
    "DSE_QUERY_TEMPLATE": "Query: {query}",
    "DSE_PAGE_PROMPT": "What is shown in this image?",
    "DSE_SUFFIX": "<|endoftext|>",
}


def test_prompt_version_is_pinned() -> None:
    assert prompts.PROMPT_VERSION == "1"


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
    }
    with pytest.raises(TypeError):
        prompts.PROMPTS["dse.suffix"] = "x"  # type: ignore[index]


def test_query_template_formats() -> None:
    assert prompts.DSE_QUERY_TEMPLATE.format(query="hello") == "Query: hello"
