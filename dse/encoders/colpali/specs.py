"""The colpali-engine model families dse registers: which classes, which checkpoint, which budget.

Multi-vector (`Col*`, `kind="multi"`) and single-vector (`Bi*`, `kind="single"`) families share
one table; `dse.encoders.colpali.col` and `dse.encoders.colpali.bi` register one encoder name per row.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

BudgetKind = Literal["qwen", "idefics3", "fixed"]


@dataclass(frozen=True)
class FamilySpec:
    """How to load one colpali-engine model family.

    Attributes:
        model_class: Class name in `colpali_engine.models`.
        processor_class: Processor class name in `colpali_engine.models`.
        default_model: Hub id used when no `model` is given (None: the family has no reference
            checkpoint, `model` is required).
        budget: How `max_visual_tokens` is applied: "qwen" (processor `max_num_visual_tokens`:
            max_pixels = N * (patch * merge)^2), "idefics3" (longest edge of the image-splitting
            resize) or "fixed" (set by the model's image size; the option is refused).
        description: One line for `dse encoders`.
        kind: "multi" (one vector per token) or "single" (one pooled vector per item).
        bidirectional_queries: Give query batches all-zero `token_type_ids` (PaliGemma: whole input is
            the bidirectional prefix). transformers 5 otherwise attends causally when a batch is padded
            and bidirectionally when it is not, so a query's vectors would depend on its batch; with
            the prefix marked, every query gets the padding-masked bidirectional attention that
            transformers 4 (where ColPali was trained and benchmarked) applied at inference.
        matryoshka: Widths the model's forward accepts as `embedding_dim` (BiGemma3), else empty.
        fixed_note: Why `max_visual_tokens` is refused ("fixed" budget).
        empty_key_mapping: Pass `key_mapping={}` to the model's `from_pretrained`. BiQwen2, BiQwen2.5
            and BiGemma3 default it to `super()._checkpoint_conversion_mapping`, an attribute
            transformers 5 removed (its renamings moved to per-model-type conversion tables, which
            apply either way), so without it they fail to load any checkpoint.
    """

    model_class: str
    processor_class: str
    default_model: str | None
    budget: BudgetKind
    description: str
    kind: Literal["multi", "single"] = "multi"
    bidirectional_queries: bool = False
    matryoshka: tuple[int, ...] = ()
    fixed_note: str = ""
    empty_key_mapping: bool = False


_PALI_FIXED = "1024 for PaliGemma at 448x448"
_GEMMA3_FIXED = "256 for Gemma 3 at 896x896 (pan-and-scan off, as colpali-engine processes pages)"

FAMILIES: dict[str, FamilySpec] = {
    # multi-vector
    "colpali": FamilySpec("ColPali", "ColPaliProcessor", "vidore/colpali-v1.3", "fixed",
                          "ColPali (PaliGemma-3B) multi-vector page encoder", bidirectional_queries=True,
                          fixed_note=_PALI_FIXED),
    "colqwen2": FamilySpec("ColQwen2", "ColQwen2Processor", "vidore/colqwen2-v1.0", "qwen",
                           "ColQwen2 (Qwen2-VL-2B) multi-vector page encoder"),
    "colqwen2.5": FamilySpec("ColQwen2_5", "ColQwen2_5_Processor", "vidore/colqwen2.5-v0.2", "qwen",
                             "ColQwen2.5 (Qwen2.5-VL-3B) multi-vector page encoder"),
    "colsmol": FamilySpec("ColIdefics3", "ColIdefics3Processor", "vidore/colSmol-256M", "idefics3",
                          "ColSmol (Idefics3 / SmolVLM-256M) multi-vector page encoder"),
    "colqwen3": FamilySpec("ColQwen3", "ColQwen3Processor", "TomoroAI/tomoro-colqwen3-embed-4b", "qwen",
                           "ColQwen3 (Qwen3-VL) multi-vector page encoder"),
    "colqwen3.5": FamilySpec("ColQwen3_5", "ColQwen3_5Processor", "athrael-soju/colqwen3.5-4.5B-v3", "qwen",
                             "ColQwen3.5 (Qwen3.5) multi-vector page encoder"),
    "colgemma3": FamilySpec("ColGemma3", "ColGemmaProcessor3", "Cognitive-Lab/ColNetraEmbed", "fixed",
                            "ColGemma3 (Gemma 3) multi-vector page encoder", fixed_note=_GEMMA3_FIXED),
    "colmodernvbert": FamilySpec("ColModernVBert", "ColModernVBertProcessor", "ModernVBERT/colmodernvbert",
                                 "idefics3", "ColModernVBert (ModernVBERT-250M) multi-vector page encoder"),
    # single-vector twins
    # BiPaliProcessor (a ColPaliProcessor with single-vector scoring) takes (*args, **kwargs), so
    # transformers 5 gives it no tokenizer or image processor: its parent does the same processing
    "bipali": FamilySpec("BiPali", "ColPaliProcessor", "vidore/bipali", "fixed",
                         "BiPali (PaliGemma-3B) single-vector page encoder, mean pooling", kind="single",
                         bidirectional_queries=True, fixed_note=_PALI_FIXED),
    "biqwen2": FamilySpec("BiQwen2", "BiQwen2Processor", "vidore/biqwen2-v0.1", "qwen",
                          "BiQwen2 (Qwen2-VL) single-vector page encoder, last-token pooling", kind="single",
                          empty_key_mapping=True),
    "biqwen2.5": FamilySpec("BiQwen2_5", "BiQwen2_5_Processor", "nomic-ai/nomic-embed-multimodal-3b", "qwen",
                            "BiQwen2.5 (Qwen2.5-VL) single-vector page encoder, last-token pooling",
                            kind="single", empty_key_mapping=True),
    "biqwen3": FamilySpec("BiQwen3", "BiQwen3Processor", None, "qwen",
                          "BiQwen3 (Qwen3-VL) single-vector page encoder, last-token pooling", kind="single"),
    "biqwen3.5": FamilySpec("BiQwen3_5", "BiQwen3_5Processor", None, "qwen",
                            "BiQwen3.5 (Qwen3.5) single-vector page encoder, last-token pooling", kind="single"),
    "bigemma3": FamilySpec("BiGemma3", "BiGemmaProcessor3", "Cognitive-Lab/NetraEmbed", "fixed",
                           "BiGemma3 (Gemma 3) single-vector page encoder, Matryoshka dims", kind="single",
                           matryoshka=(768, 1536, 2560), fixed_note=_GEMMA3_FIXED, empty_key_mapping=True),
    "bimodernvbert": FamilySpec("BiModernVBert", "BiModernVBertProcessor", "ModernVBERT/bimodernvbert",
                                "idefics3", "BiModernVBert (ModernVBERT-250M) single-vector page encoder",
                                kind="single"),
    "biidefics3": FamilySpec("BiIdefics3", "BiIdefics3Processor", None, "idefics3",
                             "BiIdefics3 (Idefics3 / SmolVLM) single-vector page encoder", kind="single"),
}


def idefics3_tiles_per_side(max_visual_tokens: int, image_seq_len: int) -> int:
    """Largest k such that a page resized to k tiles on its longest side stays within the budget.

    A page split into an a x b grid (a, b <= k) costs (a*b + 1) * image_seq_len tokens (the tiles
    plus a global view); k = 1 means no splitting: image_seq_len tokens.

    Raises:
        ValueError: The budget is below one view (image_seq_len tokens).
    """
    if max_visual_tokens < image_seq_len:
        raise ValueError(
            f"max_visual_tokens={max_visual_tokens} is below one image view ({image_seq_len} tokens)"
        )
    k = max(1, math.isqrt(max(0, max_visual_tokens // image_seq_len - 1)))
    return k


def set_idefics3_budget(processor: Any, max_visual_tokens: int) -> None:
    """Set the Idefics3 resize target (longest edge, a multiple of the tile size) for the budget."""
    tile = int(processor.image_processor.max_image_size["longest_edge"])
    k = idefics3_tiles_per_side(max_visual_tokens, int(processor.image_seq_len))
    processor.image_processor.size = {"longest_edge": k * tile}


def text_hidden_size(config: Any) -> int:
    """Hidden size of a checkpoint's language model (the width of a pooled Bi* vector)."""
    text = getattr(config, "text_config", None)
    size = getattr(text, "hidden_size", None) if text is not None else None
    return int(size if size is not None else config.hidden_size)
