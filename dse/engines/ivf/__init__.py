"""Inverted lists (IVF): k-means partitions of rows, probed nearest-centroid first."""
