"""Text for BM25, shared by the `bm25` encoder and the index's text side: the tokenizer and a page's text fields."""
