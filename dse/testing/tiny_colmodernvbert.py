"""Tiny random ColModernVBert / BiModernVBert checkpoints (SigLIP + ModernBERT), built offline.

transformers' `ModernVBertConfig` at tiny sizes (a 2-layer ModernBERT of hidden size 32, a 2-layer
SigLIP tower), a byte-level BPE tokenizer holding the Idefics3-style image tokens ModernVBERT's
processor writes (`<fake_token_around_image>`, `<row_i_col_j>`, `<global-img>`, `<image>`) and
`<end_of_utterance>` (the query augmentation token), and an Idefics3 image processor: pages are
resized to a longest edge of 64 and split into 32x32 tiles plus a global view, each tile 4x4
patches of 8, pixel-shuffled (factor 2) into 4 image tokens. Saved with `save_pretrained` through
colpali-engine's own classes.
"""

from __future__ import annotations

from pathlib import Path

from dse.testing.tiny_colpali import TINY_HIDDEN, _seeded_model, _train_bpe

_SPECIALS = (["<|end_of_text|>", "<|begin_of_text|>", "<|pad|>", "<end_of_utterance>", "<fake_token_around_image>",
              "<image>", "<global-img>"] + [f"<row_{i}_col_{j}>" for i in range(1, 7) for j in range(1, 7)])


def _build(directory: str | Path, seed: int, bi: bool) -> Path:
    from transformers import GPT2TokenizerFast, Idefics3ImageProcessor, ModernVBertConfig

    from colpali_engine.models import BiModernVBert, BiModernVBertProcessor, ColModernVBert, ColModernVBertProcessor

    out = Path(directory)
    tokenizer = GPT2TokenizerFast(tokenizer_object=_train_bpe(_SPECIALS, "bytelevel"), bos_token="<|begin_of_text|>",
                                  eos_token="<|end_of_text|>", pad_token="<|pad|>", unk_token="<|end_of_text|>")
    image_processor = Idefics3ImageProcessor(size={"longest_edge": 64}, max_image_size={"longest_edge": 32})
    processor_cls = BiModernVBertProcessor if bi else ColModernVBertProcessor
    processor = processor_cls(image_processor=image_processor, tokenizer=tokenizer, image_seq_len=4)
    ids = dict(pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id,
               eos_token_id=tokenizer.eos_token_id, cls_token_id=tokenizer.bos_token_id,
               sep_token_id=tokenizer.eos_token_id)
    config = ModernVBertConfig(
        text_config=dict(model_type="modernbert", hidden_size=TINY_HIDDEN, intermediate_size=2 * TINY_HIDDEN,
                         num_hidden_layers=2, num_attention_heads=2, vocab_size=len(tokenizer),
                         max_position_embeddings=1024, global_attn_every_n_layers=2, local_attention=16, **ids),
        vision_config=dict(model_type="siglip_vision_model", hidden_size=TINY_HIDDEN, intermediate_size=2 * TINY_HIDDEN,
                           num_hidden_layers=2, num_attention_heads=2, patch_size=8, image_size=32),
        image_token_id=tokenizer.convert_tokens_to_ids("<image>"), pixel_shuffle_factor=2,
    )
    model = _seeded_model(lambda: (BiModernVBert if bi else ColModernVBert)(config), seed)
    model.save_pretrained(out)
    processor.save_pretrained(out)
    return out


def build_tiny_colmodernvbert(directory: str | Path, seed: int = 0) -> Path:
    """Save a tiny random ColModernVBert checkpoint and its processor in `directory`."""
    return _build(directory, seed, bi=False)


def build_tiny_bimodernvbert(directory: str | Path, seed: int = 0) -> Path:
    """Save a tiny random BiModernVBert checkpoint and its processor in `directory`."""
    return _build(directory, seed, bi=True)
