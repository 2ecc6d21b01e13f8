"""A tiny random Qwen3-VL checkpoint laid out like `Qwen/Qwen3-VL-Embedding-2B`, built offline.

Same tokenizer as the tiny Qwen2-VL checkpoint (Qwen2-VL and Qwen3-VL share their special tokens),
Qwen3-VL-Instruct's chat template (no default system turn, unlike Qwen2-VL's), a real
`Qwen3VLProcessor` (16-pixel patches, 2x2 merge: one visual token per 32x32 pixels) and random
weights, saved as `Qwen3VLForConditionalGeneration` with tied embeddings (as the 2B model), so the
`model.*` keys load into Qwen3-VL-Embedding's own `Qwen3VLForEmbedding` and into `Qwen3VLModel`.
"""

from __future__ import annotations

from pathlib import Path

from dse.testing.tiny_dse import SPECIAL_TOKENS, build_tiny_tokenizer

TINY_QWEN3VL_HIDDEN = 64
"""Hidden size of the tiny text model: the full vector width of the tiny Qwen3-VL-Embedding checkpoint."""

# The chat template of Qwen3-VL-2B-Instruct (the base of Qwen3-VL-Embedding-2B), tool branches included.
QWEN3_VL_CHAT_TEMPLATE = (
    "{%- set image_count = namespace(value=0) %}\n"
    "{%- set video_count = namespace(value=0) %}\n"
    "{%- macro render_content(content, do_vision_count) %}\n"
    "    {%- if content is string %}\n"
    "        {{- content }}\n"
    "    {%- else %}\n"
    "        {%- for item in content %}\n"
    "            {%- if 'image' in item or 'image_url' in item or item.type == 'image' %}\n"
    "                {%- if do_vision_count %}\n"
    "                    {%- set image_count.value = image_count.value + 1 %}\n"
    "                {%- endif %}\n"
    "                {%- if add_vision_id %}Picture {{ image_count.value }}: {% endif -%}\n"
    "                <|vision_start|><|image_pad|><|vision_end|>\n"
    "            {%- elif 'video' in item or item.type == 'video' %}\n"
    "                {%- if do_vision_count %}\n"
    "                    {%- set video_count.value = video_count.value + 1 %}\n"
    "                {%- endif %}\n"
    "                {%- if add_vision_id %}Video {{ video_count.value }}: {% endif -%}\n"
    "                <|vision_start|><|video_pad|><|vision_end|>\n"
    "            {%- elif 'text' in item %}\n"
    "                {{- item.text }}\n"
    "            {%- endif %}\n"
    "        {%- endfor %}\n"
    "    {%- endif %}\n"
    "{%- endmacro %}\n"
    "{%- if tools %}\n"
    "    {{- '<|im_start|>system\\n' }}\n"
    "    {%- if messages[0].role == 'system' %}\n"
    "        {{- render_content(messages[0].content, false) + '\\n\\n' }}\n"
    "    {%- endif %}\n"
    "    {{- \"# Tools\\n\\nYou may call one or more functions to assist with the user query.\\n\\n"
    "You are provided with function signatures within <tools></tools> XML tags:\\n<tools>\" }}\n"
    "    {%- for tool in tools %}\n"
    "        {{- \"\\n\" }}\n"
    "        {{- tool | tojson }}\n"
    "    {%- endfor %}\n"
    "    {{- \"\\n</tools>\\n\\nFor each function call, return a json object with function name and arguments "
    "within <tool_call></tool_call> XML tags:\\n<tool_call>\\n{\\\"name\\\": <function-name>, "
    "\\\"arguments\\\": <args-json-object>}\\n</tool_call><|im_end|>\\n\" }}\n"
    "{%- else %}\n"
    "    {%- if messages[0].role == 'system' %}\n"
    "        {{- '<|im_start|>system\\n' + render_content(messages[0].content, false) + '<|im_end|>\\n' }}\n"
    "    {%- endif %}\n"
    "{%- endif %}\n"
    "{%- for message in messages %}\n"
    "    {%- set content = render_content(message.content, True) %}\n"
    "    {%- if (message.role == \"user\") or (message.role == \"system\" and not loop.first) %}\n"
    "        {{- '<|im_start|>' + message.role + '\\n' + content + '<|im_end|>' + '\\n' }}\n"
    "    {%- elif message.role == \"assistant\" %}\n"
    "        {{- '<|im_start|>' + message.role + '\\n' + content }}\n"
    "        {%- if message.tool_calls %}\n"
    "            {%- for tool_call in message.tool_calls %}\n"
    "                {%- if (loop.first and content) or (not loop.first) %}\n"
    "                    {{- '\\n' }}\n"
    "                {%- endif %}\n"
    "                {%- if tool_call.function %}\n"
    "                    {%- set tool_call = tool_call.function %}\n"
    "                {%- endif %}\n"
    "                {{- '<tool_call>\\n{\"name\": \"' }}\n"
    "                {{- tool_call.name }}\n"
    "                {{- '\", \"arguments\": ' }}\n"
    "                {%- if tool_call.arguments is string %}\n"
    "                    {{- tool_call.arguments }}\n"
    "                {%- else %}\n"
    "                    {{- tool_call.arguments | tojson }}\n"
    "                {%- endif %}\n"
    "                {{- '}\\n</tool_call>' }}\n"
    "            {%- endfor %}\n"
    "        {%- endif %}\n"
    "        {{- '<|im_end|>\\n' }}\n"
    "    {%- elif message.role == \"tool\" %}\n"
    "        {%- if loop.first or (messages[loop.index0 - 1].role != \"tool\") %}\n"
    "            {{- '<|im_start|>user' }}\n"
    "        {%- endif %}\n"
    "        {{- '\\n<tool_response>\\n' }}\n"
    "        {{- content }}\n"
    "        {{- '\\n</tool_response>' }}\n"
    "        {%- if loop.last or (messages[loop.index0 + 1].role != \"tool\") %}\n"
    "            {{- '<|im_end|>\\n' }}\n"
    "        {%- endif %}\n"
    "    {%- endif %}\n"
    "{%- endfor %}\n"
    "{%- if add_generation_prompt %}\n"
    "    {{- '<|im_start|>assistant\\n' }}\n"
    "{%- endif %}\n"
)


