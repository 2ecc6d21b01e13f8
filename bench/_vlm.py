"""Shared by bench/query_encode.py and bench/encode_pages.py: dse encoders around full-size random VLMs.

Each bench model is a registered dse encoder loaded on its tiny checkpoint (so the real
processor, prompts and pooling run: the encoder's own `encode_queries` / `encode_pages`), whose
`model` is replaced by a full-size architecture with seeded random weights: Qwen2-VL-2B
(dse-qwen2, colqwen2), Qwen3-VL-2B (qwen3-vl-embedding), Qwen3-VL-4B (colqwen3, when that
encoder is registered). The tiny tokenizer's special-token ids are written into the full-size
config, so the full-size model reads the tiny processor's inputs. `size="tiny"` keeps the tiny
model (the test suite's size).
"""

from __future__ import annotations

import gc
from dataclasses import dataclass
from typing import Any, Callable

# Qwen2-VL-2B-Instruct (the base of dse-qwen2-2b-mrl-v1 and colqwen2-v1.0)
QWEN2VL_2B_TEXT = {"hidden_size": 1536, "intermediate_size": 8960, "num_hidden_layers": 28, "num_attention_heads": 12,
                   "num_key_value_heads": 2, "vocab_size": 151936, "max_position_embeddings": 32768,
                   "rope_parameters": {"rope_type": "default", "rope_theta": 1000000.0, "mrope_section": [16, 24, 24]}}
QWEN2VL_2B_VISION = {"depth": 32, "embed_dim": 1280, "hidden_size": 1536, "num_heads": 16, "mlp_ratio": 4,
                     "patch_size": 14, "spatial_merge_size": 2, "temporal_patch_size": 2}

_QWEN_SPECIALS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>",
                  "<|image_pad|>", "<|video_pad|>")


@dataclass(frozen=True)
class BenchModel:
    """A bench entry: the encoder, the tiny encoder it runs on, the architecture, its parameter count."""

    name: str
    tiny: str
    arch: str
    build: Callable[..., Any]  # (encoder, size, dtype, attn, exact=True) -> model
    params_b: float  # full-size parameters, billions (for the memory check)


def _ids(tokenizer: Any) -> dict[str, int]:
    return {t: tokenizer.convert_tokens_to_ids(t) for t in _QWEN_SPECIALS}


def qwen2vl_2b_config(tokenizer: Any) -> Any:
    """Qwen2-VL-2B's architecture with `tokenizer`'s special-token ids."""
    from transformers import Qwen2VLConfig

    ids = _ids(tokenizer)
    text = {**QWEN2VL_2B_TEXT, "bos_token_id": ids["<|endoftext|>"], "eos_token_id": ids["<|im_end|>"],
            "pad_token_id": ids["<|endoftext|>"]}
    return Qwen2VLConfig(text_config=text, vision_config=QWEN2VL_2B_VISION, image_token_id=ids["<|image_pad|>"],
                         video_token_id=ids["<|video_pad|>"], vision_start_token_id=ids["<|vision_start|>"],
                         vision_end_token_id=ids["<|vision_end|>"], tie_word_embeddings=True)


def _seeded(make: Callable[[Any], Any], dtype: Any, device: str, exact: bool = True) -> Any:
    """`make(float32)` on `device` with seed 0, then cast: the same random weights for every precision.

    `exact=False` builds in `dtype` directly (less memory; other random weights).
    """
    import torch

    torch.manual_seed(0)
    with torch.device(device):
        model = make(torch.float32 if exact else dtype)
    return model.to(dtype).eval()


def _tokenizer(encoder: Any) -> Any:
    return encoder.processor.tokenizer


def _build_dse(encoder: Any, size: str, dtype: Any, attn: str, exact: bool = True) -> Any:
    from transformers import Qwen2VLForConditionalGeneration

    if size == "tiny":
        return _reload(encoder, Qwen2VLForConditionalGeneration, dtype, attn)
    config = qwen2vl_2b_config(_tokenizer(encoder))
    return _seeded(lambda dt: Qwen2VLForConditionalGeneration._from_config(config, attn_implementation=attn, dtype=dt),
                   dtype, _device_of(encoder), exact)


def _build_colqwen2(encoder: Any, size: str, dtype: Any, attn: str, exact: bool = True) -> Any:
    from colpali_engine.models import ColQwen2

    if size == "tiny":
        return _reload(encoder, ColQwen2, dtype, attn)
    config = qwen2vl_2b_config(_tokenizer(encoder))
    return _seeded(lambda dt: ColQwen2._from_config(config, attn_implementation=attn, dtype=dt), dtype, _device_of(encoder), exact)


def _build_qwen3vl(size_name: str) -> Callable[[Any, str, Any, str], Any]:
    def build(encoder: Any, size: str, dtype: Any, attn: str, exact: bool = True) -> Any:
        from transformers import Qwen3VLModel

        from dse.testing.tiny_qwen3vl import qwen3vl_config

        if size == "tiny":
            return _reload(encoder, Qwen3VLModel, dtype, attn)
        config = qwen3vl_config(_tokenizer(encoder), size=size_name)
        return _seeded(lambda dt: Qwen3VLModel._from_config(config, attn_implementation=attn, dtype=dt), dtype, _device_of(encoder), exact)

    return build


