"""What determines an image, hashed: two bakes with the same key make the same image."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

# Bump when the meaning of the key changes, so old artifacts stop matching.
SCHEMA = 1


def file_digest(path: Path) -> str:
    """sha256 of one file, with its mode (it ends up in the image)."""
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    return f"{digest}:{oct(path.stat().st_mode & 0o111 and 0o755 or 0o644)}"


def file_digests(root: Path, exclude: frozenset[str] = frozenset()) -> dict[str, str]:
    """file_digest() of every file below root, by POSIX relative path."""
    out = {}
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        rel = path.relative_to(root).as_posix()
        if rel in exclude or "__pycache__" in path.parts:
            continue
        out[rel] = file_digest(path)
    return out


def compute(*, role: dict, target: str, rendered: dict[str, str], tests: dict[str, str],
            base: str, packer_version: str) -> str:
    """A stable hash: canonical JSON of everything that shapes the image and its proof."""
    document = {
        "schema": SCHEMA,
        "role": role,
        "target": target,
        "rendered": rendered,
        "tests": tests,
        "base": base,
        "packer": packer_version,
    }
    blob = json.dumps(document, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(blob).hexdigest()
