"""Tiny random ColQwen3 / ColQwen3.5 checkpoints and their Bi* twins, built offline.

Built with transformers' `Qwen3VLConfig` / `Qwen3_5Config` at tiny sizes (hidden size 32, two
layers; Qwen3.5: one Gated-DeltaNet linear-attention layer and one full-attention layer, as the
real model alternates them), the tiny Qwen tokenizer of `dse.testing.tiny_colpali`, and
Qwen3-VL's image processing (16-pixel patches, 2x2 merge: one visual token per 32x32 pixels),
saved with `save_pretrained` through colpali-engine's own model and processor classes, so
`load_encoder("colqwen3", model=str(directory))` loads it the way it loads a hub checkpoint.

Token widths: ColQwen3 is 320-d (colpali-engine fixes it, as in TomoroAI's checkpoints); the tiny
ColQwen3.5 records `dim=96` in its config (colpali-engine reads the width from there), so the
tests exercise a width that is neither 128 nor a multiple of 64.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from dse.testing.tiny_colpali import _QWEN_SPECIALS, TINY_HIDDEN, _seeded_model, _train_bpe

TINY_COLQWEN3_5_DIM = 96


def _processor(cls: Any) -> Any:
    """A colpali-engine Qwen3-VL processor class over the tiny tokenizer (4..256 visual tokens a page)."""
    from transformers import Qwen2TokenizerFast, Qwen2VLImageProcessor, Qwen3VLVideoProcessor

    tokenizer = Qwen2TokenizerFast(tokenizer_object=_train_bpe(_QWEN_SPECIALS, "bytelevel"), unk_token=None,
                                   bos_token=None, eos_token="<|endoftext|>", pad_token="<|endoftext|>")
    pixels = dict(min_pixels=4 * 32 * 32, max_pixels=256 * 32 * 32)
    image_processor = Qwen2VLImageProcessor(patch_size=16, merge_size=2, temporal_patch_size=2,
                                            image_mean=[0.5] * 3, image_std=[0.5] * 3, **pixels)
    video_processor = Qwen3VLVideoProcessor(patch_size=16, merge_size=2, temporal_patch_size=2)
    return cls(image_processor=image_processor, tokenizer=tokenizer, video_processor=video_processor)


def _config(tokenizer: Any, version: str) -> Any:
    """A tiny `Qwen3VLConfig` ("3") or `Qwen3_5Config` ("3.5")."""
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in _QWEN_SPECIALS}
    text: dict[str, Any] = dict(
        hidden_size=TINY_HIDDEN, intermediate_size=2 * TINY_HIDDEN, num_hidden_layers=2, num_attention_heads=2,
        num_key_value_heads=1, head_dim=16, vocab_size=len(tokenizer), max_position_embeddings=1024,
        bos_token_id=ids["<|endoftext|>"], eos_token_id=ids["<|endoftext|>"], pad_token_id=ids["<|endoftext|>"],
    )
    vision: dict[str, Any] = dict(depth=2, hidden_size=TINY_HIDDEN, intermediate_size=2 * TINY_HIDDEN, num_heads=2,
                                  out_hidden_size=TINY_HIDDEN, num_position_embeddings=64, patch_size=16,
                                  spatial_merge_size=2, temporal_patch_size=2)
    common = dict(image_token_id=ids["<|image_pad|>"], video_token_id=ids["<|video_pad|>"],
                  vision_start_token_id=ids["<|vision_start|>"], vision_end_token_id=ids["<|vision_end|>"],
                  tie_word_embeddings=False)
    if version == "3":
        from transformers import Qwen3VLConfig

        text["rope_parameters"] = {"rope_type": "default", "rope_theta": 10000.0, "mrope_section": [4, 2, 2],
                                   "mrope_interleaved": True}  # head_dim 16 -> 8 rotary pairs
        return Qwen3VLConfig(text_config=text, vision_config={**vision, "deepstack_visual_indexes": [1]}, **common)
    from transformers import Qwen3_5Config

    text.update(linear_conv_kernel_dim=4, linear_key_head_dim=8, linear_value_head_dim=8, linear_num_key_heads=2,
                linear_num_value_heads=2, layer_types=["linear_attention", "full_attention"],
                rope_parameters={"rope_type": "default", "rope_theta": 10000.0, "mrope_section": [1, 1, 0],
                                 "mrope_interleaved": True, "partial_rotary_factor": 0.25})  # 4 rotary dims
    config = Qwen3_5Config(text_config=text, vision_config=vision, **common)
    config.dim = TINY_COLQWEN3_5_DIM  # ColQwen3_5 reads its projection width from the config
    return config


def _build(directory: str | Path, seed: int, version: str, bi: bool) -> Path:
    import colpali_engine.models as cm

    suffix = "3" if version == "3" else "3_5"
    model_cls = getattr(cm, f"{'Bi' if bi else 'Col'}Qwen{suffix}")
    processor = _processor(getattr(cm, f"{'Bi' if bi else 'Col'}Qwen{suffix}Processor"))
    config = _config(processor.tokenizer, version)
    out = Path(directory)
    model = _seeded_model(lambda: model_cls(config), seed)
    model.save_pretrained(out)
    processor.save_pretrained(out)
    return out


def build_tiny_colqwen3(directory: str | Path, seed: int = 0) -> Path:
    """Save a tiny random ColQwen3 checkpoint (Qwen3-VL backbone, 320-d vectors) and its processor."""
    return _build(directory, seed, "3", bi=False)


def build_tiny_colqwen3_5(directory: str | Path, seed: int = 0) -> Path:
    """Save a tiny random ColQwen3.5 checkpoint (Qwen3.5 backbone, 96-d vectors) and its processor."""
    return _build(directory, seed, "3.5", bi=False)


def build_tiny_biqwen3(directory: str | Path, seed: int = 0) -> Path:
    """Save a tiny random BiQwen3 checkpoint (Qwen3-VL backbone) and its processor."""
    return _build(directory, seed, "3", bi=True)


def build_tiny_biqwen3_5(directory: str | Path, seed: int = 0) -> Path:
    """Save a tiny random BiQwen3.5 checkpoint (Qwen3.5 backbone) and its processor."""
    return _build(directory, seed, "3.5", bi=True)
