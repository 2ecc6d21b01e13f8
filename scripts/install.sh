#!/usr/bin/env bash
# Installs dse on a fresh machine: poppler, tesseract, LibreOffice, Chromium, bubblewrap, qpdf
# (system packages) and a virtualenv in .venv.
# Idempotent: re-running only installs what is missing. Used by `make demo` and `make test`.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${VENV:-.venv}"
PYTHON="${PYTHON:-python3}"

# --- system packages (poppler renders PDFs and reads their text layer; chromium renders web pages)
missing=()
command -v pdftoppm >/dev/null 2>&1 || missing+=(poppler-utils)
command -v pdftotext >/dev/null 2>&1 || missing+=(poppler-utils)
# OCR of scans, slides exported as pictures and image files (pages without a text layer):
# tesseract and its English data (tesseract-ocr-eng; other languages: tesseract-ocr-LANG)
command -v tesseract >/dev/null 2>&1 || missing+=(tesseract-ocr tesseract-ocr-eng)
[ -n "${DSE_CHROMIUM:-}" ] || [ -x /usr/bin/chromium ] || missing+=(chromium)
# office documents: LibreOffice converts them to PDF; metric-compatible fonts (Arial, Times New
# Roman, Calibri, Cambria) keep their line and page breaks as in Word / PowerPoint
command -v soffice >/dev/null 2>&1 || missing+=(libreoffice-writer libreoffice-impress libreoffice-calc)
# containment of untrusted documents: bubblewrap runs LibreOffice with no network (and, in strict
# mode, none of your files); qpdf decrypts password-protected PDFs (the password goes to its
# stdin, never on a command line); util-linux's prlimit caps memory and CPU time of every tool
command -v bwrap >/dev/null 2>&1 || missing+=(bubblewrap)
command -v qpdf >/dev/null 2>&1 || missing+=(qpdf)
command -v prlimit >/dev/null 2>&1 || missing+=(util-linux)
if command -v dpkg-query >/dev/null 2>&1; then
  # data packages (no command to look for): the fonts, and tesseract's English data
  for package in fonts-liberation2 fonts-crosextra-carlito fonts-crosextra-caladea tesseract-ocr-eng; do
    dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "ok installed" || missing+=("$package")
  done
fi
if [ ${#missing[@]} -gt 0 ]; then
  if command -v apt-get >/dev/null 2>&1; then
    sudo=""; [ "$(id -u)" -ne 0 ] && sudo="sudo"
    packages=$(printf '%s\n' "${missing[@]}" | sort -u | tr '\n' ' ')
    echo "installing system packages: $packages" >&2
    $sudo apt-get update -qq
    # shellcheck disable=SC2086
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends $packages >/dev/null
  elif command -v brew >/dev/null 2>&1; then
    brew install poppler qpdf tesseract
    command -v soffice >/dev/null 2>&1 || brew install --cask libreoffice
  else
    echo "error: poppler is missing; install poppler-utils (pdftoppm, pdftotext) with your package manager" >&2
    exit 1
  fi
fi

# --- python environment
if [ ! -x "$VENV/bin/python" ]; then
  "$PYTHON" -m venv "$VENV"
fi
# Everything: the core (dse-search) with all its extras (visual encoders, web pages, ViDoRe, mteb,
# qdrant, notebooks) and the test tools. torch's CPU-only 2.13.0 wheel has no matching
# torchvision; pyproject excludes it, so pip takes the regular build (it runs on the CPU as well).
"$VENV/bin/python" -m pip install --quiet -e ".[all,test]" 2> >(grep -v "^WARNING: Location" >&2)
"$VENV/bin/python" -c "import importlib.metadata as m; m.version('dse-search')
import dse, ingest, torch, torchvision, colpali_engine, faiss, numba, bm25s, playwright, datasets, mteb" \
  || { echo "error: the dse environment in $VENV did not install correctly" >&2; exit 1; }
echo "dse installed in $VENV" >&2
