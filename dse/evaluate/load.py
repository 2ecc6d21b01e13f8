"""`load_dataset`: one spec names a test set, a local page-labelled folder or a ViDoRe dataset."""

from __future__ import annotations

from pathlib import Path

from dse.evaluate.corpus import EvalDataset
from dse.evaluate.local import QUESTION_FILES, load_local
from dse.evaluate.vidore import load_vidore


def load_dataset(spec: str | Path, *, split: str = "test") -> EvalDataset:
    """Load a test set from a spec: a local page-labelled folder, or a ViDoRe hub id / directory.

    A folder holding a `questions.jsonl` (or `.json`) is a local set (`load_local`); anything
    else is read as a ViDoRe dataset (`load_vidore`).
    """
    path = Path(spec).expanduser()
    if path.is_dir() and any((path / name).is_file() for name in QUESTION_FILES):
        return load_local(path)
    return load_vidore(str(spec), split=split)
