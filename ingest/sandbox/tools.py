"""Run converters and renderers contained: resource caps, time limits, bounded output.

`run_tool` runs one program (pdfinfo, pdftoppm, pdftotext, qpdf, LibreOffice) under an
address-space, CPU time and file-size cap (`prlimit` from util-linux, else `setrlimit` in the
child), stops it at its time limit, and bounds what it may print. The command prefixes that also
cut a program off the network or jail it are `ingest.sandbox.jail`'s.
"""

from __future__ import annotations

import logging
import math
import os
import selectors
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import cache

try:
    import resource
except ImportError:  # Windows: no rlimits, so no caps are set there
    resource = None  # type: ignore[assignment]

logger = logging.getLogger(__name__)

MAX_STDERR_BYTES = 64 * 1024
"""What is kept of a tool's error output (the rest is read and dropped)."""

_RUNNING: dict[subprocess.Popen, bool] = {}  # program -> killed with its process group
_RUNNING_LOCK = threading.Lock()
_WARNED: set[str] = set()


@dataclass(frozen=True)
class Caps:
    """Resource caps of one process (None: no cap).

    Attributes:
        memory_bytes: Address space (RLIMIT_AS).
        cpu_seconds: CPU time (RLIMIT_CPU; the kernel kills the process past it).
        file_bytes: Largest file it may write (RLIMIT_FSIZE).
    """

    memory_bytes: int | None = None
    cpu_seconds: float | None = None
    file_bytes: int | None = None

    def rlimits(self) -> list[tuple[int, str, int]]:
        """`(resource, prlimit flag, value)` for each cap set, lowered to this process's hard
        limits (a child cannot raise them)."""
        if resource is None:
            return []
        wanted = [
            (resource.RLIMIT_AS, "--as", self.memory_bytes),
            (resource.RLIMIT_CPU, "--cpu", None if self.cpu_seconds is None
             else math.ceil(self.cpu_seconds) + 1),
            (resource.RLIMIT_FSIZE, "--fsize", self.file_bytes),
        ]
        out = []
        for kind, flag, value in wanted:
            if value is not None:
                hard = resource.getrlimit(kind)[1]
                capped = value if hard == resource.RLIM_INFINITY else min(value, hard)
                out.append((kind, flag, capped))
        return out


@dataclass(frozen=True)
class ToolResult:
    """What a program run by `run_tool` did.

    Attributes:
        returncode: Its exit status (negative: killed by that signal).
        stdout: Its output (at most `max_stdout` bytes).
        stderr: The start of its error output.
        seconds: Wall-clock time it ran.
        truncated: It printed more than `max_stdout` and was stopped.
    """

    returncode: int
    stdout: bytes
    stderr: bytes
    seconds: float
    truncated: bool = False


class ToolTimeout(Exception):
    """A program ran past its time limit and was killed."""

    def __init__(self, args: Sequence[str], timeout: float) -> None:
        super().__init__(f"{os.path.basename(args[0])} ran longer than {timeout:g} s")
        self.timeout = timeout


@cache
def _prlimit() -> str | None:
    return shutil.which("prlimit")


def limited_command(
    args: Sequence[str], caps: Caps
) -> tuple[list[str], Callable[[], None] | None]:
    """The command that runs `args` under `caps`, and the preexec function it needs (if any).

    `prlimit` (util-linux) sets the caps and execs the program; without it they are set in the
    forked child with `setrlimit` (fine in single-threaded callers).
    """
    rlimits = caps.rlimits()
    if not rlimits:
        return list(args), None
    prlimit = _prlimit()
    if prlimit is not None:
        return [prlimit, *(f"{flag}={value}" for _, flag, value in rlimits), "--", *args], None

    def preexec() -> None:
        for kind, _, value in rlimits:
            try:
                resource.setrlimit(kind, (value, value))
            except (ValueError, OSError):
                pass  # a cap this system does not support (RLIMIT_AS on macOS)

    return list(args), preexec


def _kill(process: subprocess.Popen, group: bool) -> None:
    """Kill a program (and, for `group`, everything in its process group), then reap it."""
    try:
        if group:
            os.killpg(process.pid, signal.SIGKILL)
        else:
            process.kill()
    except (ProcessLookupError, PermissionError):
        pass
    process.wait()


