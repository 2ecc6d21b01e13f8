"""How Chromium is started: inside its sandbox by default, as an unprivileged user when dse runs as root.

Chromium refuses to start its sandbox as root ("Running as root without --no-sandbox is not
supported"). Run as root (a container, a CI job), dse starts Chromium through a small wrapper
that drops to an unprivileged user with util-linux's `setpriv` (no capabilities, no new
privileges; `$DSE_CHROMIUM_USER`, default `nobody`), where Chromium's own user-namespace
sandbox starts as usual. That user needs no access to your files: local pages are read by dse
and handed to the browser (see `ingest.web.local`). Where the sandbox cannot start at all (user
namespaces disabled, no setuid helper), launching fails with a `MissingToolError` that says what
to do; running without the sandbox is an explicit choice (`WebOptions(sandbox=False)`,
`$DSE_CHROMIUM_SANDBOX=0`) and logs a warning.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shlex
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from ingest.errors import MissingToolError

logger = logging.getLogger(__name__)

SANDBOX_ENV = "DSE_CHROMIUM_SANDBOX"
"""Set to 0 / false / no / off to run Chromium without its sandbox (not recommended)."""
USER_ENV = "DSE_CHROMIUM_USER"
"""The unprivileged user (name or uid) Chromium runs as when dse runs as root."""
DEFAULT_USER = "nobody"
_OFF = ("0", "false", "no", "off")
_SANDBOX_HINTS = ("sandbox", "namespace", "setpriv", "clone", "zygote", "credentials")

_WRAPPER = """#!/bin/sh
# Written by dse (ingest/web/sandbox.py): start Chromium as {user} so that its sandbox can start.
for arg do
  case "$arg" in --user-data-dir=*) profile="${{arg#--user-data-dir=}}" ;; esac
done
if [ -n "$profile" ]; then
  chown -R {uid}:{gid} "$profile" || exit 70
  HOME="$profile"; export HOME
fi
unset XDG_CONFIG_HOME XDG_CACHE_HOME XDG_DATA_HOME XDG_RUNTIME_DIR
exec {setpriv} --reuid={uid} --regid={gid} --clear-groups --inh-caps=-all --bounding-set=-all \\
  --no-new-privs -- {chromium} "$@"
"""


def sandbox_wanted(option: bool | None, default: bool | None = None) -> bool:
    """Resolve the sandbox choice: `option`, else `default`, else `$DSE_CHROMIUM_SANDBOX`, else on."""
    for choice in (option, default):
        if choice is not None:
            return bool(choice)
    return os.environ.get(SANDBOX_ENV, "1").strip().lower() not in _OFF


@dataclass(frozen=True)
class LaunchPlan:
    """What `playwright.chromium.launch` is given.

    Attributes:
        chromium: The Chromium executable.
        sandbox: Whether Chromium's sandbox is on (Playwright's `chromium_sandbox`).
        user: The unprivileged user Chromium runs as, or None (this process's user).
        script: The wrapper that starts Chromium as `user` (None: Chromium is started directly).
    """

    chromium: str
    sandbox: bool
    user: str | None = None
    script: str | None = None

    def describe(self) -> str:
        """One line for messages: how Chromium runs."""
        mode = "with its sandbox" if self.sandbox else "WITHOUT its sandbox"
        return f"{self.chromium} {mode}" + (f" as user '{self.user}'" if self.user else "")


def _unprivileged_user() -> tuple[str, int, int]:
    """`(name, uid, gid)` of `$DSE_CHROMIUM_USER` (default nobody).

    Raises:
        MissingToolError: The user does not exist or is root.
    """
    import pwd  # POSIX only: imported here so that `import ingest` works on Windows

    wanted = os.environ.get(USER_ENV, "").strip() or DEFAULT_USER
    try:
        entry = pwd.getpwuid(int(wanted)) if wanted.isdigit() else pwd.getpwnam(wanted)
    except (KeyError, ValueError):
        raise MissingToolError(
            f"dse runs as root, so Chromium must run as an unprivileged user to keep its sandbox, "
            f"but user '{wanted}' does not exist: create it, set ${USER_ENV} to another user, or "
            f"run dse as a normal user"
        ) from None
    if entry.pw_uid == 0:
        raise MissingToolError(f"${USER_ENV} must name an unprivileged user, not '{wanted}' (uid 0)")
    return entry.pw_name, entry.pw_uid, entry.pw_gid


def plan_launch(chromium: str, sandbox: bool) -> LaunchPlan:
    """Decide how to start `chromium` (as root with the sandbox: through the setpriv wrapper).

    Raises:
        MissingToolError: Root without `setpriv` or without an unprivileged user.
    """
    if not sandbox or os.geteuid() != 0:
        return LaunchPlan(chromium, sandbox)
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        raise MissingToolError(
            "dse runs as root and needs `setpriv` (util-linux) to start Chromium as an unprivileged "
            f"user with its sandbox: install util-linux, run dse as a normal user, or turn the "
            f"sandbox off for trusted pages only ({SANDBOX_ENV}=0)"
        )
    name, uid, gid = _unprivileged_user()
    quoted = {"setpriv": shlex.quote(setpriv), "chromium": shlex.quote(chromium)}
    return LaunchPlan(chromium, True, name, _WRAPPER.format(user=name, uid=uid, gid=gid, **quoted))


@contextlib.contextmanager
def executable_for(plan: LaunchPlan) -> Iterator[str]:
    """The program to give Playwright: Chromium, or the wrapper in a private folder (mode 0700).

    The wrapper only runs until it execs Chromium, so it is deleted as soon as the launch returns.
    """
    if plan.script is None:
        yield plan.chromium
        return
    folder = Path(tempfile.mkdtemp(prefix="dse-chromium-"))
    try:
        wrapper = folder / "chromium-as-user"
        wrapper.write_text(plan.script)
        wrapper.chmod(0o700)
        yield str(wrapper)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def launch_error(plan: LaunchPlan, exc: BaseException) -> MissingToolError:
    """Turn a failed browser launch into a message that says what to do."""
    detail = " ".join(str(exc).split("Call log:")[0].split())[:600]
    if plan.sandbox and any(hint in detail.lower() for hint in _SANDBOX_HINTS):
        return MissingToolError(
            f"cannot start {plan.describe()}: {detail}. Chromium's sandbox needs unprivileged user "
            "namespaces (enable them, e.g. `sysctl -w kernel.unprivileged_userns_clone=1` or "
            "`user.max_user_namespaces`; in Docker a seccomp profile that allows them) or its setuid "
            "helper (chrome-sandbox). Only for pages you trust, run without the sandbox: "
            f"`{SANDBOX_ENV}=0`, `WebOptions(sandbox=False)` or `dse index --no-browser-sandbox`"
        )
    return MissingToolError(f"cannot start {plan.describe()}: {detail}")


def warn_unsandboxed(plan: LaunchPlan) -> None:
    """Log that the browser runs without its sandbox (an explicit choice)."""
    logger.warning(
        "Chromium runs without its sandbox (%s=0 / sandbox=False): a page that exploits a browser "
        "bug runs with this process's rights%s; render only pages you trust this way",
        SANDBOX_ENV,
        " (root)" if os.geteuid() == 0 else "",
    )
