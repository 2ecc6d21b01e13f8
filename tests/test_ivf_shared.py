"""The one k-means of `dse.engines.ivf.lists` trains both the single-vector lists and the cascade's coarse lists.

Each must give exactly what its engine trained before they shared it (FAISS called directly),
so the centroids and list files of existing indexes stay those a new training makes.
"""

from __future__ import annotations

import numpy as np

from dse.engines.ivf import coarse, lists


def unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def test_single_vector_centroids_are_faiss_spherical_kmeans_renormalised() -> None:
    import faiss

    x = unit(np.random.default_rng(0).standard_normal((2000, 24)))
    km = faiss.Kmeans(24, 16, niter=12, spherical=True, seed=3, max_points_per_centroid=64, verbose=False)
    km.train(x)
    want = np.asarray(km.centroids, np.float32)
    want = want / np.maximum(np.linalg.norm(want, axis=1, keepdims=True), 1e-12)
    np.testing.assert_array_equal(lists.train_centroids(x, 16, seed=3), want)


def test_coarse_codebooks_are_faiss_kmeans_and_its_flat_assignment() -> None:
    import faiss

    x = unit(np.random.default_rng(1).standard_normal((3000, 16)))
    km = faiss.Kmeans(16, coarse.lists_for(3000), niter=8, spherical=True, seed=0, verbose=False,
                      max_points_per_centroid=32, min_points_per_centroid=1)
    km.train(x)
    codebook, codes = coarse.train(x)
    np.testing.assert_array_equal(codebook, np.asarray(km.centroids, np.float32))
    index = faiss.IndexFlatIP(16)
    index.add(codebook)
    np.testing.assert_array_equal(codes, index.search(x, 1)[1][:, 0].astype(np.uint16))
    # the codes are each token's best list, as the single-vector assignment finds it (up to near-ties)
    assert np.mean(codes == lists.assign(x, codebook)) > 0.99
