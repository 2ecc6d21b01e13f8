"""Names shared by the encoders and the index: no dependency on either."""

from __future__ import annotations

from typing import Literal

VectorKind = Literal["single", "multi", "text"]
"""What an encoder produces and an engine stores: one vector per page, a vector per token, or token lists."""
