"""Fuller stopword lists than bm25s's, for the "dse-2" tokenizer scheme.

bm25s's English list is Lucene's 33 words: it keeps the words questions are made of ("what",
"which", "how", "does", "from", "your"), and those then match every page that has them. The
Snowball project's English list (snowballstem.org, algorithms/english/stop.txt, BSD licence;
its contractions left out: the tokenizer splits them) drops them. Only English has one so far;
other languages keep bm25s's list.
"""

from __future__ import annotations

SNOWBALL_EN: frozenset[str] = frozenset("""
i me my myself we our ours ourselves you your yours yourself yourselves he him his himself she
her hers herself it its itself they them their theirs themselves what which who whom this that these
those am is are was were be been being have has had having do does did doing would should could
ought a an the and but if or because as until while of at by for with about against between into
through during before after above below to from up down in out on off over under again further then
once here there when where why how all any both each few more most other some such no nor not only
own same so than too very
""".split())

LISTS: dict[str, frozenset[str]] = {"en-snowball": SNOWBALL_EN}
"""Named lists beyond bm25s's (a `Tokenizer` `stopwords` value); each adds to bm25s's list of its language."""
