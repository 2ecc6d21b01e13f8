"""`load_dataset`: one spec names a test set, a local page-labelled folder or a ViDoRe dataset."""

from __future__ import annotations

from pathlib import Path

from dse.evaluate.corpus import DatasetLoadError, EvalDataset
from dse.evaluate.local import QUESTION_FILES, load_local
from dse.evaluate.vidore import load_vidore


def load_dataset(spec: str | Path, *, split: str = "test", half: str | None = None) -> EvalDataset:
    """Load a test set from a spec: a local page-labelled folder, or a ViDoRe hub id / directory.

    A folder holding a `questions.jsonl` (or `.json`) is a local set (`load_local`); anything
    else is read as a ViDoRe dataset (`load_vidore`). `half` ("a"/"b", local sets only) keeps
    the questions about one half of the documents (split by a hash of their names), over the
    whole corpus.
    """
    path = Path(spec).expanduser()
    if path.is_dir() and any((path / name).is_file() for name in QUESTION_FILES):
        return load_local(path, half=half)
    if half is not None:
        raise DatasetLoadError(f"{spec}: --half splits local sets by document; not a local set")
    return load_vidore(str(spec), split=split)
