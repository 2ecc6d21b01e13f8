"""Inputs found by `bench/fuzz.py`, kept as regression tests.

Each finding is minimised (`bench/fuzz.py --target T --minimize FILE`) and stored under
tests/fuzz_fixtures/ when tiny (< 1 KB), else generated here. Two checks per finding:

- contained: `ingest.render` fails with an `IngestError` naming the file, no other exception
  escapes, and the batch around it goes on;
- typed: the error is not `ingest.render`'s catch-all "cannot render: KeyError: ..." wrapping of
  an unexpected exception, but a message that says what is wrong with the file (the three TIFF
  findings were fixed in `ingest/images.py`: "cannot read the image's frames: the file is
  malformed (...)").
"""

from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest
from PIL import Image

import ingest

FIXTURES = Path(__file__).parent / "fuzz_fixtures"
BENCH = Path(__file__).resolve().parents[1] / "bench"
pytestmark = pytest.mark.filterwarnings("ignore:Corrupt EXIF data:UserWarning")

FINDINGS = {
    # image target, 3 min of atheris: Pillow raises while `images.py` asks a TIFF for `n_frames`
    # (it parses every IFD), outside the module's error handling; the first frame is fine.
    "tiff-second-frame-no-width.tiff": "TypeError",  # "Missing dimensions"
    "tiff-second-frame-bad-layout.tiff": "SyntaxError",  # "unknown data organization"
    "tiff-second-frame-bad-compression.tiff": "KeyError",  # compression 517 not in Pillow's table
}


def _error(path: Path) -> ingest.IngestError:
    with pytest.raises(ingest.IngestError) as caught:
        list(ingest.render(path))
    return caught.value


@pytest.mark.parametrize("name", sorted(FINDINGS))
def test_fuzz_input_is_contained(name: str, tmp_path: Path) -> None:
    path = tmp_path / name
    shutil.copy(FIXTURES / name, path)
    error = _error(path)
    assert error.source == str(path) and str(error).startswith(str(path))
    # a folder holding it still renders its other files
    Image.new("RGB", (30, 20), "white").save(tmp_path / "fine.png")
    failures: list[ingest.IngestError] = []
    pages = list(ingest.render(tmp_path, on_error=failures.append))
    assert [Path(p.source).name for p in pages] == ["fine.png"]
    assert [Path(f.source).name for f in failures] == [name]


@pytest.mark.parametrize("name", sorted(FINDINGS))
def test_fuzz_input_fails_with_a_typed_error(name: str, tmp_path: Path) -> None:
    path = tmp_path / name
    shutil.copy(FIXTURES / name, path)
    error = _error(path)
    cause = error.__cause__
    assert not (cause is not None and type(cause).__name__ == FINDINGS[name]), str(error)
    assert not error.reason.startswith("cannot render: "), str(error)


def test_fixtures_are_tiny() -> None:
    assert sorted(path.name for path in FIXTURES.iterdir()) == sorted(FINDINGS)
    assert all(path.stat().st_size < 1024 for path in FIXTURES.iterdir())


def _harness() -> ModuleType:
    spec = importlib.util.spec_from_file_location("fuzz_harness", BENCH / "fuzz_harness.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["fuzz_harness"] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_harness_tells_findings_from_typed_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    """What the fuzzer counts: typed IngestErrors are fine; wrapped surprises, escapes and hangs are not."""
    import time

    import ingest.images

    harness = _harness()
    png = FIXTURES.parent / "web_fixtures" / "square.svg"  # not an image ingest reads: a typed error
    assert harness.run_one("image", png.read_bytes(), 10) is None
    assert harness.run_one("image", b"not an image at all", 10) is None
    assert harness.run_one("image", (FIXTURES / "tiff-second-frame-no-width.tiff").read_bytes(), 10) is None  # fixed
    monkeypatch.setattr(ingest.images, "to_rgb", lambda image: time.sleep(30))
    import io

    buffer = io.BytesIO()
    Image.new("RGB", (4, 4)).save(buffer, format="PNG")
    hang = harness.run_one("image", buffer.getvalue(), 0.5)
    assert hang is not None and hang.kind == "hang"
    monkeypatch.setattr(ingest.images, "to_rgb", lambda image: 1 / 0)  # not a decoding error images.py expects
    untyped = harness.run_one("image", buffer.getvalue(), 10)
    assert untyped is not None and untyped.kind == "untyped" and untyped.signature.startswith("ZeroDivisionError@")
    assert harness._image_suffix(b"II*\0rest") == ".tiff" and harness._office_suffix(b"PK..ppt/slides") == ".pptx"


def test_fuzz_driver_runs_for_a_bounded_time(tmp_path: Path) -> None:
    pytest.importorskip("atheris")
    seeds = tmp_path / "seeds"
    seeds.mkdir()
    Image.new("RGB", (8, 8), "red").save(seeds / "seed.png")
    out = tmp_path / "out"
    done = subprocess.run(
        [sys.executable, str(BENCH / "fuzz.py"), "--target", "image", "--seconds", "8", "--corpus", str(seeds),
         "--out", str(out)],
        capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    summary = json.loads(done.stdout.splitlines()[-1])
    assert summary["target"] == "image" and summary["seeds"] == 1 and summary["executions"] > 0
