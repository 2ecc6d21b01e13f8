"""Every prompt string a model sees, in one place.

The strings are frozen: changing one changes the vectors, so it needs a new `PROMPT_VERSION`,
which every index records in its manifest. `tests/test_prompts.py` pins them letter by letter.
"""

from __future__ import annotations

from types import MappingProxyType

PROMPT_VERSION = "1"

# DSE (model card of MrLight/dse-qwen2-2b-mrl-v1; tevatron's DSE).
DSE_QUERY_TEMPLATE = "Query: {query}"
DSE_PAGE_PROMPT = "What is shown in this image?"
DSE_SUFFIX = "<|endoftext|>"

# The ColPali family's query prefix and augmentation tokens belong to colpali-engine's processors
# (`process_queries`); dse passes queries through unchanged and records colpali-engine's version.

PROMPTS = MappingProxyType(
    {
        "dse.query_template": DSE_QUERY_TEMPLATE,
        "dse.page_prompt": DSE_PAGE_PROMPT,
        "dse.suffix": DSE_SUFFIX,
    }
)
