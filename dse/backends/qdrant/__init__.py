"""The Qdrant backend (issue #13): vectors and payloads in a Qdrant collection, the index directory
keeping the manifest and the page images. `QdrantIndex` (`backend`) implements `IndexBackend`."""
