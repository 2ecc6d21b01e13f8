"""Tiny random ColPali-family checkpoints (ColQwen2, ColQwen2.5, ColPali, ColSmol and their Bi* twins), built offline.

Each builder trains a small BPE tokenizer holding the family's special tokens, builds a tiny
config (hidden size 32, 2 layers, a 2-layer vision tower), seeds the weights and saves model and
processor with `save_pretrained`, so that `load_encoder("colqwen2", model=str(directory))` loads
it through exactly the path a hub checkpoint takes. Deterministic; about a second each. The Bi*
twins (`build_tiny_biqwen2`, ...) are the same checkpoints saved through colpali-engine's Bi* model
and processor classes (no projection layer: the pooled hidden state is the vector).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

TINY_HIDDEN = 32
# text the tokenizers are trained on: the family prompts plus ordinary words, so queries split sensibly
_CORPUS = [
    "Describe the image.",
    "User: Assistant: Query: What is shown in this image?",
    "What is the organizational structure for our R&D department?",
    "Can you provide a breakdown of last year's financial performance?",
    "the page table figure chart revenue total report document section summary of and in on for",
]
_QWEN_SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>",
                  "<|image_pad|>", "<|video_pad|>"]
_GEMMA_SPECIALS = ["<pad>", "<eos>", "<bos>", "<unk>", "<mask>", "<image>"]
_SMOL_SPECIALS = (["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<end_of_utterance>",
                   "<fake_token_around_image>", "<image>", "<global-img>"]
                  + [f"<row_{i}_col_{j}>" for i in range(1, 7) for j in range(1, 7)])


def _train_bpe(specials: list[str], style: str, vocab_size: int = 320) -> Any:
    """Train a `tokenizers` BPE model on the tiny corpus.

    Args:
        specials: Special tokens, given the first ids in order.
        style: "bytelevel" (Qwen2, SmolLM: GPT-2 byte-level BPE) or "gemma" (spaces as "▁").
        vocab_size: Target vocabulary size.
    """
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

    if style == "bytelevel":
        tok = Tokenizer(models.BPE())
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tok.decoder = decoders.ByteLevel()
        alphabet = pre_tokenizers.ByteLevel.alphabet()
    else:  # the pipeline transformers' GemmaTokenizer rebuilds on load
        tok = Tokenizer(models.BPE(unk_token="<unk>", fuse_unk=True, byte_fallback=True))
        tok.normalizer = normalizers.Replace(" ", "\u2581")
        # words for training only: GemmaTokenizer is rebuilt from vocab + merges with its own pipeline
        tok.pre_tokenizer = pre_tokenizers.Split(pattern="\u2581", behavior="merged_with_next")
        tok.decoder = decoders.Sequence([decoders.Replace("\u2581", " "), decoders.ByteFallback(), decoders.Fuse()])
        alphabet = [chr(i) for i in range(32, 127)] + ["\u2581", "\n"]
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=specials, initial_alphabet=alphabet,
                                  show_progress=False)
    tok.train_from_iterator(_CORPUS * 4, trainer)
    return tok


def _seeded_model(factory: Callable[[], Any], seed: int) -> Any:
    """Build a model with weights drawn from `seed`, leaving the global torch RNG untouched."""
    import torch

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = factory()
    return model.eval()


def _text_config(vocab_size: int, **extra: Any) -> dict[str, Any]:
    """A 2-layer decoder of hidden size `TINY_HIDDEN`."""
    return dict(hidden_size=TINY_HIDDEN, intermediate_size=2 * TINY_HIDDEN, num_hidden_layers=2,
                num_attention_heads=2, num_key_value_heads=1, vocab_size=vocab_size,
                max_position_embeddings=1024, **extra)


def _build_qwen(directory: str | Path, seed: int, version: str, bi: bool = False) -> Path:
    """Shared builder of the Qwen2-VL ("2") and Qwen2.5-VL ("2.5") families (`bi`: the Bi* twin)."""
    from transformers import Qwen2TokenizerFast, Qwen2VLImageProcessor
    from transformers.models.qwen2_vl.video_processing_qwen2_vl import Qwen2VLVideoProcessor

    import colpali_engine.models as cm

    out = Path(directory)
    tokenizer = Qwen2TokenizerFast(tokenizer_object=_train_bpe(_QWEN_SPECIALS, "bytelevel"), unk_token=None,
                                   bos_token=None, eos_token="<|endoftext|>", pad_token="<|endoftext|>")
    # 4..256 visual tokens per page (one token = 28x28 pixels after the 2x2 merge)
    image_processor = Qwen2VLImageProcessor(min_pixels=4 * 28 * 28, max_pixels=256 * 28 * 28)
    video_processor = Qwen2VLVideoProcessor(min_pixels=4 * 28 * 28, max_pixels=256 * 28 * 28)
    names = {("2", False): ("ColQwen2", "ColQwen2Processor"), ("2.5", False): ("ColQwen2_5", "ColQwen2_5_Processor"),
             ("2", True): ("BiQwen2", "BiQwen2Processor"), ("2.5", True): ("BiQwen2_5", "BiQwen2_5_Processor")}
    model_cls, processor_cls = (getattr(cm, n) for n in names[(version, bi)])
    processor = processor_cls(image_processor=image_processor, tokenizer=tokenizer, video_processor=video_processor)
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in _QWEN_SPECIALS}
    rope = {"rope_type": "default", "rope_theta": 10000.0, "mrope_section": [2, 3, 3]}  # head_dim 16 -> 8 pairs
    text = _text_config(len(tokenizer), rope_parameters=rope, bos_token_id=ids["<|endoftext|>"],
                        eos_token_id=ids["<|endoftext|>"], tie_word_embeddings=False)
    common = dict(image_token_id=ids["<|image_pad|>"], video_token_id=ids["<|video_pad|>"],
                  vision_start_token_id=ids["<|vision_start|>"], vision_end_token_id=ids["<|vision_end|>"])
    if version == "2":
        from transformers import Qwen2VLConfig

        vision = dict(depth=2, embed_dim=TINY_HIDDEN, hidden_size=TINY_HIDDEN, num_heads=2, mlp_ratio=2)
        config = Qwen2VLConfig(text_config=text, vision_config=vision, **common)
    else:
        from transformers import Qwen2_5_VLConfig

        vision = dict(depth=2, hidden_size=TINY_HIDDEN, intermediate_size=2 * TINY_HIDDEN, num_heads=2,
                      out_hidden_size=TINY_HIDDEN, fullatt_block_indexes=[1], window_size=56)
        config = Qwen2_5_VLConfig(text_config=text, vision_config=vision, **common)
    model = _seeded_model(lambda: model_cls(config), seed)
    model.save_pretrained(out)
    processor.save_pretrained(out)
    return out


def build_tiny_colqwen2(directory: str | Path, seed: int = 0) -> Path:
    """Save a tiny random ColQwen2 checkpoint (Qwen2-VL backbone) and its processor in `directory`."""
    return _build_qwen(directory, seed, "2")


def build_tiny_colqwen2_5(directory: str | Path, seed: int = 0) -> Path:
    """Save a tiny random ColQwen2.5 checkpoint (Qwen2.5-VL backbone) and its processor in `directory`."""
    return _build_qwen(directory, seed, "2.5")


def build_tiny_biqwen2(directory: str | Path, seed: int = 0) -> Path:
    """Save a tiny random BiQwen2 checkpoint (Qwen2-VL backbone) and its processor in `directory`."""
    return _build_qwen(directory, seed, "2", bi=True)


def build_tiny_biqwen2_5(directory: str | Path, seed: int = 0) -> Path:
    """Save a tiny random BiQwen2.5 checkpoint (Qwen2.5-VL backbone) and its processor in `directory`."""
    return _build_qwen(directory, seed, "2.5", bi=True)


def build_tiny_colpali(directory: str | Path, seed: int = 0, bi: bool = False) -> Path:
    """Save a tiny random ColPali checkpoint (PaliGemma: SigLIP + Gemma) and its processor in `directory`.

    The SigLIP tower sees 28x28 pixels as 2x2 patches of 14, so every page is 4 image tokens.
    `bi`: the BiPali twin (mean-pooled hidden states).
    """
    from transformers import GemmaTokenizerFast, PaliGemmaConfig, SiglipImageProcessor

    from colpali_engine.models import BiPali, ColPali, ColPaliProcessor

    out = Path(directory)
    bpe = _train_bpe(_GEMMA_SPECIALS, "gemma")
    tokenizer = GemmaTokenizerFast(vocab=bpe.get_vocab(), merges=_merges(bpe), bos_token="<bos>",
                                   eos_token="<eos>", pad_token="<pad>", unk_token="<unk>", mask_token="<mask>")
    tokenizer.add_special_tokens({"additional_special_tokens": ["<image>"]})
    image_processor = SiglipImageProcessor(size={"height": 28, "width": 28}, image_seq_length=4)
    # BiPaliProcessor takes (*args, **kwargs), so transformers finds no parts of it to save: the
    # files are ColPaliProcessor's, which BiPaliProcessor mirrors (and loads)
    processor = ColPaliProcessor(image_processor=image_processor, tokenizer=tokenizer)  # adds <loc>/<seg> tokens
    special = dict(bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                   pad_token_id=tokenizer.pad_token_id)
    config = PaliGemmaConfig(
        text_config=_text_config(len(tokenizer), head_dim=16, **special),
        vision_config=dict(hidden_size=TINY_HIDDEN, intermediate_size=2 * TINY_HIDDEN, num_hidden_layers=2,
                           num_attention_heads=2, patch_size=14, image_size=28, vision_use_head=False),
        image_token_index=tokenizer.convert_tokens_to_ids("<image>"), vocab_size=len(tokenizer),
        projection_dim=TINY_HIDDEN, hidden_size=TINY_HIDDEN, **special,
    )
    model = _seeded_model(lambda: (BiPali if bi else ColPali)(config), seed)
    model.save_pretrained(out)
    processor.save_pretrained(out)
    return out


def build_tiny_bipali(directory: str | Path, seed: int = 0) -> Path:
    """Save a tiny random BiPali checkpoint (PaliGemma) and its processor in `directory`."""
    return build_tiny_colpali(directory, seed, bi=True)


def build_tiny_colsmol(directory: str | Path, seed: int = 0, bi: bool = False) -> Path:
    """Save a tiny random ColSmol checkpoint (Idefics3: SigLIP + Llama) and its processor in `directory`.

    Pages are resized to a longest edge of 64 and split into 32x32 tiles plus one global view;
    each tile is 4x4 patches of 8, pixel-shuffled (scale 2) into 4 image tokens. `bi`: the
    BiIdefics3 twin (last-token pooling).
    """
    from transformers import GPT2TokenizerFast, Idefics3Config, Idefics3ImageProcessor

    from colpali_engine.models import BiIdefics3, BiIdefics3Processor, ColIdefics3, ColIdefics3Processor

    out = Path(directory)
    tokenizer = GPT2TokenizerFast(tokenizer_object=_train_bpe(_SMOL_SPECIALS, "bytelevel"),
                                  bos_token="<|im_start|>", eos_token="<end_of_utterance>",
                                  pad_token="<|im_end|>", unk_token="<|endoftext|>")
    image_processor = Idefics3ImageProcessor(size={"longest_edge": 64}, max_image_size={"longest_edge": 32})
    processor_cls = BiIdefics3Processor if bi else ColIdefics3Processor
    processor = processor_cls(image_processor=image_processor, tokenizer=tokenizer, image_seq_len=4)
    config = Idefics3Config(
        text_config=_text_config(len(tokenizer), model_type="llama", pad_token_id=tokenizer.pad_token_id),
        vision_config=dict(hidden_size=TINY_HIDDEN, intermediate_size=2 * TINY_HIDDEN, num_hidden_layers=2,
                           num_attention_heads=2, patch_size=8, image_size=32),
        image_token_id=tokenizer.convert_tokens_to_ids("<image>"), scale_factor=2,
        pad_token_id=tokenizer.pad_token_id,
    )
    model = _seeded_model(lambda: (BiIdefics3 if bi else ColIdefics3)(config), seed)
    model.save_pretrained(out)
    processor.save_pretrained(out)
    return out


def build_tiny_biidefics3(directory: str | Path, seed: int = 0) -> Path:
    """Save a tiny random BiIdefics3 checkpoint (Idefics3: SigLIP + Llama) and its processor in `directory`."""
    return build_tiny_colsmol(directory, seed, bi=True)


def _merges(bpe: Any) -> list[tuple[str, str]]:
    """The merge list of a trained `tokenizers` BPE model."""
    import json

    merges = json.loads(bpe.to_str())["model"]["merges"]
    return [tuple(m) if isinstance(m, list) else tuple(m.split(" ")) for m in merges]
