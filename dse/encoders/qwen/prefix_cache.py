"""The fixed start of every text query, encoded once: a KV cache for the Qwen2-VL recipes.

DSE reads every text query as the same chat prefix (system prompt, a dummy image, `Query: `)
followed by the query's words. Under causal attention the prefix's keys and values do not depend
on what follows, so they are computed once and each query runs only its own tokens through the
decoder, attending to the cached prefix; the vision tower no longer runs per query. The hidden
states equal the full forward's up to float rounding (`tests/test_prefix_cache.py` checks it).

Positions are the model's own: Qwen2-VL's multimodal RoPE indices (`get_rope_index`) of the whole
sequence, prefix included, sliced to the query's tokens. A batch is re-padded after the prefix
(`[prefix, pads, query]`), the pads masked, so every row ends on its last token whichever side
the processor padded.
"""

from __future__ import annotations

import copy
import threading
from typing import Any, Callable

PrefixInputs = Callable[[str], Any]  # query text -> the processor's inputs of its one message
Backbone = Callable[[], Any]  # -> the model the encoder holds now (the cache follows a swapped model)


class QueryPrefixCache:
    """The key/value cache of the token prefix every text query of an encoder shares.

    Args:
        backbone: Returns the encoder's current `Qwen2VLModel` (the `.model` of
            `Qwen2VLForConditionalGeneration`: `language_model`, `get_rope_index`); the cache is
            rebuilt when it returns another model.
        inputs_of: Processor inputs (batch of one, unpadded) of one text query's message.
        mrope: Positions by multimodal RoPE (`get_rope_index`, DSE's forward); False: 1-D positions
            over the unpadded tokens (GME's text decoder called without position ids).
    """

    def __init__(self, backbone: Backbone, inputs_of: PrefixInputs, mrope: bool = True) -> None:
        self.backbone_of = backbone
        self.inputs_of = inputs_of
        self.mrope = mrope
        self._lock = threading.Lock()
        self._model: Any = None  # the model the state below was computed with
        self._state: dict[str, Any] | None = None

    # -- the prefix -----------------------------------------------------------------------------

    def _build(self, backbone: Any) -> dict[str, Any] | None:
        """Find the shared prefix (two different queries' common tokens) and run it once."""
        import torch

        if not hasattr(backbone, "language_model") or (self.mrope and not hasattr(backbone, "get_rope_index")):
            return None

        a, b = self.inputs_of("a"), self.inputs_of("b")
        ids_a, ids_b = a["input_ids"][0], b["input_ids"][0]  # (seq_a,), (seq_b,)
        n = min(len(ids_a), len(ids_b))
        differ = (ids_a[:n] != ids_b[:n]).nonzero()
        length = int(differ[0, 0]) if len(differ) else n
        types = a.get("mm_token_type_ids")
        if length == 0 or length >= len(ids_a) or (types is not None and bool(types[0, length:].any())):
            return None  # no shared prefix, or an image token after it: nothing to cache safely
        ids = ids_a[None, :length]  # (1, P)
        prefix_types = types[:, :length] if types is not None else None  # (1, P)
        with torch.inference_mode():
            if self.mrope:
                vision = {key: a[key] for key in ("pixel_values", "image_grid_thw") if a.get(key) is not None}
                if prefix_types is not None:
                    vision["mm_token_type_ids"] = prefix_types
                out = backbone(input_ids=ids, attention_mask=torch.ones_like(ids), use_cache=True, **vision)
                backbone.rope_deltas = None  # a later full forward computes its own
            else:
                lm = backbone.language_model
                out = lm(inputs_embeds=lm.embed_tokens(ids), attention_mask=torch.ones_like(ids), use_cache=True)
        cache = getattr(out, "cache", None) or getattr(out, "past_key_values", None)
        if cache is None:
            return None
        return {"ids": ids, "types": prefix_types, "grid": a.get("image_grid_thw"), "cache": cache, "model": backbone}

    def state(self) -> dict[str, Any] | None:
        """The prefix's ids and cache for the current model, built on first use (None: nothing to cache)."""
        backbone = self.backbone_of()
        if self._model is not backbone:
            with self._lock:
                if self._model is not backbone:
                    self._state = self._build(backbone) if backbone is not None else None
                    self._model = backbone
        state = self._state
        return state if state is not None and state["model"] is backbone else None

    # -- queries --------------------------------------------------------------------------------

    def last_states(self, inputs: Any) -> Any | None:
        """Last-token hidden states of a batch of text queries, or None if a row does not start with the prefix.

        Args:
            inputs: The processor's inputs for the batch (left or right padded), as the full
                forward takes them.

        Returns:
            (batch, hidden) tensor, the state of each row's last real token; None when a row
            does not begin with the cached prefix or is no longer than it (the caller then runs
            the full forward).
        """
        import torch

        state = self.state()
        if state is None or inputs.get("pixel_values_videos") is not None:
            return None
        ids, mask = inputs["input_ids"], inputs["attention_mask"]  # (batch, seq)
        prefix_ids = state["ids"][0].to(ids.device)  # (P,)
        length = len(prefix_ids)
        suffixes = []
        for row, keep in zip(ids, mask.bool()):
            real = row[keep]  # (tokens,) this row's tokens, padding removed
            if len(real) <= length or not torch.equal(real[:length], prefix_ids):
                return None
            suffixes.append(real[length:])  # (S_i,)
        batch, width = len(suffixes), max(len(t) for t in suffixes)
        suffix_ids = torch.zeros(batch, width, dtype=ids.dtype, device=ids.device)  # (batch, S), left padded
        suffix_mask = torch.zeros(batch, width, dtype=mask.dtype, device=mask.device)  # (batch, S)
        for i, tokens in enumerate(suffixes):
            suffix_ids[i, width - len(tokens):] = tokens
            suffix_mask[i, width - len(tokens):] = 1
        full_mask = torch.cat([torch.ones(batch, length, dtype=mask.dtype, device=mask.device), suffix_mask], 1)
        positions = self._positions(state, suffix_ids, full_mask)[:, :, length:]  # (3, batch, S)
        cache = copy.deepcopy(state["cache"])
        if batch > 1:
            cache.batch_repeat_interleave(batch)
        lm = state["model"].language_model
        with torch.inference_mode():
            out = lm(
                inputs_embeds=lm.embed_tokens(suffix_ids), attention_mask=full_mask,  # (batch, S, hidden), (batch, P+S)
                position_ids=positions, cache=cache, use_cache=True,
            )
        return out.last_hidden_state[:, -1]  # (batch, hidden)

    def _positions(self, state: dict[str, Any], suffix_ids: Any, full_mask: Any) -> Any:
        """Position ids of `[prefix, suffix]` for every row: (3, batch, P+S)."""
        import torch

        batch = suffix_ids.shape[0]
        prefix_ids = state["ids"].to(suffix_ids.device).expand(batch, -1)  # (batch, P)
        full_ids = torch.cat([prefix_ids, suffix_ids], dim=1)  # (batch, P+S)
        if not self.mrope or state["grid"] is None:
            flat = (full_mask.long().cumsum(-1) - 1).masked_fill(full_mask == 0, 1)  # (batch, P+S)
            return flat[None].expand(3, -1, -1)  # (3, batch, P+S)
        types = torch.cat([state["types"].expand(batch, -1), torch.zeros_like(suffix_ids)], dim=1)  # (batch, P+S)
        grid = state["grid"].repeat(batch, 1)  # (batch * images, 3)
        positions, _ = state["model"].get_rope_index(
            full_ids, mm_token_type_ids=types, image_grid_thw=grid, attention_mask=full_mask
        )
        return positions  # (3, batch, P+S)
