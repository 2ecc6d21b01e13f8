"""Office documents (Word, PowerPoint, Excel, OpenDocument, RTF) to PDF, through LibreOffice.

`convert_to_pdf` runs `soffice --headless --convert-to pdf` into a private temporary folder.
Every conversion runs with a LibreOffice profile of its own (`-env:UserInstallation`), so
parallel runs never share one, and is killed (its whole process group) when it takes longer
than `Limits.convert_timeout`.

LibreOffice runs contained (`Limits.sandbox`): in a network namespace (bubblewrap, else
`unshare`), so a document cannot fetch or send anything (linked images, OLE links,
`WEBSERVICE()`); in strict mode also in a bubblewrap jail that shows it only the system folders,
the document and its output (`ingest.sandbox.jail`); and always under memory, CPU-time and
file-size caps (`ingest.sandbox.tools`).
"""

from __future__ import annotations

import atexit
import os
import shutil
import signal
import tempfile
import threading
import zipfile
from pathlib import Path

from ingest.base import SourceFile
from ingest.errors import (
    ConversionError,
    LimitExceededError,
    MemoryLimitError,
    MissingConverterError,
    RenderTimeoutError,
    SandboxUnavailableError,
)
from ingest.limits import Limits
from ingest.sandbox import jail, tools

ZIP_EXTENSIONS = frozenset({".docx", ".pptx", ".xlsx", ".odt", ".odp", ".ods"})
"""Formats that are ZIP containers (OOXML, OpenDocument): anything else is refused at once."""

INSTALL_HINT = (
    "install LibreOffice to index office documents (Debian/Ubuntu: `apt-get install "
    "--no-install-recommends libreoffice-writer libreoffice-impress libreoffice-calc`; "
    "macOS: `brew install --cask libreoffice`)"
)
JAIL_HINT = (
    "install bubblewrap (`apt-get install bubblewrap`) and allow user namespaces, run as root, "
    "or choose another `ingest: sandbox` mode"
)
_MB = 1024 * 1024
_OLE2_MAGIC = bytes.fromhex("d0cf11e0a1b11ae1")
_NOISE = ("javaldx", "java may not function")  # LibreOffice's harmless start-up warnings


def find_soffice() -> str | None:
    """Return the path of LibreOffice's `soffice` (or `libreoffice`) program, or None."""
    return shutil.which("soffice") or shutil.which("libreoffice")


class _Profiles:
    """LibreOffice user profiles of this process, one per concurrent conversion, reused.

    A profile is created on first use (about half a second of LibreOffice's start-up) and
    handed to one conversion at a time; all are deleted when the process exits. A forked
    child starts a pool of its own.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pid = -1
        self._root = ""
        self._free: list[Path] = []
        self._count = 0

    def acquire(self) -> Path:
        """A profile folder no other conversion is using."""
        with self._lock:
            if self._pid != os.getpid():
                self._pid, self._free, self._count = os.getpid(), [], 0
                self._root = tempfile.mkdtemp(prefix="dse-soffice-")
                atexit.register(shutil.rmtree, self._root, True)
            if self._free:
                return self._free.pop()
            self._count += 1
            return Path(self._root) / f"profile-{self._count}"

    def release(self, profile: Path, reusable: bool) -> None:
        """Give a profile back; one whose LibreOffice was killed is deleted instead."""
        with self._lock:
            if reusable and profile.parent == Path(self._root):
                self._free.append(profile)
                return
        shutil.rmtree(profile, ignore_errors=True)


_PROFILES = _Profiles()


def _check_container(file: SourceFile, extension: str) -> None:
    """Refuse a ZIP-based document that is not a ZIP (LibreOffice would import it as text)."""
    if extension not in ZIP_EXTENSIONS or zipfile.is_zipfile(file.path):
        return
    with open(file.path, "rb") as handle:
        if handle.read(8) == _OLE2_MAGIC:
            return  # an encrypted OOXML file, or a legacy file misnamed: LibreOffice decides
    kind = extension[1:].upper()
    raise ConversionError(file.source, f"not a valid {kind} file (it is not a ZIP container)")


def _failure_detail(output: bytes) -> str:
    """The meaningful lines of LibreOffice's output, joined."""
    lines = output.decode("utf-8", "replace").splitlines()
    kept = [line.strip() for line in lines if line.strip() and not any(n in line for n in _NOISE)]
    return "; ".join(kept)[-300:] or "no output"


def _jail_binds(soffice: str) -> list[tuple[str, str]]:
    """Read-only binds a strict jail needs for LibreOffice installed outside the system folders."""
    real = os.path.realpath(soffice)
    top = real.split(os.sep)[1] if real.startswith(os.sep) else ""
    if top in jail.SYSTEM_FOLDERS:
        return []
    folder = os.path.dirname(real)
    if os.path.basename(folder) == "program":  # an installation: .../program/soffice
        folder = os.path.dirname(folder)
    binds = [(folder, folder)]
    if os.path.dirname(os.path.abspath(soffice)) != os.path.dirname(real):
        binds.append((os.path.abspath(soffice), os.path.abspath(soffice)))
    return binds


