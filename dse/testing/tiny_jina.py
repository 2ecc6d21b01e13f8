"""A tiny random checkpoint that, like jina-embeddings-v4, needs its own code (`trust_remote_code`).

The directory holds `modeling_tiny_jina.py` (a config and a model class with the card's
`encode_text` / `encode_image` signatures), a `config.json` whose `auto_map` points at it, and
the weights: `AutoModel.from_pretrained(dir, trust_remote_code=True)` runs that file, as it runs
jina's. It exercises the opt-in, the manifest record and the encoder's calls offline; the numbers
it returns are meaningless.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

MODULE = "modeling_tiny_jina"

MODELING = '''"""Tiny random stand-in for jina-embeddings-v4's remote code (dse.testing.tiny_jina)."""

import torch
from PIL import Image
from torch import nn
from transformers import PretrainedConfig, PreTrainedModel


class TinyJinaConfig(PretrainedConfig):
    model_type = "tiny_jina_v4"

    def __init__(self, hidden_size=32, single_vector_dim=32, multi_vector_dim=8, patch=8, grid=4, **kwargs):
        super().__init__(**kwargs)
        self.hidden_size, self.single_vector_dim, self.multi_vector_dim = hidden_size, single_vector_dim, multi_vector_dim
        self.patch, self.grid = patch, grid


class TinyJinaModel(PreTrainedModel):
    config_class = TinyJinaConfig

    def __init__(self, config):
        super().__init__(config)
        self.embed = nn.Embedding(259, config.hidden_size)
        self.patches = nn.Linear(3 * config.patch * config.patch, config.hidden_size)
        self.adapters = nn.Embedding(3, config.hidden_size)  # retrieval, text-matching, code
        self.single = nn.Linear(config.hidden_size, config.single_vector_dim)
        self.multi = nn.Linear(config.hidden_size, config.multi_vector_dim)
        self.post_init()

    def _init_weights(self, module):
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, std=0.5)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)

    def _out(self, states, task, return_multivector, truncate_dim):
        task_id = {"retrieval": 0, "text-matching": 1, "code": 2}[task]
        out = []
        for h in states:
            h = torch.tanh(h + self.adapters.weight[task_id])
            if return_multivector:
                out.append(nn.functional.normalize(self.multi(h), dim=-1))
            else:
                v = self.single(h.mean(dim=0))[: truncate_dim or None]
                out.append(nn.functional.normalize(v, dim=-1))
        return out if return_multivector else torch.stack(out)

    def encode_text(self, texts, task=None, max_length=32768, batch_size=8, return_multivector=False,
                    return_numpy=False, truncate_dim=None, prompt_name=None):
        prefix = "Query: " if prompt_name == "query" else "Passage: "
        ids = [torch.tensor([256] + list((prefix + t).encode())[: max_length - 2] + [257]) for t in texts]
        return self._out([self.embed(i.to(self.device)) for i in ids], task, return_multivector, truncate_dim)

    def encode_image(self, images, task=None, batch_size=8, return_multivector=False, return_numpy=False,
                     truncate_dim=None, max_pixels=None):
        c, p, g = self.config, self.config.patch, self.config.grid
        states = []
        for image in images:
            x = torch.tensor(list(image.convert("RGB").resize((p * g, p * g)).getdata()), dtype=torch.float32) / 255
            x = x.reshape(g, p, g, p, 3).permute(0, 2, 1, 3, 4).reshape(g * g, p * p * 3)
            states.append(self.patches(x.to(self.device)))
        return self._out(states, task, return_multivector, truncate_dim)
'''


def build_tiny_jina_v4(directory: str | Path, seed: int = 0) -> Path:
    """Write the tiny remote-code checkpoint into `directory` (created) and return it."""
    import torch

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    (directory / f"{MODULE}.py").write_text(MODELING)
    spec = importlib.util.spec_from_file_location(f"_dse_build_{MODULE}", directory / f"{MODULE}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    try:
        spec.loader.exec_module(module)
        config = module.TinyJinaConfig()
        config.auto_map = {"AutoConfig": f"{MODULE}.TinyJinaConfig", "AutoModel": f"{MODULE}.TinyJinaModel"}
        torch.manual_seed(seed)
        model = module.TinyJinaModel(config)
        model.save_pretrained(directory)
    finally:
        sys.modules.pop(spec.name, None)
    (directory / f"{MODULE}.py").write_text(MODELING)  # save_pretrained may not copy it: the code is the point
    return directory
