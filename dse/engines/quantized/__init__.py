"""Single-vector search on binary or int8 codes (optionally in IVF lists), rescored exactly (`engine`)."""

from dse.engines.quantized.engine import QuantizedFlatEngine

__all__ = ["QuantizedFlatEngine"]