def _prefix(file: SourceFile, mode: str) -> list[str]:
    """The network namespace prefix for `mode` ("auto", "require", "off"); see `ingest.sandbox.jail`.

    Raises:
        SandboxUnavailableError: "require", and no network namespace works here.
    """
    if mode == "off":
        tools.warn_once("off", "sandbox='off': LibreOffice converts with network access")
        return []
    found = jail.network_prefix_available()
    if found is not None:
        return list(found[1])
    if mode == "require":
        raise SandboxUnavailableError(
            file.source, f"no network namespace can be made here: {JAIL_HINT}"
        )
    tools.warn_once(
        "none", f"LibreOffice converts documents with network access: no network namespace can "
        f"be made here ({JAIL_HINT})",
    )
    return []


def _command(
    file: SourceFile, soffice: str, folder: Path, profile: Path, mode: str
) -> list[str]:
    """LibreOffice's command line for one conversion, inside the sandbox `mode` asks for."""
    extension = file.path.suffix.lower()
    options = ["--headless", "--invisible", "--norestore", "--nologo", "--nodefault",
               "--nolockcheck", "--convert-to", "pdf", "--outdir", str(folder)]
    # a fixed ASCII name: LibreOffice names its output after the input, whatever the original name
    if mode == "strict":
        if not jail.strict_available():
            raise SandboxUnavailableError(
                file.source, f"the strict sandbox (bubblewrap) cannot run here: {JAIL_HINT}"
            )
        profile.mkdir(parents=True, exist_ok=True)
        document = f"/input/document{extension}"
        read_only = [(os.path.abspath(file.path), document), *_jail_binds(soffice)]
        writable = [(str(folder), str(folder)), (str(profile), str(profile))]
        prefix = jail.strict_prefix(read_only, writable)
    else:
        prefix = _prefix(file, mode)
        document = str(folder / f"document{extension}")
        os.symlink(os.path.abspath(file.path), document)
    return [*prefix, soffice, f"-env:UserInstallation={profile.as_uri()}", *options, document]


def _limit_failure(file: SourceFile, code: int, output: bytes, limits: Limits) -> None:
    """Raise the limit error for a conversion that hit its CPU, file-size or memory cap."""
    text = output.decode("utf-8", "replace").lower()
    if code in (-signal.SIGXCPU, 128 + signal.SIGXCPU):
        raise RenderTimeoutError(
            file.source, f"LibreOffice used more than {limits.convert_timeout:g} s of CPU time "
            "converting it and was stopped (raise the limit with --convert-timeout)",
        )
    if code in (-signal.SIGXFSZ, 128 + signal.SIGXFSZ):
        raise LimitExceededError(
            file.source, f"LibreOffice wrote a file over {limits.max_file_bytes / _MB:.0f} MB "
            "converting it (raise the limit with --max-file-mb)",
        )
    if any(sign in text for sign in ("bad_alloc", "out of memory", "failed to map segment")):
        raise MemoryLimitError(
            file.source, f"LibreOffice ran out of memory under the cap of {limits.max_memory_mb}"
            " MB converting it (raise it with `ingest: max_memory_mb`)",
        )


def convert_to_pdf(
    file: SourceFile, folder: Path, timeout: float, limits: Limits | None = None
) -> Path:
    """Convert an office document to a PDF inside `folder` with headless LibreOffice.

    LibreOffice runs in the sandbox `limits.sandbox` asks for, under an address-space cap
    (`limits.max_memory_mb`), a CPU-time cap of `timeout` seconds and a file-size cap
    (`limits.max_file_bytes`); it is killed with its whole process group after `timeout` s.

    Args:
        file: The office document.
        folder: An empty private folder for the conversion (the PDF is written there).
        timeout: Seconds before LibreOffice (its whole process group) is killed.
        limits: Memory, file size and sandbox (None: `Limits()`'s).

    Returns:
        The path of the PDF.

    Raises:
        MissingConverterError: LibreOffice is not installed.
        SandboxUnavailableError: The sandbox `limits.sandbox` requires cannot run here.
        LimitExceededError: LibreOffice hit its memory, CPU or file-size cap.
        ConversionError: The document is malformed, protected, or took longer than `timeout`.
    """
    limits = limits or Limits()
    extension = file.path.suffix.lower()
    _check_container(file, extension)
    soffice = find_soffice()
    if soffice is None:
        raise MissingConverterError(
            file.source, f"LibreOffice ('soffice') was not found: {INSTALL_HINT}"
        )
    profile = _PROFILES.acquire()
    reusable = False
    try:
        command = _command(file, soffice, folder, profile, limits.sandbox)
        caps = tools.Caps(limits.max_memory_bytes, timeout, limits.max_file_bytes)
        try:
            done = tools.run_tool(command, timeout=timeout, caps=caps, new_session=True,
                                    max_stdout=_MB)
        except tools.ToolTimeout:
            raise ConversionError(
                file.source,
                f"LibreOffice took longer than {timeout:g} s to convert it and was stopped "
                "(raise the limit with --convert-timeout or `ingest: convert_timeout`)",
            ) from None
        reusable = True
    finally:
        _PROFILES.release(profile, reusable)
    output = done.stdout + done.stderr
    _limit_failure(file, done.returncode, output, limits)
    pdf = folder / "document.pdf"
    if done.returncode != 0 or not pdf.is_file() or pdf.stat().st_size == 0:
        hint = "malformed, password-protected, or not really"
        raise ConversionError(
            file.source,
            f"LibreOffice could not convert it to PDF ({hint} a {extension[1:].upper()} file; "
            f"exit status {done.returncode}: {_failure_detail(output)})",
        )
    return pdf
