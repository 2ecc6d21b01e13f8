"""Build tests/index_fixtures/bm25-dse1 (run with dse at 05bf67d: tokenizer dse-1, text fields v1) and print its rankings.

Usage: python build_bm25_dse1.py OUT_DIR  (the index is OUT_DIR/index; tests/test_bm25_old_index.py pins the output)
"""
import json, sys, shutil
from pathlib import Path
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from test_ingest import make_pdf, write
from dse import Retriever, load_encoder

out = Path(sys.argv[1]); shutil.rmtree(out, ignore_errors=True)
docs = out / "docs"
PAGES = {
    "AMAZON_2017_10K.pdf": ["Amazon.com annual report FY2017 Form 10-K.", "Net sales were $177,866 million; AWS segment revenue grew.",
                            "Capital expenditures of 11,955 were funded by operating cash flow."],
    "NETFLIX_2015_10K.pdf": ["Netflix 2015 annual report.", "Streaming revenue and content amortization rose in fiscal 2015.",
                             "Research and development expenses were 650,788 thousand."],
    "3M_2018_10K.pdf": ["3M Company FY2018 10K.", "Capital expenditure for 2018 was 1,577 million dollars.",
                        "The effective tax rate and the Q3'18 results."],
}
for name, pages in PAGES.items():
    write(docs / name, make_pdf(pages, size=(900, 200)))
QUERIES = ["What was 3M's FY2018 capital expenditure?", "Netflix research and development expenses 2015",
           "AWS revenue in the Amazon 10-K", "effective tax rate Q3", "content amortization", "operating cash flow"]
idx = out / "index"
with Retriever.create(idx, load_encoder("bm25"), image_size=0) as r:
    r.add([docs], workers=0)
with Retriever.open(idx) as r:
    want = [[(Path(h.source).name, h.page, round(float(h.score), 5)) for h in r.search(q, k=9, mode="text")] for q in QUERIES]
print(json.dumps(want))
