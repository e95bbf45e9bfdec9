"""Every absolute path the agent touches, under one root.

The root is `/` on an instance. Tests (and anyone rehearsing a boot) point it at a
directory through `--root` or BUILDER_AGENT_ROOT, so the whole boot sequence runs there
without writing to the machine running it.
"""

from __future__ import annotations

import os
from pathlib import Path

ENV_VAR = "BUILDER_AGENT_ROOT"


class Root:
    def __init__(self, root: str | os.PathLike | None = None):
        self.root = Path(root or os.environ.get(ENV_VAR) or "/")

    def __call__(self, path: str | os.PathLike) -> Path:
        return self.root / str(path).lstrip("/")

    @property
    def is_system(self) -> bool:
        """True on a real instance: only then must files get their accounts as owners."""
        return self.root == Path("/")

    def __repr__(self) -> str:
        return f"Root({str(self.root)!r})"
