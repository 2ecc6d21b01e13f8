"""Every prompt string a model sees, in one place.

The strings are frozen: changing one changes the vectors, so it needs a new version of its
family in `PROMPT_VERSIONS`; each encoder records its family's version in every index's manifest
(`prompt_version`), and an index is reopened only with the same version. Versions are per family
so that adding a model, or changing one model's strings, leaves every other model's indexes
valid. Encoders whose prompts belong to another library (colpali-engine's processors) or that
have none (BM25) record `PROMPT_VERSION`. `tests/test_prompts.py` pins every string letter by letter.
"""

from __future__ import annotations

from types import MappingProxyType

PROMPT_VERSION = "1"  # the encoders without a family below

# DSE (model card of MrLight/dse-qwen2-2b-mrl-v1; tevatron's DSE).
DSE_QUERY_TEMPLATE = "Query: {query}"
DSE_PAGE_PROMPT = "What is shown in this image?"
DSE_SUFFIX = "<|endoftext|>"

# Qwen3-VL-Embedding (Qwen/Qwen3-VL-Embedding-2B, -8B; QwenLM/Qwen3-VL-Embedding's Qwen3VLEmbedder):
# a system turn holding the instruction, a user turn with the image(s) then the text.
QWEN3VL_DEFAULT_INSTRUCTION = "Represent the user's input."  # pages (the reference's default)
QWEN3VL_QUERY_INSTRUCTION = "Find a document image that matches the given query."  # its ViDoRe evaluation
QWEN3VL_EMPTY_TEXT = "NULL"  # the user turn of an input with neither text nor image

# GME (Alibaba-NLP/gme-Qwen2-VL-2B-Instruct, -7B; the card's gme_inference.py): the whole text is
# written out, Qwen2-VL's chat markup included; pages always take the default instruction.
GME_TEMPLATE = (
    "<|im_start|>system\n{instruction}<|im_end|>\n<|im_start|>user\n{input}<|im_end|>\n"
    "<|im_start|>assistant\n<|endoftext|>"
)
GME_IMAGE_TOKENS = "<|vision_start|><|image_pad|><|vision_end|>"
GME_DEFAULT_INSTRUCTION = "You are a helpful assistant."
GME_QUERY_INSTRUCTION = "Find a screenshot that relevant to the user's question."  # GME's ViDoRe instruction (as in mteb)

# jina-embeddings-v4 (jinaai/jina-embeddings-v4): its own code writes the text ("Query: ..." and
# its image prompt); dse chooses the card's task adapter and prompt name.
JINA_V4_TASK = "retrieval"
JINA_V4_QUERY_PROMPT_NAME = "query"

# The ColPali family's query prefix and augmentation tokens belong to colpali-engine's processors
# (`process_queries`); dse passes queries through unchanged and records colpali-engine's version.

# The `llm` query rewriter (dse.rewrite.llm): BRIGHT's reasoning rewrite, letter for letter as in
# xlang-ai/BRIGHT's reason.py (commit 84af2f2a): the query (newlines made spaces), a blank line,
# the three instructions, a final newline. Chat models get BRIGHT's OpenAI system message (no
# full stop, as there); a model without a chat template reads the prompt alone (its HFModel).
LLM_REWRITE_TEMPLATE = (
    "{query}\n\n"
    "Instructions:\n"
    "1. Identify the essential problem.\n"
    "2. Think step by step to reason and describe what information could be relevant and helpful to address the "
    "questions in detail.\n"
    "3. Draft an answer with as many thoughts as you have.\n"
)
LLM_REWRITE_SYSTEM = "You are a helpful assistant"

PROMPT_VERSIONS = MappingProxyType({"dse": "1", "qwen3vl": "1", "gme": "1", "jina-v4": "1", "llm-rewrite": "1"})

PROMPTS = MappingProxyType(
    {
        "dse.query_template": DSE_QUERY_TEMPLATE,
        "dse.page_prompt": DSE_PAGE_PROMPT,
        "dse.suffix": DSE_SUFFIX,
        "qwen3vl.default_instruction": QWEN3VL_DEFAULT_INSTRUCTION,
        "qwen3vl.query_instruction": QWEN3VL_QUERY_INSTRUCTION,
        "qwen3vl.empty_text": QWEN3VL_EMPTY_TEXT,
        "gme.template": GME_TEMPLATE,
        "gme.image_tokens": GME_IMAGE_TOKENS,
        "gme.default_instruction": GME_DEFAULT_INSTRUCTION,
        "gme.query_instruction": GME_QUERY_INSTRUCTION,
        "jina-v4.task": JINA_V4_TASK,
        "jina-v4.query_prompt_name": JINA_V4_QUERY_PROMPT_NAME,
        "llm-rewrite.template": LLM_REWRITE_TEMPLATE,
        "llm-rewrite.system": LLM_REWRITE_SYSTEM,
    }
)
