"""Where a project's specs, templates, cloud-init templates and test suites live."""

from __future__ import annotations

import dataclasses
import os
import shutil
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent.parent  # builder/
# What a project consists of; copy_tree() copies these and nothing else.
PROJECT_PARTS = ("images", "templates", "cloud-init", "environments", "tests/images")


@dataclasses.dataclass(frozen=True)
class Project:
    root: Path
    images: Path

    @property
    def templates(self) -> Path:
        return self.root / "templates"

    @property
    def cloud_init(self) -> Path:
        return self.root / "cloud-init"

    @property
    def environments(self) -> Path:
        return self.root / "environments"

    @property
    def state(self) -> Path:
        """Bases, artifacts and the registry; BUILDER_STATE moves them."""
        return Path(os.environ.get("BUILDER_STATE") or self.root / "output")

    def display(self, path: Path) -> str:
        """A path as the user should read it in a message: relative to the project if inside."""
        try:
            return str(path.resolve().relative_to(self.root))
        except ValueError:
            return str(path)


def find_project(images: Path | None = None, start: Path | None = None) -> Project:
    """The nearest directory (from cwd upwards) holding images/ and templates/, else the
    checkout this package was installed from."""
    here = (start or Path.cwd()).resolve()
    root = None
    for candidate in (here, *here.parents):
        if (candidate / "images").is_dir() and (candidate / "templates").is_dir():
            root = candidate
            break
    if root is None:
        root = PACKAGE_DIR.parent
    return Project(root=root, images=(images.resolve() if images else root / "images"))


def copy_tree(dest: Path, source: Path) -> Path:
    """A throwaway copy of the project at source in dest (for tests and benchmarks): the parts
    source has, without Python caches."""
    dest.mkdir(parents=True, exist_ok=True)
    for part in PROJECT_PARTS:
        if (source / part).exists():
            shutil.copytree(source / part, dest / part,
                            ignore=shutil.ignore_patterns("__pycache__", "*.pyc", ".pytest_cache"))
    return dest
