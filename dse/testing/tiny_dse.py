"""A tiny random Qwen2-VL checkpoint laid out like `MrLight/dse-qwen2-2b-mrl-v1`, built offline.

The checkpoint has a real (small) byte-level BPE tokenizer holding Qwen2-VL's special tokens and
chat template, a real `Qwen2VLProcessor` and random weights, so `load_encoder("dse-qwen2",
model=str(directory), dim=TINY_DSE_HIDDEN)` runs the exact code path users run, in seconds.
"""

from __future__ import annotations

from pathlib import Path

TINY_DSE_HIDDEN = 64
"""Hidden size of the tiny text model: the full vector width of the tiny DSE checkpoint."""

_VOCAB_SIZE = 400

# Qwen2-VL's special tokens, in the order of their ids in the real vocabulary (151643...).
SPECIAL_TOKENS = (
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|object_ref_start|>",
    "<|object_ref_end|>",
    "<|box_start|>",
    "<|box_end|>",
    "<|quad_start|>",
    "<|quad_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|vision_pad|>",
    "<|image_pad|>",
    "<|video_pad|>",
)

# The chat template shipped with Qwen2-VL-2B-Instruct (and so with the DSE checkpoint).
QWEN2_VL_CHAT_TEMPLATE = (
    "{% set image_count = namespace(value=0) %}{% set video_count = namespace(value=0) %}"
    "{% for message in messages %}{% if loop.first and message['role'] != 'system' %}"
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}"
    "<|im_start|>{{ message['role'] }}\n{% if message['content'] is string %}"
    "{{ message['content'] }}<|im_end|>\n{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'image' or 'image' in content or 'image_url' in content %}"
    "{% set image_count.value = image_count.value + 1 %}"
    "{% if add_vision_id %}Picture {{ image_count.value }}: {% endif %}"
    "<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif content['type'] == 'video' or 'video' in content %}"
    "{% set video_count.value = video_count.value + 1 %}"
    "{% if add_vision_id %}Video {{ video_count.value }}: {% endif %}"
    "<|vision_start|><|video_pad|><|vision_end|>"
    "{% elif 'text' in content %}{{ content['text'] }}{% endif %}{% endfor %}<|im_end|>\n"
    "{% endif %}{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

# Qwen2's pre-tokenisation pattern (splits words, numbers, punctuation and whitespace runs).
_PRETOKENIZE_REGEX = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
    r"|\s*[\r\n]+|\s+(?!\S)|\s+"
)

_CORPUS = (
    "system\nYou are a helpful assistant.",
    "user\nWhat is shown in this image?",
    "assistant\n",
    "Query: hello",
    "Query: what was the revenue in the third quarter of 2023?",
    "Query: which table lists the results of the benchmark?",
    "The annual report shows revenue, profit and cash flow for each year.",
    "Figure 3: accuracy of the model against the number of training steps.",
    "Table 2 compares retrieval scores of dense and sparse methods on documents.",
    "Slides, invoices, forms, charts and scanned pages are all documents.",
    "Find the page that answers the question by looking at the page image.",
    "0123456789 .,;:!?()[]{}-+*/=%$#@&'\"",
)


def build_tiny_tokenizer() -> object:
    """Train a small byte-level BPE on a built-in corpus and wrap it as a transformers fast tokenizer.

    Returns:
        A `PreTrainedTokenizerFast` with Qwen2-VL's special tokens and chat template.
    """
    from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token=None, fuse_unk=False, byte_fallback=False))
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(_PRETOKENIZE_REGEX), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=_VOCAB_SIZE,
        min_frequency=1,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(list(_CORPUS), trainer=trainer)
    wrapped = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        unk_token=None,
        bos_token=None,
        model_max_length=32768,
        clean_up_tokenization_spaces=False,
        extra_special_tokens={"image_token": "<|image_pad|>", "video_token": "<|video_pad|>"},
    )
    wrapped.chat_template = QWEN2_VL_CHAT_TEMPLATE
    return wrapped


def build_tiny_dse(directory: str | Path, seed: int = 0) -> Path:
    """Build a tiny random Qwen2-VL DSE checkpoint offline and save it into `directory`.

    Same `seed` gives identical weights and tokenizer files. Takes a few seconds on a CPU.

    Args:
        directory: Where to save (created if missing).
        seed: Seed of the random weights.

    Returns:
        The checkpoint directory, loadable with `load_encoder("dse-qwen2", model=str(path))`.
    """
    import torch
    from transformers import (
        Qwen2VLConfig,
        Qwen2VLForConditionalGeneration,
        Qwen2VLImageProcessor,
        Qwen2VLProcessor,
        Qwen2VLVideoProcessor,
    )

    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    tokenizer = build_tiny_tokenizer()
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS}
    heads = 4
    head_dim = TINY_DSE_HIDDEN // heads
    config = Qwen2VLConfig(
        text_config={
            "vocab_size": len(tokenizer),
            "hidden_size": TINY_DSE_HIDDEN,
            "intermediate_size": 2 * TINY_DSE_HIDDEN,
            "num_hidden_layers": 2,
            "num_attention_heads": heads,
            "num_key_value_heads": 2,
            "max_position_embeddings": 4096,
            "rope_parameters": {
                "rope_type": "default",
                "rope_theta": 1000000.0,
                "mrope_section": [head_dim // 8, 3 * head_dim // 16, 3 * head_dim // 16],
            },
            "bos_token_id": ids["<|endoftext|>"],
            "eos_token_id": ids["<|im_end|>"],
            "pad_token_id": ids["<|endoftext|>"],
        },
        vision_config={
            "depth": 2,
            "embed_dim": 32,
            "hidden_size": TINY_DSE_HIDDEN,
            "num_heads": 2,
            "mlp_ratio": 2,
            "patch_size": 14,
            "spatial_merge_size": 2,
            "temporal_patch_size": 2,
        },
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
        tie_word_embeddings=False,
    )
    torch.manual_seed(seed)
    model = Qwen2VLForConditionalGeneration(config).eval()  # random weights from the seed
    model.save_pretrained(out)
    processor = Qwen2VLProcessor(
        image_processor=Qwen2VLImageProcessor(min_pixels=56 * 56, max_pixels=28 * 28 * 1280),
        tokenizer=tokenizer,
        video_processor=Qwen2VLVideoProcessor(),
        chat_template=QWEN2_VL_CHAT_TEMPLATE,
    )
    processor.save_pretrained(out)
    return out


def build_tiny_gme(directory: str | Path, seed: int = 0) -> Path:
    """Build a tiny random GME checkpoint: a Qwen2-VL laid out like `Alibaba-NLP/gme-Qwen2-VL-2B-Instruct`.

    GME is a Qwen2-VL fine-tune, so the layout is the tiny DSE one; other weights (seed + 1000).

    Returns:
        The directory, loadable with `load_encoder("gme-qwen2", model=str(path))`.
    """
    return build_tiny_dse(directory, seed=seed + 1000)
