"""Running Packer: its version, validate/fmt, and builds with progress and cleanup."""

from __future__ import annotations

import functools
import os
import re
import shutil
import subprocess

from builder.errors import OperationError

# The version assumed when no Packer is installed (Debian 12's and 13's package).
DEFAULT_VERSION = (1, 6, 6)


@functools.lru_cache(maxsize=1)
def binary() -> str | None:
    return os.environ.get("BUILDER_PACKER") or shutil.which("packer")


# For the short runs (version, validate, fmt): each is one or more Go processes living a
# fraction of a second (a validate is eight: the command, its panic wrapper, a plugin
# process per builder/provisioner/post-processor), and a fifth to a third of their CPU
# went to collecting garbage none of them needs collected (~50 MB each at most). The
# limit bounds a runaway one all the same. Bakes keep Go's defaults.
SHORT_LIVED = {"GOGC": "off", "GOMEMLIMIT": "512MiB"}


@functools.lru_cache(maxsize=1)
def version() -> tuple[int, int, int] | None:
    """The installed Packer's version, or None when there is none."""
    exe = binary()
    if not exe:
        return None
    try:
        out = subprocess.run([exe, "version"], capture_output=True, text=True, timeout=30,
                             check=False, env=environment(SHORT_LIVED)).stdout
    except OSError:
        return None
    match = re.search(r"v?(\d+)\.(\d+)\.(\d+)", out)
    if not match:
        raise OperationError(f"cannot read the Packer version from {exe!r}: {out.strip()!r}")
    return tuple(int(x) for x in match.groups())  # type: ignore[return-value]


def target_version() -> tuple[int, int, int]:
    """The version to render for: the installed one, else Debian's."""
    return version() or DEFAULT_VERSION


def has_plugins(ver: tuple[int, int, int]) -> bool:
    """Packer >= 1.7 takes `packer { required_plugins {...} }`; 1.6 rejects the block."""
    return ver >= (1, 7, 0)


def version_string(ver: tuple[int, int, int]) -> str:
    return ".".join(str(x) for x in ver)


def environment(extra: dict[str, str] | None = None) -> dict[str, str]:
    """Packer's environment: no update check (it would leave the machine), a cache we own."""
    env = dict(os.environ)
    env["PACKER_CHECKPOINT_DISABLE"] = "1"
    env.setdefault("PACKER_NO_COLOR", "1")
    env.update(extra or {})
    return env