def _build_colqwen3(encoder: Any, size: str, dtype: Any, attn: str, exact: bool = True) -> Any:
    from colpali_engine.models import ColQwen3

    from dse.testing.tiny_qwen3vl import qwen3vl_config

    if size == "tiny":
        return _reload(encoder, ColQwen3, dtype, attn)
    config = qwen3vl_config(_tokenizer(encoder), size="4b")
    return _seeded(lambda dt: ColQwen3._from_config(config, attn_implementation=attn, dtype=dt), dtype, _device_of(encoder), exact)


def _reload(encoder: Any, cls: Any, dtype: Any, attn: str, exact: bool = True) -> Any:
    """A fresh copy of the encoder's own (tiny) checkpoint, in `dtype`."""
    from dse.testing.tiny import tiny_checkpoint

    return cls.from_pretrained(str(tiny_checkpoint(encoder.name_tiny)), dtype=dtype,
                               attn_implementation=attn).to(_device_of(encoder)).eval()


def _device_of(encoder: Any) -> str:
    """The encoder's device: `_device` (dse-qwen2, qwen3-vl-embedding) or `device` (colpali family)."""
    return str(getattr(encoder, "_device", None) or getattr(encoder, "device"))


MODELS: dict[str, BenchModel] = {
    "dse-qwen2": BenchModel("dse-qwen2", "tiny-dse", "Qwen2-VL-2B", _build_dse, 2.21),
    "colqwen2": BenchModel("colqwen2", "tiny-colqwen2", "Qwen2-VL-2B", _build_colqwen2, 2.21),
    "qwen3-vl-embedding": BenchModel("qwen3-vl-embedding", "tiny-qwen3-vl-embedding", "Qwen3-VL-2B",
                                     _build_qwen3vl("2b"), 2.13),
    "colqwen3": BenchModel("colqwen3", "tiny-colqwen3", "Qwen3-VL-4B", _build_colqwen3, 4.44),
}


def available(names: list[str]) -> tuple[list[BenchModel], dict[str, str]]:
    """The bench models whose tiny encoder is registered, and why the others are skipped."""
    from dse.encoders.registry import list_encoders

    registered = list_encoders()
    chosen, skipped = [], {}
    for name in names:
        spec = MODELS.get(name)
        if spec is None:
            raise SystemExit(f"unknown bench model {name!r}; choose from {', '.join(MODELS)}")
        if spec.tiny not in registered:
            skipped[name] = f"{spec.tiny} is not registered in this dse"
        else:
            chosen.append(spec)
    return chosen, skipped


def load_tiny(spec: BenchModel, corpus: list[str] | None = None, **options: Any) -> Any:
    """The encoder `spec.tiny` (its processor and code path), remembering its tiny name.

    With `corpus`, the tiny tokenizer is retrained (same special tokens at the same ids, same
    pre-tokenisation) on it and on the prompt strings, so every word of the bench's queries is one
    token, as common English words are in Qwen's 151k-token vocabulary; the tiny one (a few hundred
    tokens) splits them into pieces and would make the sequences two to three times too long.
    """
    from dse.encoders.registry import load_encoder

    encoder = load_encoder(spec.tiny, **options)
    encoder.name_tiny = spec.tiny
    if corpus:
        _word_level_tokenizer(encoder.processor.tokenizer, corpus)
    return encoder


def _word_level_tokenizer(tokenizer: Any, corpus: list[str]) -> None:
    """Retrain `tokenizer`'s BPE in place on `corpus` plus dse's prompt strings."""
    from tokenizers import Tokenizer, pre_tokenizers, trainers

    import dse.prompts as prompts

    specials = [tok.content for _, tok in sorted(tokenizer.added_tokens_decoder.items())]
    texts = list(corpus) + [v for v in vars(prompts).values() if isinstance(v, str)]
    texts += ["system\nYou are a helpful assistant.", "user\n", "assistant\n", "Query: ", "Question: "]
    backend = Tokenizer.from_str(tokenizer._tokenizer.to_str())
    trainer = trainers.BpeTrainer(vocab_size=4000, min_frequency=1, special_tokens=specials, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    backend.train_from_iterator(texts * 3, trainer=trainer)
    for i, token in enumerate(specials):
        if backend.token_to_id(token) != i:
            raise RuntimeError(f"retrained tokenizer moved {token!r}")
    tokenizer._tokenizer = backend


def swap_model(encoder: Any, model: Any) -> None:
    """Put `model` in the encoder (freeing the previous one)."""
    encoder.model = model
    gc.collect()


def available_ram_gb() -> float:
    """MemAvailable from /proc/meminfo (GiB), inf where unknown."""
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) / 2**20
    except OSError:
        pass
    return float("inf")
