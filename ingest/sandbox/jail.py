"""Network namespaces and jails: the command prefixes that contain LibreOffice.

`network_prefix_available` finds the prefix that puts a program in a network namespace
(bubblewrap's `bwrap --unshare-net`, else `unshare -n`); `strict_prefix` builds, for strict mode,
a bubblewrap jail that also hides the user's files. Whether each works here is probed once per
process.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Sequence
from functools import cache

SYSTEM_FOLDERS = ("usr", "bin", "sbin", "lib", "lib32", "lib64", "libx32", "etc", "opt")
"""Top-level folders a strict jail shows, read-only (symbolic links are recreated as such)."""
HIDDEN_SYSTEM_FILES = ("/etc/shadow", "/etc/gshadow", "/etc/ssl/private")
"""Secrets under the system folders that a strict jail hides all the same."""


def _works(prefix: Sequence[str]) -> bool:
    """Whether `prefix + [true]` runs and exits 0 (a sandbox this machine allows)."""
    true = shutil.which("true") or "/bin/true"
    try:
        done = subprocess.run([*prefix, true], capture_output=True, timeout=20, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0


@cache
def network_prefix_available() -> tuple[str, tuple[str, ...]] | None:
    """`(name, prefix)` of the first network namespace that works here, or None.

    bubblewrap (`bwrap --dev-bind / / --unshare-net`: the file system as it is, no network but
    a loopback device that is down), else util-linux's `unshare --net` (as root) or
    `unshare --user --map-root-user --net` (as another user, where user namespaces are allowed).
    """
    bwrap = shutil.which("bwrap")
    if bwrap:
        prefix = (bwrap, "--dev-bind", "/", "/", "--unshare-net", "--unshare-ipc",
                  "--die-with-parent", "--")
        if _works(prefix):
            return "bwrap", prefix
    unshare = shutil.which("unshare")
    if unshare:
        user = () if os.geteuid() == 0 else ("--user", "--map-root-user")
        prefix = (unshare, *user, "--net", "--")
        if _works(prefix):
            return "unshare", prefix
    return None


@cache
def strict_available() -> bool:
    """Whether a strict bubblewrap jail (`strict_prefix`) can run here."""
    return shutil.which("bwrap") is not None and _works(strict_prefix([], []))


def strict_prefix(
    read_only: Sequence[tuple[str, str]], writable: Sequence[tuple[str, str]]
) -> list[str]:
    """A bubblewrap jail: no network, fresh pid/ipc/uts namespaces, an empty environment, and
    only the system folders (read-only, secrets hidden), a private /tmp, and the given binds.

    Args:
        read_only: `(host path, path inside)` pairs mounted read-only (the document, a program
            installed outside the system folders).
        writable: `(host folder, path inside)` pairs mounted read-write (output, profile).
    """
    args = [shutil.which("bwrap") or "bwrap", "--unshare-all", "--die-with-parent",
            "--new-session", "--clearenv"]
    for name in SYSTEM_FOLDERS:
        path = "/" + name
        if os.path.islink(path):
            args += ["--symlink", os.readlink(path), path]
        elif os.path.isdir(path):
            args += ["--ro-bind", path, path]
    args += ["--ro-bind-try", "/var/cache/fontconfig", "/var/cache/fontconfig"]
    for secret in HIDDEN_SYSTEM_FILES:
        if os.path.isdir(secret):
            args += ["--tmpfs", secret]
        elif os.path.exists(secret):
            args += ["--ro-bind", "/dev/null", secret]
    args += ["--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp"]
    for host, inside in read_only:
        args += ["--ro-bind", host, inside]
    for host, inside in writable:
        args += ["--bind", host, inside]
    env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": "/tmp"}
    env.update({key: os.environ[key] for key in ("LANG", "LC_ALL", "TZ") if key in os.environ})
    for key, value in env.items():
        args += ["--setenv", key, value]
    return [*args, "--"]