def qwen3vl_config(tokenizer: object, *, size: str = "tiny") -> object:
    """A `Qwen3VLConfig`: "tiny" (test size), or the full-size "2b" / "4b" architectures (bench).

    The special token ids come from `tokenizer`, so a full-size architecture can run behind the
    tiny checkpoint's processor.
    """
    from transformers import Qwen3VLConfig

    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS}  # type: ignore[attr-defined]
    if size == "tiny":
        text = {"hidden_size": TINY_QWEN3VL_HIDDEN, "intermediate_size": 2 * TINY_QWEN3VL_HIDDEN,
                "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 16,
                "vocab_size": len(tokenizer), "max_position_embeddings": 4096}  # type: ignore[arg-type]
        mrope = [4, 2, 2]  # sums to head_dim / 2
        vision = {"depth": 2, "hidden_size": 32, "intermediate_size": 64, "num_heads": 2,
                  "out_hidden_size": TINY_QWEN3VL_HIDDEN, "num_position_embeddings": 2304,
                  "deepstack_visual_indexes": [1]}
    else:
        text, vision = _FULL_SIZE[size]
        text = {**text, "vocab_size": 151936, "head_dim": 128, "max_position_embeddings": 262144}
        mrope = [24, 20, 20]
    return Qwen3VLConfig(
        text_config={
            **text,
            "rope_parameters": {"rope_type": "default", "rope_theta": 5000000.0, "mrope_section": mrope,
                                "mrope_interleaved": True},
            "bos_token_id": ids["<|endoftext|>"],
            "eos_token_id": ids["<|im_end|>"],
            "pad_token_id": ids["<|endoftext|>"],
        },
        vision_config={**vision, "patch_size": 16, "spatial_merge_size": 2, "temporal_patch_size": 2},
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
        tie_word_embeddings=True,
    )


# Qwen3-VL-2B-Instruct and -4B-Instruct (the bases of Qwen3-VL-Embedding-2B and of ColQwen3-4B).
_FULL_SIZE = {
    "2b": (
        {"hidden_size": 2048, "intermediate_size": 6144, "num_hidden_layers": 28, "num_attention_heads": 16,
         "num_key_value_heads": 8},
        {"depth": 24, "hidden_size": 1024, "intermediate_size": 4096, "num_heads": 16, "out_hidden_size": 2048,
         "num_position_embeddings": 2304, "deepstack_visual_indexes": [5, 11, 17]},
    ),
    "4b": (
        {"hidden_size": 2560, "intermediate_size": 9728, "num_hidden_layers": 36, "num_attention_heads": 32,
         "num_key_value_heads": 8},
        {"depth": 24, "hidden_size": 1024, "intermediate_size": 4096, "num_heads": 16, "out_hidden_size": 2560,
         "num_position_embeddings": 2304, "deepstack_visual_indexes": [5, 11, 17]},
    ),
}


def build_tiny_qwen3vl_embedding(directory: str | Path, seed: int = 0) -> Path:
    """Build a tiny random Qwen3-VL-Embedding checkpoint offline and save it into `directory`.

    Same `seed` gives identical files. Takes a few seconds on a CPU.

    Returns:
        The directory, loadable with `load_encoder("qwen3-vl-embedding", model=str(path))`.
    """
    import torch
    from transformers import (
        Qwen2VLImageProcessor,
        Qwen3VLForConditionalGeneration,
        Qwen3VLProcessor,
        Qwen3VLVideoProcessor,
    )

    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    tokenizer = build_tiny_tokenizer()
    tokenizer.chat_template = QWEN3_VL_CHAT_TEMPLATE
    torch.manual_seed(seed)
    model = Qwen3VLForConditionalGeneration(qwen3vl_config(tokenizer)).eval()  # random weights from the seed
    model.save_pretrained(out)
    # Qwen3-VL's image processor: 16-pixel patches, mean/std 0.5 (dse and the reference resize
    # with qwen_vl_utils and call it with do_resize=False, so its own size never applies).
    image_processor = Qwen2VLImageProcessor(
        patch_size=16, merge_size=2, temporal_patch_size=2, image_mean=[0.5] * 3, image_std=[0.5] * 3,
        min_pixels=4 * 32 * 32, max_pixels=16384 * 32 * 32,
    )
    video_processor = Qwen3VLVideoProcessor(patch_size=16, merge_size=2, temporal_patch_size=2)
    processor = Qwen3VLProcessor(
        image_processor=image_processor, tokenizer=tokenizer, video_processor=video_processor,
        chat_template=QWEN3_VL_CHAT_TEMPLATE,
    )
    processor.save_pretrained(out)
    return out
