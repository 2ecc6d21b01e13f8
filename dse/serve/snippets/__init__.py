"""Text snippets of the pages a search returns, with the words that match the query highlighted.

`pages`: a page's text prepared for snippets (`PageText`) and the result (`Snippet`). `windows`:
the snippet of one page (`snippet`). `tokens`: the per-word tokenizer cache. `cache`: snippets
kept per page and query tokens. `sources`: where a server's snippets take page texts and the
index's word forms from (`SnippetTexts`, shared by `dse serve` and `dse mcp`).
"""

from dse.serve.snippets.cache import SnippetCache
from dse.serve.snippets.pages import PageText, Snippet
from dse.serve.snippets.tokens import CachedTokenizer
from dse.serve.snippets.windows import snippet

__all__ = ["CachedTokenizer", "PageText", "Snippet", "SnippetCache", "snippet"]