def kill_running() -> None:
    """Kill every program this process is running through `run_tool` (a worker being stopped)."""
    with _RUNNING_LOCK:
        running = list(_RUNNING.items())
    for process, group in running:
        try:
            if group:
                os.killpg(process.pid, signal.SIGKILL)
            else:
                process.kill()
        except OSError:
            pass


def _collect(
    process: subprocess.Popen, args: Sequence[str], deadline: float, timeout: float,
    max_stdout: int | None,
) -> tuple[bytes, bytes, bool]:
    """Read the program's output until it closes both pipes, it prints too much, or time is up."""
    out, err = bytearray(), bytearray()
    with selectors.DefaultSelector() as selector:
        selector.register(process.stdout, selectors.EVENT_READ, out)  # type: ignore[arg-type]
        selector.register(process.stderr, selectors.EVENT_READ, err)  # type: ignore[arg-type]
        while selector.get_map():
            left = deadline - time.monotonic()
            if left <= 0:
                raise ToolTimeout(args, timeout)
            for key, _ in selector.select(left):
                data = os.read(key.fd, 1 << 16)
                if not data:
                    selector.unregister(key.fileobj)
                elif key.data is err:
                    err += data[: max(0, MAX_STDERR_BYTES - len(err))]
                elif max_stdout is not None and len(out) + len(data) > max_stdout:
                    out += data[: max_stdout - len(out)]
                    return bytes(out), bytes(err), True
                else:
                    out += data
    return bytes(out), bytes(err), False


def run_tool(
    args: Sequence[str],
    *,
    timeout: float,
    caps: Caps,
    stdin: bytes | None = None,
    max_stdout: int | None = None,
    new_session: bool = False,
    env: Mapping[str, str] | None = None,
) -> ToolResult:
    """Run a program under `caps`; kill it at `timeout` seconds or past `max_stdout` bytes.

    Args:
        args: The command line (never a secret on it: pass those through `stdin`).
        timeout: Wall-clock seconds it may run.
        caps: Its memory, CPU and file-size caps.
        stdin: Bytes written to its standard input (then closed); None: no input.
        max_stdout: Most bytes of output kept; past it the program is stopped (`truncated`).
        new_session: Run it in a session of its own and kill its whole process group (for
            programs that start others, such as LibreOffice).
        env: Variables set for it on top of this process's environment (None: inherited as is).

    Raises:
        ToolTimeout: It ran longer than `timeout` (it has been killed).
        OSError: It could not be started.
    """
    command, preexec = limited_command(args, caps)
    start = time.monotonic()
    process = subprocess.Popen(
        command, stdin=subprocess.DEVNULL if stdin is None else subprocess.PIPE,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=new_session,
        preexec_fn=preexec,  # noqa: PLW1509 - only without prlimit
        env=None if env is None else {**os.environ, **env},
    )
    with _RUNNING_LOCK:
        _RUNNING[process] = new_session
    try:
        if stdin is not None and process.stdin is not None:
            try:
                process.stdin.write(stdin)
            except BrokenPipeError:
                pass
            finally:
                process.stdin.close()
        out, err, truncated = _collect(process, args, start + timeout, timeout, max_stdout)
        if truncated:
            _kill(process, new_session)
        else:
            try:
                process.wait(max(0.01, start + timeout - time.monotonic()))
            except subprocess.TimeoutExpired:
                raise ToolTimeout(args, timeout) from None
    except BaseException:
        _kill(process, new_session)
        raise
    finally:
        with _RUNNING_LOCK:
            _RUNNING.pop(process, None)
        for pipe in (process.stdout, process.stderr):
            if pipe is not None:
                pipe.close()
    return ToolResult(process.returncode, out, err, time.monotonic() - start, truncated)


def set_memory_cap(memory_bytes: int) -> None:
    """Cap this process's address space (a render worker's), never above its hard limit."""
    if resource is None:
        warn_once("worker-memory", "render workers run without a memory cap: this platform has no rlimits")
        return
    hard = resource.getrlimit(resource.RLIMIT_AS)[1]
    value = memory_bytes if hard == resource.RLIM_INFINITY else min(memory_bytes, hard)
    try:
        resource.setrlimit(resource.RLIMIT_AS, (value, value))
    except (ValueError, OSError) as exc:
        warn_once("worker-memory", f"render workers run without a memory cap: {exc}")


def warn_once(key: str, message: str) -> None:
    """Log `message` as a warning the first time `key` is seen in this process."""
    if key not in _WARNED:
        _WARNED.add(key)
        logger.warning("%s", message)
