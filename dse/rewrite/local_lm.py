"""A local transformers causal LM as the `llm` rewriter's generator: greedy, one prompt at a time.

The model is the local directory the user names: never a hub id, so nothing is downloaded (fetch
one first, e.g. `huggingface-cli download Qwen/Qwen2.5-0.5B-Instruct --local-dir DIR`). A tokenizer with a chat
template reads BRIGHT's chat (system + user message, generation prompt); one without reads the
prompt alone, as BRIGHT's `HFModel` does. Decoding is greedy (`do_sample=False`), so the same
weights and query give the same rewrite, which is what makes caching them sound.
"""

from __future__ import annotations

import hashlib
import json
import threading
from pathlib import Path
from typing import Any

from dse.rewrite.base import RewriteError


class LocalCausalLM:
    """Generates with `AutoModelForCausalLM.from_pretrained(model)`.

    Args:
        model: Local directory of a causal LM and its tokenizer.
        max_new_tokens: Tokens generated at most per rewrite.
        device: "auto" (cuda, mps, cpu), or a torch device.
        dtype: "auto" (bfloat16 on cuda, else float32), float32, float16, bfloat16.

    Raises:
        ValueError: max_new_tokens < 1.
        RewriteError: `model` is not a directory, or the model or its tokenizer does not load
            (the message names `model`).
    """

    def __init__(self, model: str, *, max_new_tokens: int = 512, device: str | None = "auto",
                 dtype: Any = "auto") -> None:
        from dse.encoders.base import resolve_device, resolve_dtype
        from dse.encoders.hub import ModelLoadError, load_pretrained
        from dse.encoders.identity import weights_identity
        from dse.extras import needs_extras

        if max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
        self.model_id = str(Path(model).expanduser())
        if not Path(self.model_id).is_dir():
            raise RewriteError(f"llm rewriter: model {model!r} is not a local directory; give the folder of a "
                               "causal LM (e.g. after `huggingface-cli download Qwen/Qwen2.5-0.5B-Instruct --local-dir "
                               "DIR`), or url= for a chat endpoint")
        self.max_new_tokens = int(max_new_tokens)
        self.device = resolve_device(device)
        with needs_extras("the llm rewriter's local model"):
            from transformers import AutoModelForCausalLM, AutoTokenizer
        torch_dtype = resolve_dtype(dtype, self.device)
        try:
            self.tokenizer = load_pretrained(AutoTokenizer.from_pretrained, self.model_id, "rewriter tokenizer")
            self.model = load_pretrained(AutoModelForCausalLM.from_pretrained, self.model_id, "rewriter model",
                                         dtype=torch_dtype).to(self.device).eval()
        except ModelLoadError as exc:
            raise RewriteError(f"llm rewriter: {exc}") from exc
        found = weights_identity(self.model_id, dtype=torch_dtype)
        weights = found.get("fingerprint") or f"{found.get('hub_id') or self.model_id}@{found.get('revision')}"
        files = _digest(found.get("files") or {})
        generation = _digest(self.model.generation_config.to_diff_dict())  # suppressed tokens, penalties, ...
        self._identity = (f"transformers {weights} tokenizer-files={files} generation-config={generation} "
                          f"dtype={found.get('dtype')} greedy max_new_tokens={self.max_new_tokens}")
        self._lock = threading.Lock()  # one generation at a time (server threads share the model)

    @property
    def identity(self) -> str:
        """The weights (content fingerprint), tokenizer files and decoding options."""
        return self._identity

    @property
    def uses_chat_template(self) -> bool:
        """True when the tokenizer has a chat template (the prompt goes in as a chat)."""
        return bool(getattr(self.tokenizer, "chat_template", None))

    def model_input(self, system: str, prompt: str) -> str:
        """The text the model reads: the chat through its template, else the prompt alone."""
        if not self.uses_chat_template:
            return prompt
        messages = [{"role": "system", "content": system}, {"role": "user", "content": prompt}]
        return str(self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True))

    def generate(self, system: str, prompt: str) -> str:
        """The model's greedy continuation of the prompt, special tokens dropped."""
        import torch

        text = self.model_input(system, prompt)
        with self._lock:
            inputs = self.tokenizer([text], return_tensors="pt", add_special_tokens=not self.uses_chat_template)
            inputs = inputs.to(self.device)
            pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else self.tokenizer.eos_token_id
            try:
                with torch.inference_mode():
                    out = self.model.generate(**inputs, max_new_tokens=self.max_new_tokens, do_sample=False,
                                              pad_token_id=pad)  # (1, prompt + new)
            except (RuntimeError, ValueError) as exc:
                raise RewriteError(f"llm rewriter: generation with {self.model_id!r} failed: {exc}") from exc
        new = out[0, inputs["input_ids"].shape[1]:]  # (new,)
        return str(self.tokenizer.decode(new, skip_special_tokens=True)).strip()


def _digest(value: Any) -> str:
    """A short SHA-256 of a JSON-ready value (keys sorted)."""
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()[:16]
