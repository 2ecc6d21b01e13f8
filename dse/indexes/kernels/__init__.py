"""Compiled (numba) kernels for quantized search: Hamming-MaxSim, quantized MaxSim, Hamming scan."""

from dse.indexes.kernels.hamming import (
    hamming_maxsim,
    hamming_scores,
    int8_scores,
    kmeans_pages,
    maxsim_rows,
    top_hamming,
)

__all__ = ["hamming_maxsim", "hamming_scores", "int8_scores", "kmeans_pages", "maxsim_rows", "top_hamming"]
