"""Compiled (numba) kernels for quantized search: Hamming-MaxSim, quantized MaxSim, Hamming scan, list scans."""

from dse.kernels.hamming import (
    hamming_maxsim,
    hamming_scores,
    int8_scores,
    kmeans_pages,
    maxsim_rows,
    top_hamming,
)
from dse.kernels.lists import dot_rows, hamming_spans, int8_spans

__all__ = [
    "dot_rows", "hamming_maxsim", "hamming_scores", "hamming_spans", "int8_scores", "int8_spans", "kmeans_pages",
    "maxsim_rows", "top_hamming",
]
