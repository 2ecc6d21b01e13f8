"""Compute kernels (numba, compiled on first call): MaxSim in every form (`maxsim`), scans, per-page k-means."""

from dse.kernels.clusters import kmeans_labels, kmeans_pages
from dse.kernels.hamming import hamming_scores, int8_scores, top_hamming
from dse.kernels.lists import dot_rows, hamming_spans, int8_spans
from dse.kernels.maxsim import hamming_maxsim, maxsim_dense, maxsim_pruned, maxsim_rows

__all__ = [
    "dot_rows", "hamming_maxsim", "hamming_scores", "hamming_spans", "int8_scores", "int8_spans", "kmeans_labels",
    "kmeans_pages", "maxsim_dense", "maxsim_pruned", "maxsim_rows", "top_hamming",
]
