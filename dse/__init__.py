"""dse: find the right page in PDFs, slides and images by looking at the pages.

Quick start::

    import dse
    retriever = dse.Retriever.create("my-index", dse.load_encoder("bm25"))
    retriever.add(["docs/"])
    for hit in retriever.search("quarterly revenue", k=5):
        print(hit.source, hit.page, hit.score)
"""

from __future__ import annotations

__version__ = "0.1.0"

from dse.encoders import Encoder, ModelLoadError, list_encoders, load_encoder, register_encoder  # noqa: E402
from dse.storage.manifest import EncoderMismatchError, IndexFormatError  # noqa: E402
from dse.retrieve import AddReport, Failure, Hit, Retriever  # noqa: E402
from dse.serve.client import Client, RemoteError  # noqa: E402

__all__ = [
    "AddReport",
    "Client",
    "Encoder",
    "EncoderMismatchError",
    "Failure",
    "Hit",
    "RemoteError",
    "IndexFormatError",
    "ModelLoadError",
    "Retriever",
    "__version__",
    "list_encoders",
    "load_encoder",
    "register_encoder",
]
