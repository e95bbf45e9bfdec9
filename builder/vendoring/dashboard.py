"""`builder vendor dashboard`: the built static Saleor dashboard (dist/ with index.html).

From a checkout it builds as upstream's Dockerfile does: `pnpm install --frozen-lockfile`,
`pnpm run generate:main` (GraphQL types from the schema in the repository) and `vite build`
into build/dashboard/. It is built for the site root (STATIC_URL and APP_MOUNT_URI `/`, as
the image's nginx serves it on :9000); API_URL is a placeholder the node agent rewrites in
index.html at boot."""

from __future__ import annotations

import re
from pathlib import Path

from builder.errors import UserError
from builder.progress import Progress
from builder.vendoring import common, node
from builder.vendoring.common import Source, step

DEFAULT_URL = "https://github.com/saleor/saleor-dashboard/archive/refs/tags/{version}.tar.gz"
PNPM = "11"  # when package.json names none (3.23.x: pnpm@11.13.1)
BUILD_ENV = {
    "API_URL": "http://localhost:8000/graphql/",  # rewritten at boot
    "APP_MOUNT_URI": "/",
    "STATIC_URL": "/",
    "SKIP_SOURCEMAPS": "true",
    "LOCALE_CODE": "EN",
    "NODE_OPTIONS": "--max-old-space-size=8192",
}
API_URL = re.compile(r"API_URL:\s*\"")


def vendor(version: str, source: str | None, out: Path, progress: Progress) -> dict:
    return common.make("dashboard", version, source, DEFAULT_URL, out, _build, progress)


def _build(src: Source, payload: Path, work: Path, progress: Progress) -> dict:
    if (src.root / "index.html").is_file():
        dist = src.root
        with step(progress, "dist", "already built (index.html at the top)"):
            common.copy_tree(dist, payload / "dist")
    elif src.has("package.json", "pnpm-lock.yaml"):
        node.check_node("dashboard", "a built dashboard (a directory with index.html)")
        tree = node.checkout(src, work, progress)
        pnpm = node.pnpm(tree, PNPM)
        node.run_steps([("install", [*pnpm, "install", "--frozen-lockfile"]),
                        ("generate", [*pnpm, "run", "generate:main"]),
                        ("build", [*pnpm, "exec", "vite", "build"])],
                       tree, node.build_env(BUILD_ENV), progress)
        dist = tree / "build" / "dashboard"
        if not (dist / "index.html").is_file():
            raise UserError("the build made no build/dashboard/index.html: is this a "
                            "saleor-dashboard checkout?", field="--source")
        common.copy_tree(dist, payload / "dist")
    else:
        raise UserError(f"{src.label} is neither a built dashboard (index.html at the top) nor "
                        "a checkout (package.json and pnpm-lock.yaml)", field="--source")
    index = payload / "dist" / "index.html"
    if not API_URL.search(index.read_text(errors="replace")):
        raise UserError('has no `API_URL: "…"` (window.__SALEOR_CONFIG__) for the boot to '
                        "rewrite", file="index.html", field="--source")
    return {}
