"""Text snippets of the pages a search returns, with the words that match the query highlighted.

`windows`: the snippet of one page (`snippet`, `PageText`), the per-word tokenizer cache and the
snippet cache. `sources`: where a server's snippets take page texts and the index's word forms from.
"""

from dse.serve.snippets.windows import CachedTokenizer, PageText, Snippet, SnippetCache, snippet

__all__ = ["CachedTokenizer", "PageText", "Snippet", "SnippetCache", "snippet"]
