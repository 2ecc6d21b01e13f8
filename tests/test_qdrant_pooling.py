"""The Qdrant backend's pooled first stage: grid pooling (row and column means), its options."""

from __future__ import annotations

import numpy as np
import pytest

from dse.backends.qdrant.pooling import grid_pool
from dse.backends.qdrant.schema import QdrantOptionError, check_options


def test_grid_pool_rows_columns_and_extra_tokens() -> None:
    tokens = np.arange(11 * 2, dtype=np.float32).reshape(11, 2)  # 3 rows x 3 cols + 2 extra tokens
    rows, cols = grid_pool(tokens, 3)
    grid = tokens[:9].reshape(3, 3, 2)
    np.testing.assert_allclose(rows, np.concatenate([grid.mean(axis=1), tokens[9:]]))
    np.testing.assert_allclose(cols, np.concatenate([grid.mean(axis=0), tokens[9:]]))
    assert rows.dtype == np.float32 and rows.shape == (5, 2) and cols.shape == (5, 2)


def test_grid_pool_falls_back_to_the_page_mean() -> None:
    tokens = np.random.default_rng(0).standard_normal((3, 4)).astype(np.float32)
    rows, cols = grid_pool(tokens, 8)
    np.testing.assert_allclose(rows, tokens.mean(axis=0, keepdims=True), rtol=1e-6)
    np.testing.assert_allclose(cols, rows)


@pytest.mark.parametrize("options, message", [
    ({"pooling": "rows"}, "pooling 'rows'"),
    ({"pooling": "grid"}, "needs grid_rows"),
    ({"pooling": "grid", "grid_rows": 0}, "needs grid_rows"),
    ({"grid_rows": 32}, "only read with pooling: grid"),
])
def test_bad_pooling_options(options: dict, message: str) -> None:
    with pytest.raises(QdrantOptionError, match=message):
        check_options(options)


def test_pooling_is_recorded(tmp_path) -> None:
    pytest.importorskip("qdrant_client")
    from dse.backends import backend_class, open_backend
    from dse.storage.manifest import read_manifest

    encoder = {"name": "t", "kind": "multi", "model": "random", "dim": 4, "prompt_version": "1", "options": {}}
    options = {"qdrant": str(tmp_path / "q"), "pooling": "grid", "grid_rows": 4}
    backend_class("qdrant").create(tmp_path / "idx", encoder, options, image_size=0).close()
    assert read_manifest(tmp_path / "idx").store["qdrant"]["options"] == {"pooling": "grid", "grid_rows": 4}
    with open_backend(tmp_path / "idx") as index:
        assert index.options["pooling"] == "grid"
        names = index.client.get_collection(index.collection).config.params.vectors
        assert set(names) == {"mv", "rows", "cols"}
