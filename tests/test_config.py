"""The shipped configs load, and name registered encoders with options they take."""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest

from dse.config import ConfigError, IndexConfig, load_config
from dse.encoders.registry import list_encoders

CONFIGS = sorted((Path(__file__).resolve().parents[1] / "configs").glob("*.yaml"))


def test_there_is_a_config_per_encoder_family() -> None:
    names = {p.stem for p in CONFIGS}
    assert {"bm25", "dse-qwen2", "colpali", "colqwen2", "colqwen2.5", "colsmol"} <= names


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_config_is_valid(path: Path) -> None:
    config = load_config(path)
    spec = list_encoders()[config.encoder]
    params = inspect.signature(spec.factory).parameters
    takes_any = any(p.kind is p.VAR_KEYWORD for p in params.values())
    assert takes_any or set(config.options) <= set(params), f"{path.name}: {set(config.options) - set(params)}"


def test_bad_configs_name_the_file_and_key(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    for text, match in [
        ("encoder: bm25\nextra: 1\n", "unknown key 'extra'"),
        ("options: [1, 2]\n", "'options' must be a dict"),
        ("ingest: {dpii: 3}\n", r"unknown ingest key\(s\) \['dpii'\]"),
        ("- a\n- b\n", "a config is a mapping"),
        ("encoder: [\n", "not valid YAML"),
    ]:
        bad.write_text(text)
        with pytest.raises(ConfigError, match=match) as info:
            load_config(bad)
        assert "bad.yaml" in str(info.value)
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "missing.yaml")


def test_overrides() -> None:
    config = IndexConfig(encoder="dse-qwen2", options={"dim": 1536, "model": "a"})
    merged = config.with_overrides(None, dim=512, model=None)
    assert merged.encoder == "dse-qwen2" and dict(merged.options) == {"dim": 512, "model": "a"}
    assert config.with_overrides("bm25").encoder == "bm25"
