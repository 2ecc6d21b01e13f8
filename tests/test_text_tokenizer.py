"""The "dse-2" tokenizer scheme (new indexes' default), pinned token for token."""

from __future__ import annotations

import pytest

from dse.text.tokenizer import Tokenizer


@pytest.fixture(scope="module")
def tokenizer() -> Tokenizer:
    return Tokenizer()


@pytest.mark.parametrize("text, want", [
    ("What was 3M's FY2018 capital expenditure?",  # Snowball stopwords drop "what", "was"
     ["3m", "fy2018", "fy", "2018", "capit", "expenditur",
      "3m_fy2018", "fy2018_fy", "fy_2018", "2018_capit", "capit_expenditur"]),
    ("Q3'23 results", ["q3", "23", "result", "q3_23", "23_result"]),
    ("the 10-K and 10K", ["10k", "10k", "10k_10k"]),
    ("1,577 and 1.577", ["1577", "1577", "1577_1577"]),
    ("exam-\nple", ["exampl"]),  # hyphenated across a line break
    ("e\ufb00ective \ufb01nance", ["effect", "financ", "effect_financ"]),  # ligatures (NFKC)
    ("AMAZON_2017_10K", ["amazon", "2017", "10k", "amazon_2017", "2017_10k"]),
    ("", []),
])
def test_dse2_tokens(tokenizer: Tokenizer, text: str, want: list[str]) -> None:
    assert tokenizer.tokenize(text) == want


def test_dse2_is_the_default_and_recorded(tokenizer: Tokenizer) -> None:
    assert tokenizer.options() == {"language": "en", "stemmer": "english", "stopwords": "en-snowball",
                                   "scheme": "dse-2"}
    assert tokenizer.tokenize("what does it cost") == ["cost"]
    assert Tokenizer(stopwords="en").tokenize("what does it cost") == [  # bm25s's 33 words keep question words
        "what", "doe", "cost", "what_doe", "doe_cost"]
    assert Tokenizer(language="de").options()["stopwords"] == "de"  # no fuller list: bm25s's


def test_unknown_settings_name_the_choices() -> None:
    with pytest.raises(ValueError, match="en-snowball"):
        Tokenizer(stopwords="nope")
    with pytest.raises(ValueError, match="dse-2"):
        Tokenizer(scheme="nope")
