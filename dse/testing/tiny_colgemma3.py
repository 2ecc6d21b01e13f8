"""Tiny random ColGemma3 / BiGemma3 checkpoints (Gemma 3: SigLIP + Gemma 3 text model), built offline.

transformers' `Gemma3Config` at tiny sizes (hidden size 32; one sliding-window and one global
attention layer, as Gemma 3 interleaves them), a BPE tokenizer holding Gemma 3's special tokens
(`<start_of_turn>`, `<start_of_image>`, `<image_soft_token>`, ...) and Gemma 3's chat template,
which colpali-engine's processors apply to pages ("Describe this image") and queries
("Query: ..."). The SigLIP tower sees 28x28 pixels as 2x2 patches of 14, so every page is 4
image tokens (`mm_tokens_per_image`); saved with `save_pretrained` through colpali-engine's own
classes, loaded by `load_encoder("colgemma3", model=str(directory))` as a hub checkpoint is.
"""

from __future__ import annotations

from pathlib import Path

from dse.testing.tiny_colpali import TINY_HIDDEN, _merges, _seeded_model, _text_config, _train_bpe

_SPECIALS = ["<pad>", "<eos>", "<bos>", "<unk>", "<mask>", "<start_of_turn>", "<end_of_turn>",
             "<start_of_image>", "<end_of_image>", "<image_soft_token>"]

# The chat template of google/gemma-3-4b-it (the base of NetraEmbed and ColNetraEmbed).
GEMMA3_CHAT_TEMPLATE = (
    "{{ bos_token }}\n"
    "{%- if messages[0]['role'] == 'system' -%}\n"
    "    {%- if messages[0]['content'] is string -%}\n"
    "        {%- set first_user_prefix = messages[0]['content'] + '\\n\\n' -%}\n"
    "    {%- else -%}\n"
    "        {%- set first_user_prefix = messages[0]['content'][0]['text'] + '\\n\\n' -%}\n"
    "    {%- endif -%}\n"
    "    {%- set loop_messages = messages[1:] -%}\n"
    "{%- else -%}\n"
    "    {%- set first_user_prefix = \"\" -%}\n"
    "    {%- set loop_messages = messages -%}\n"
    "{%- endif -%}\n"
    "{%- for message in loop_messages -%}\n"
    "    {%- if (message['role'] == 'user') != (loop.index0 % 2 == 0) -%}\n"
    "        {{ raise_exception(\"Conversation roles must alternate user/assistant/user/assistant/...\") }}\n"
    "    {%- endif -%}\n"
    "    {%- if (message['role'] == 'assistant') -%}\n"
    "        {%- set role = \"model\" -%}\n"
    "    {%- else -%}\n"
    "        {%- set role = message['role'] -%}\n"
    "    {%- endif -%}\n"
    "    {{ '<start_of_turn>' + role + '\\n' + (first_user_prefix if loop.first else \"\") }}\n"
    "    {%- if message['content'] is string -%}\n"
    "        {{ message['content'] | trim }}\n"
    "    {%- elif message['content'] is iterable -%}\n"
    "        {%- for item in message['content'] -%}\n"
    "            {%- if item['type'] == 'image' -%}\n"
    "                {{ '<start_of_image>' }}\n"
    "            {%- elif item['type'] == 'text' -%}\n"
    "                {{ item['text'] | trim }}\n"
    "            {%- endif -%}\n"
    "        {%- endfor -%}\n"
    "    {%- else -%}\n"
    "        {{ raise_exception(\"Invalid content type\") }}\n"
    "    {%- endif -%}\n"
    "    {{ '<end_of_turn>\\n' }}\n"
    "{%- endfor -%}\n"
    "{%- if add_generation_prompt -%}\n"
    "    {{'<start_of_turn>model\\n'}}\n"
    "{%- endif -%}\n"
)


def _build(directory: str | Path, seed: int, bi: bool) -> Path:
    from transformers import Gemma3Config, Gemma3ImageProcessor, GemmaTokenizerFast

    from colpali_engine.models import BiGemma3, BiGemmaProcessor3, ColGemma3, ColGemmaProcessor3

    out = Path(directory)
    bpe = _train_bpe(_SPECIALS, "gemma")
    tokenizer = GemmaTokenizerFast(
        vocab=bpe.get_vocab(), merges=_merges(bpe), bos_token="<bos>", eos_token="<eos>", pad_token="<pad>",
        unk_token="<unk>", mask_token="<mask>",
        extra_special_tokens={"boi_token": "<start_of_image>", "eoi_token": "<end_of_image>",
                              "image_token": "<image_soft_token>"},
    )
    tokenizer.chat_template = GEMMA3_CHAT_TEMPLATE  # colpali-engine applies the tokenizer's template
    image_processor = Gemma3ImageProcessor(size={"height": 28, "width": 28})
    processor_cls = BiGemmaProcessor3 if bi else ColGemmaProcessor3
    processor = processor_cls(image_processor=image_processor, tokenizer=tokenizer, image_seq_length=4,
                              chat_template=GEMMA3_CHAT_TEMPLATE)
    special = dict(pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id,
                   eos_token_id=tokenizer.eos_token_id)
    config = Gemma3Config(
        text_config=_text_config(len(tokenizer), head_dim=16, sliding_window=16,
                                 layer_types=["sliding_attention", "full_attention"], **special),
        vision_config=dict(model_type="siglip_vision_model", hidden_size=TINY_HIDDEN, intermediate_size=2 * TINY_HIDDEN,
                           num_hidden_layers=2, num_attention_heads=2, patch_size=14, image_size=28,
                           vision_use_head=False),
        mm_tokens_per_image=4, boi_token_index=tokenizer.convert_tokens_to_ids("<start_of_image>"),
        eoi_token_index=tokenizer.convert_tokens_to_ids("<end_of_image>"),
        image_token_index=tokenizer.convert_tokens_to_ids("<image_soft_token>"),
    )
    model = _seeded_model(lambda: (BiGemma3 if bi else ColGemma3)(config), seed)
    model.save_pretrained(out)
    processor.save_pretrained(out)
    return out


def build_tiny_colgemma3(directory: str | Path, seed: int = 0) -> Path:
    """Save a tiny random ColGemma3 checkpoint and its processor in `directory`."""
    return _build(directory, seed, bi=False)


def build_tiny_bigemma3(directory: str | Path, seed: int = 0) -> Path:
    """Save a tiny random BiGemma3 checkpoint and its processor in `directory`."""
    return _build(directory, seed, bi=True)
