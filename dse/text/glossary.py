"""Query glossaries: a measure a question names, expanded to the words of the pages that report it.

Analysts ask for measures that no page names: "Nike's FY2021 inventory turnover" is computed
from "cost of sales" (the income statement) and "inventories" (the balance sheet); "3M's
FY2018 capital expenditure" is reported as "purchases of property, plant and equipment" (the
cash flow statement). A glossary maps such a measure to the statement line items it is computed
from (their textbook definitions), and the `bm25` encoder adds those line items to a question
that names it (`Tokenizer.tokenize_query`), so the statements' pages match. Pages are never
expanded, so a glossary changes no index: it is a query setting, recorded in the manifest's
encoder options (`glossary`) so that an index keeps the behaviour it was built with; indexes
that record none use "none".

Entries are matched on the tokenizer's words (stemmed, stopwords dropped), so "debt-to-equity",
"debt to equity" and "Debt/Equity" all match "debt equity"; each line item is tokenized on its
own (its words and their pairs), so no pair joins two line items.
"""

from __future__ import annotations

from typing import Mapping

FINANCE_1: Mapping[str, tuple[str, ...]] = {
    # liquidity
    "current ratio": ("total current assets", "total current liabilities", "balance sheets"),
    "quick ratio": ("cash and cash equivalents", "short-term investments", "accounts receivable",
                    "total current liabilities", "balance sheets"),
    "acid test": ("cash and cash equivalents", "short-term investments", "accounts receivable",
                  "total current liabilities", "balance sheets"),
    "cash ratio": ("cash and cash equivalents", "short-term investments", "total current liabilities",
                   "balance sheets"),
    "working capital": ("total current assets", "total current liabilities", "balance sheets"),
    # efficiency
    "inventory turnover": ("cost of sales", "inventories", "statements of income", "balance sheets"),
    "days inventory outstanding": ("cost of sales", "inventories", "statements of income", "balance sheets"),
    "receivables turnover": ("revenues", "accounts receivable", "statements of income", "balance sheets"),
    "days sales outstanding": ("revenues", "accounts receivable", "statements of income", "balance sheets"),
    "payables turnover": ("cost of sales", "accounts payable", "statements of income", "balance sheets"),
    "days payable outstanding": ("cost of sales", "accounts payable", "statements of income", "balance sheets"),
    "cash conversion cycle": ("inventories", "accounts receivable", "accounts payable", "cost of sales", "revenues"),
    "asset turnover": ("revenues", "total assets", "statements of income", "balance sheets"),
    # profitability
    "gross margin": ("gross profit", "revenues", "cost of sales", "statements of income"),
    "operating margin": ("operating income", "revenues", "statements of income"),
    "net profit margin": ("net income", "revenues", "statements of income"),
    "ebitda": ("operating income", "depreciation and amortization", "statements of income", "cash flows"),
    "ebit": ("operating income", "interest expense", "income before income taxes", "statements of income"),
    "return on assets": ("net income", "total assets"),
    "return on equity": ("net income", "total shareholders equity"),
    "effective tax rate": ("provision for income taxes", "income before income taxes"),
    "earnings per share": ("net income per share", "basic", "diluted"),
    "eps": ("net income per share", "basic", "diluted"),
    "dividend payout": ("dividends declared per share", "net income per share"),
    # leverage and coverage
    "total debt": ("long-term debt", "current portion of long-term debt", "short-term borrowings", "balance sheets"),
    "debt to equity": ("long-term debt", "total shareholders equity", "balance sheets"),
    "debt to assets": ("long-term debt", "total assets", "balance sheets"),
    "interest coverage": ("operating income", "interest expense"),
    "common equity": ("total shareholders equity", "common stock", "balance sheets"),
    # cash flows
    "capital expenditure": ("purchases of property and equipment", "investing activities", "statements of cash flows"),
    "capex": ("purchases of property and equipment", "investing activities", "statements of cash flows"),
    "free cash flow": ("net cash provided by operating activities", "purchases of property and equipment",
                       "statements of cash flows"),
    "operating cash flow": ("net cash provided by operating activities", "statements of cash flows"),
}
"""Financial measures -> the statement line items they are computed from (version 1)."""

GLOSSARIES: Mapping[str, Mapping[str, tuple[str, ...]]] = {"finance-1": FINANCE_1}
"""Named glossaries (a `Tokenizer` `glossary` value besides "none"); a changed list gets a new name."""
DEFAULT = "finance-1"
"""The glossary new `bm25` encoders use."""
NONE = "none"


def check_glossary(name: str) -> str:
    """`name` if it names a glossary (or is "none").

    Raises:
        ValueError: an unknown name (the message lists the known ones).
    """
    if name != NONE and name not in GLOSSARIES:
        raise ValueError(f"unknown BM25 query glossary {name!r}; use 'none' or one of {', '.join(GLOSSARIES)}")
    return name
