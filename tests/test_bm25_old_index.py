"""An index built before dse-2 (tokenizer "dse-1", text fields version 1) opens and ranks as it did.

`index_fixtures/bm25-dse1` was built by dse at 05bf67d (main before the "dse-2" tokenizer and
text fields version 2) with `index_fixtures/build_bm25_dse1.py`; `BEFORE` is what that dse's
`Retriever.search(q, k=9, mode="text")` returned on it (source file, page, score rounded to 5
places). Opening it with today's `bm25` encoder (whose defaults are now "dse-2") must follow
its manifest: same tokenizer, same fields, no document scores, the same ranking.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from test_ingest import make_pdf, write

from dse import Retriever, load_encoder
from dse.storage.manifest import EncoderMismatchError

FIXTURE = Path(__file__).parent / "index_fixtures" / "bm25-dse1"
QUERIES = ["What was 3M's FY2018 capital expenditure?", "Netflix research and development expenses 2015",
           "AWS revenue in the Amazon 10-K", "effective tax rate Q3", "content amortization", "operating cash flow"]
BEFORE = [
    [("3M_2018_10K.pdf", 1, 2.5934), ("3M_2018_10K.pdf", 2, 2.20137), ("AMAZON_2017_10K.pdf", 3, 1.04997),
     ("3M_2018_10K.pdf", 3, 0.87104), ("AMAZON_2017_10K.pdf", 1, 0.50307)],
    [("NETFLIX_2015_10K.pdf", 3, 3.2321), ("NETFLIX_2015_10K.pdf", 1, 1.32037), ("NETFLIX_2015_10K.pdf", 2, 1.01123)],
    [("AMAZON_2017_10K.pdf", 2, 1.59109), ("AMAZON_2017_10K.pdf", 1, 0.58637), ("NETFLIX_2015_10K.pdf", 2, 0.56921),
     ("AMAZON_2017_10K.pdf", 3, 0.41699), ("3M_2018_10K.pdf", 1, 0.03008), ("NETFLIX_2015_10K.pdf", 1, 0.02352),
     ("3M_2018_10K.pdf", 2, 0.02128), ("3M_2018_10K.pdf", 3, 0.02128), ("NETFLIX_2015_10K.pdf", 3, 0.02128)],
    [("3M_2018_10K.pdf", 3, 3.14808)],
    [("NETFLIX_2015_10K.pdf", 2, 1.50233)],
    [("AMAZON_2017_10K.pdf", 3, 2.15531)],
]
OLD_OPTIONS = {"language": "en", "scheme": "dse-1", "stemmer": "english", "stopwords": "en"}


@pytest.fixture()
def old_index(tmp_path: Path) -> Path:
    directory = tmp_path / "index"
    shutil.copytree(FIXTURE, directory)
    return directory


def _ranking(r: Retriever) -> list[list[tuple[str, int, float]]]:
    return [[(Path(h.source).name, h.page, round(float(h.score), 5)) for h in r.search(q, k=9, mode="text")]
            for q in QUERIES]


def _assert_same(got: list, want: list) -> None:
    assert [[(name, page) for name, page, _ in hits] for hits in got] == [
        [(name, page) for name, page, _ in hits] for hits in want]
    for hits, expected in zip(got, want):
        assert [s for *_, s in hits] == pytest.approx([s for *_, s in expected], abs=2e-5)


@pytest.mark.parametrize("how", ["manifest", "bm25", "bm25-en"])
def test_old_index_opens_and_ranks_as_before(old_index: Path, how: str) -> None:
    manifest = (old_index / "manifest.json").read_text()
    encoder = {"manifest": None, "bm25": load_encoder("bm25"), "bm25-en": load_encoder("bm25", language="en")}[how]
    with Retriever.open(old_index, encoder) as r:
        assert r.encoder.options() == OLD_OPTIONS
        _assert_same(_ranking(r), BEFORE)
    assert (old_index / "manifest.json").read_text() == manifest  # nothing rewritten


def test_a_setting_given_that_differs_is_a_mismatch(old_index: Path) -> None:
    with pytest.raises(EncoderMismatchError, match="dse-2"):
        Retriever.open(old_index, load_encoder("bm25", scheme="dse-2"))
    with pytest.raises(EncoderMismatchError, match="stopwords"):
        Retriever.open(old_index, load_encoder("bm25", stopwords="en-snowball"))


def test_pages_added_to_an_old_index_are_indexed_as_it_was(old_index: Path, tmp_path: Path) -> None:
    """New pages get the old tokenizer and version 1's source-name field, and no document scores."""
    docs = tmp_path / "more"
    write(docs / "ADOBE_2016_10K.pdf", make_pdf(["Creative Cloud subscriptions grew in fiscal 2016."], size=(900, 200)))
    with Retriever.open(old_index, load_encoder("bm25")) as r:
        r.add([docs], workers=0)
        hits = r.search("adobe", k=3, mode="text")  # only its file name says "adobe" (version 1 field)
        assert [(Path(h.source).name, h.page) for h in hits] == [("ADOBE_2016_10K.pdf", 1)]
        assert r.index.tokenize(["FY2018"]) == [["fy2018", "fy", "2018"]]  # dse-1: no pairs
    manifest = json.loads((old_index / "manifest.json").read_text())
    assert manifest["encoder"]["options"] == OLD_OPTIONS
    assert manifest["store"]["text_fields"] == {"source_name": 1}
    assert "documents" not in manifest["engine"]
