"""The core install: dse without its extras (no torch), and dse where POSIX-only modules are missing.

The first tests block modules in a subprocess (`sys.modules[name] = None` makes their import fail);
the last one installs the core alone into a fresh virtualenv from PyPI and this source tree.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
import urllib.request
from pathlib import Path

import pytest

from dse.extras import DISTRIBUTION, MissingExtraError, install_command, needs_extras, require

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples" / "corpus"

HEAVY = ("torch", "torchvision", "transformers", "colpali_engine", "peft", "qwen_vl_utils", "faiss", "numba",
         "scipy", "playwright", "datasets", "mteb")
POSIX_ONLY = ("fcntl", "resource", "pwd", "grp", "termios")


def _run_blocked(blocked: tuple[str, ...], code: str, *args: str) -> subprocess.CompletedProcess:
    """Run `code` in a fresh interpreter where the modules `blocked` cannot be imported."""
    prelude = f"import sys\nfor _m in {blocked!r}:\n    sys.modules[_m] = None\n"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    return subprocess.run([sys.executable, "-c", prelude + textwrap.dedent(code), *args], capture_output=True,
                          text=True, env=env, timeout=300)


def _corpus(tmp_path: Path) -> Path:
    """Two small PDFs of the example corpus."""
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for name in ("bird-field-guide.pdf", "solar-installation-guide.pdf"):
        shutil.copy(EXAMPLES / name, corpus / name)
    return corpus


# ---------------------------------------------------------------- the extras module
def test_missing_extra_error_names_the_extra_and_the_command() -> None:
    with pytest.raises(MissingExtraError) as info:
        with needs_extras("the 'dse-qwen2' encoder"):
            raise ModuleNotFoundError("No module named 'transformers.models'", name="transformers.models")
    assert info.value.extra == "visual" and info.value.module == "transformers"
    assert str(info.value) == ("the 'dse-qwen2' encoder needs the 'visual' extra (transformers is not installed): "
                               f"pip install '{DISTRIBUTION}[visual]'")
    assert isinstance(info.value, ImportError)
    assert install_command("web") == "pip install 'dse-search[web]'"


def test_needs_extras_leaves_other_errors_alone() -> None:
    with pytest.raises(ModuleNotFoundError, match="not_an_extra"):
        with needs_extras("something"):
            raise ModuleNotFoundError("No module named 'not_an_extra'", name="not_an_extra")
    with pytest.raises(ImportError, match="cannot import name"):  # installed but broken: not "install the extra"
        with needs_extras("something"):
            raise ImportError("cannot import name 'X' from 'torch'", name="torch")
    require(("numpy",), "anything")  # installed: no error


# ---------------------------------------------------------------- the core without the heavy packages
def test_core_paths_need_none_of_the_extras(tmp_path: Path) -> None:
    corpus = _corpus(tmp_path)
    index = tmp_path / "idx"
    code = """
        import json, sys
        from pathlib import Path
        import dse, ingest
        from dse.cli.main import main
        from dse.extras import MissingExtraError
        from dse.engines.registry import engine_for

        corpus, index = sys.argv[1], sys.argv[2]
        assert main(["index", "--index", index, corpus, "--encoder", "bm25", "--no-progress"]) == 0
        assert main(["info", "--index", index]) == 0
        assert main(["search", "--index", index, "peregrine falcon dive", "-k", "1"]) == 0
        hit = dse.Retriever.open(index).search("torque for the mid clamps", k=1)[0]
        out = {"hit": [Path(hit.source).name, hit.page]}

        from fastapi.testclient import TestClient
        from dse.serve.app import create_app
        from dse.serve.service import ServeConfig
        with TestClient(create_app(ServeConfig(index=Path(index)))) as client:
            found = client.post("/v1/search", json={"query": "peregrine falcon dive", "k": 1}).json()["hits"][0]
        out["served"] = [found["source_name"], found["page"]]

        errors = []
        for attempt in (lambda: dse.load_encoder("dse-qwen2"), lambda: dse.load_encoder("colqwen2"),
                        lambda: engine_for("single"), lambda: engine_for("multi", {"mode": "cascade"})):
            try:
                attempt()
            except MissingExtraError as exc:
                errors.append([exc.extra, str(exc)])
        out["errors"] = errors
        print(json.dumps(out))
    """
    proc = _run_blocked(HEAVY, code, str(corpus), str(index))
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["hit"] == ["solar-installation-guide.pdf", 2]
    assert out["served"] == ["bird-field-guide.pdf", 1]
    assert [extra for extra, _ in out["errors"]] == ["visual"] * 4
    assert out["errors"][0][1] == ("the 'dse-qwen2' encoder needs the 'visual' extra (transformers is not "
                                   "installed): pip install 'dse-search[visual]'")
    assert "searching single-vector indexes needs the 'visual' extra (faiss" in out["errors"][2][1]


def test_cli_names_the_extra_a_visual_encoder_needs(tmp_path: Path) -> None:
    code = """
        import sys
        from dse.cli.main import main
        sys.exit(main(["index", "--index", sys.argv[1], sys.argv[2], "--encoder", "tiny-dse", "--no-progress"]))
    """
    proc = _run_blocked(HEAVY, code, str(tmp_path / "idx"), str(_corpus(tmp_path)))
    assert proc.returncode == 2, proc.stderr
    assert re.fullmatch(r"dse: error: the 'tiny-dse' encoder needs the 'visual' extra \((torch|transformers) is not "
                        r"installed\): pip install 'dse-search\[visual\]'", proc.stderr.strip()), proc.stderr


# ---------------------------------------------------------------- no fcntl (Windows)
def test_import_and_search_without_posix_modules(tmp_path: Path) -> None:
    import dse

    corpus = _corpus(tmp_path)
    index = tmp_path / "idx"
    with dse.Retriever.create(index, dse.load_encoder("bm25")) as retriever:
        retriever.add([corpus], progress=False)
    code = """
        import json, sys
        from pathlib import Path
        import dse, ingest
        from dse.storage.lock import LockUnavailableError

        retriever = dse.Retriever.open(sys.argv[1])
        hit = retriever.search("peregrine falcon dive", k=1)[0]
        try:
            retriever.add([sys.argv[2]], progress=False)
        except LockUnavailableError as exc:
            refused = str(exc)
        else:
            refused = None
        print(json.dumps({"hit": [Path(hit.source).name, hit.page], "refused": refused}))
    """
    proc = _run_blocked(POSIX_ONLY, code, str(index), str(EXAMPLES / "acme-q3-2025-report.pdf"))
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["hit"] == ["bird-field-guide.pdf", 1]
    assert out["refused"] and "POSIX file locks" in out["refused"]


# ---------------------------------------------------------------- a fresh venv with the core alone
def _pypi_reachable() -> bool:
    try:
        with urllib.request.urlopen("https://pypi.org/simple/pip/", timeout=15) as response:
            return response.status == 200
    except OSError:
        return False


def _clean_source(dst: Path) -> Path:
    """What a wheel of dse is built from: pyproject, README and the two packages (no .venv, .git, caches)."""
    dst.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, dst / name)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info")
    for package in ("dse", "ingest"):
        shutil.copytree(ROOT / package, dst / package, ignore=ignore)
    return dst


@pytest.mark.slow
def test_core_install_indexes_and_searches_pdfs_without_torch(tmp_path: Path) -> None:
    if not _pypi_reachable():
        pytest.skip("PyPI is not reachable: the core install cannot be built")
    source = _clean_source(tmp_path / "src")
    venv = tmp_path / "venv"
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, env=env, timeout=120)
    python = venv / "bin" / "python"
    install = subprocess.run([str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                              str(source)], capture_output=True, text=True, env=env, timeout=600)
    assert install.returncode == 0, install.stderr[-4000:]

    torch = subprocess.run([str(python), "-c", "import torch"], capture_output=True, text=True, env=env,
                           cwd=tmp_path)
    assert torch.returncode != 0 and "No module named 'torch'" in torch.stderr
    where = subprocess.run([str(python), "-c", "import dse, ingest, importlib.metadata as m; "
                            "print(dse.__file__, ingest.__file__, m.version('dse-search'))"],
                           capture_output=True, text=True, env=env, cwd=tmp_path, check=True).stdout.split()
    assert all(str(venv) in path for path in where[:2]) and where[2] == "0.1.0"

    dse_command = venv / "bin" / "dse"
    corpus, index = _corpus(tmp_path), tmp_path / "idx"
    indexed = subprocess.run([str(dse_command), "index", "--index", str(index), str(corpus), "--encoder", "bm25",
                              "--no-progress"], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)
    assert indexed.returncode == 0, indexed.stderr
    found = subprocess.run([str(dse_command), "search", "--index", str(index), "torque for the mid clamps", "-k", "1",
                            "--json"], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120)
    assert found.returncode == 0, found.stderr
    hit = json.loads(found.stdout)[0]
    assert (Path(hit["source"]).name, hit["page"]) == ("solar-installation-guide.pdf", 2)
