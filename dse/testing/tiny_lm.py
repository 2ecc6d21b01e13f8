"""A tiny random causal LM (Qwen2 layout) with a real tokenizer, built offline: the `llm` rewriter's tests.

`build_tiny_causal_lm(dir)` saves a 2-layer Qwen2ForCausalLM with random (seeded) weights and the
tiny byte-level BPE tokenizer of `dse.testing.tiny_dse` (Qwen2's chat template included, or left
out with `chat_template=False`), so `load_rewriter("llm", model=dir)` runs the path a real local
model takes. Its text is deterministic nonsense.
"""

from __future__ import annotations

from pathlib import Path

TINY_LM_HIDDEN = 32


def build_tiny_causal_lm(directory: str | Path, seed: int = 0, chat_template: bool = True,
                         max_positions: int = 2048) -> Path:
    """Build and save the tiny causal LM and its tokenizer into `directory`.

    Args:
        directory: Where to save (created if missing).
        seed: Seed of the random weights (same seed, same files).
        chat_template: Keep the tokenizer's chat template (False: plain prompts).
        max_positions: The model's `max_position_embeddings`.

    Returns:
        The directory, loadable with `AutoModelForCausalLM.from_pretrained`.
    """
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    from dse.testing.tiny_dse import SPECIAL_TOKENS, build_tiny_tokenizer

    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    tokenizer = build_tiny_tokenizer()
    if not chat_template:
        tokenizer.chat_template = None
    eos = tokenizer.convert_tokens_to_ids("<|im_end|>")
    pad = tokenizer.convert_tokens_to_ids("<|endoftext|>")
    config = Qwen2Config(
        vocab_size=len(tokenizer), hidden_size=TINY_LM_HIDDEN, intermediate_size=2 * TINY_LM_HIDDEN,
        num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=max_positions,
        bos_token_id=pad, eos_token_id=eos, pad_token_id=pad, tie_word_embeddings=True,
        initializer_range=0.5,  # large random weights: the text depends on the prompt, not one repeated token
    )
    torch.manual_seed(seed)
    model = Qwen2ForCausalLM(config).eval()
    model.generation_config.pad_token_id = pad
    # random weights would often end at once or write only blanks: the tiny model never writes a
    # special token or a token of whitespace alone, so each rewrite is max_new_tokens of visible nonsense
    special = {tokenizer.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS}
    blank = {i for i in range(len(tokenizer)) if not tokenizer.decode([i]).strip()}
    model.generation_config.suppress_tokens = sorted(special | blank)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out
