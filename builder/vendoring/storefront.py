"""`builder vendor storefront`: the Next.js standalone output of saleor/storefront
(app/ with server.js, .next/, public/, node_modules/), run with the image's node or, with
--node-runtime bundled, with Node.js's own build of the major it needs (node/, noderuntime).

From a checkout it builds as upstream's Dockerfile does: `pnpm install --frozen-lockfile`,
then `NEXT_OUTPUT=standalone pnpm run build`, whose prebuild generates GraphQL types from the
LIVE API at --api-url (also baked into the server chunks), then .next/standalone with
.next/static and public/ beside server.js."""

from __future__ import annotations

from pathlib import Path

from builder.errors import UserError
from builder.progress import Progress
from builder.vendoring import common, node, noderuntime
from builder.vendoring.common import Source, step

# saleor/storefront publishes no release tags: pass --source for a commit's archive or a
# checkout.
DEFAULT_URL = "https://github.com/saleor/storefront/archive/refs/tags/{version}.tar.gz"
PNPM = "10"  # when package.json names none
RUNTIME = {"node": f">={node.NODE_MAJOR}"}


def runtime(package_json: Path) -> dict:
    """What node the server needs: the app's own `engines.node` when it says `>=N`, else
    the node the upstream build uses. The bake refuses an image whose node is older."""
    import json

    try:
        wanted = json.loads(package_json.read_text()).get("engines", {}).get("node", "")
    except (OSError, ValueError, AttributeError):
        wanted = ""
    wanted = str(wanted).replace(" ", "")
    if wanted.startswith(">=") and wanted[2:].split(".")[0].isdigit():
        return {"node": wanted}
    return dict(RUNTIME)


def vendor(version: str, source: str | None, out: Path, api_url: str | None, channel: str,
           progress: Progress, node_runtime: str = "image") -> dict:
    if api_url is not None and not api_url.startswith(("http://", "https://")):
        raise UserError(f"expected an http(s) URL of the GraphQL API, got {api_url!r}",
                        field="--api-url")

    def build(src: Source, payload: Path, work: Path, progress: Progress) -> dict:
        runtime = build_app(src, payload, work, progress)
        if node_runtime == "bundled":
            runtime |= noderuntime.bundle(runtime["node"], payload, work, progress)
        return runtime

    def build_app(src: Source, payload: Path, work: Path, progress: Progress) -> dict:
        app = payload / "app"
        if (src.root / "server.js").is_file():
            with step(progress, "app", "already standalone (server.js at the top)"):
                common.copy_tree(src.root, app)
                common.relink_inside(app)
            return runtime(app / "package.json")
        if not src.has("package.json"):
            raise UserError(f"{src.label} is neither a standalone build (server.js at the top) "
                            "nor a checkout (package.json)", field="--source")
        if api_url is None:
            raise UserError("building from a checkout needs the live Saleor GraphQL API URL "
                            "(its codegen reads the schema from it)", field="--api-url")
        node.check_node("storefront", "a standalone build (a directory with server.js)")
        tree = node.checkout(src, work, progress)
        pnpm = node.pnpm(tree, PNPM)
        env = node.build_env({"NEXT_OUTPUT": "standalone",
                              "NEXT_PUBLIC_SALEOR_API_URL": api_url,
                              "NEXT_PUBLIC_DEFAULT_CHANNEL": channel})
        node.run_steps([("install", [*pnpm, "install", "--frozen-lockfile"]),
                        ("build", [*pnpm, "run", "build"])], tree, env, progress)
        standalone = tree / ".next" / "standalone"
        if not (standalone / "server.js").is_file():
            raise UserError("the build made no .next/standalone/server.js (NEXT_OUTPUT="
                            "standalone unsupported by this checkout's next.config?)",
                            field="--source")
        with step(progress, "app", ".next/standalone + .next/static + public/"):
            common.copy_tree(standalone, app)
            common.copy_tree(tree / ".next" / "static", app / ".next" / "static", merge=True)
            if (tree / "public").is_dir():
                common.copy_tree(tree / "public", app / "public", merge=True)
            common.relink_inside(app)
        return runtime(tree / "package.json")

    return common.make("storefront", version, source, DEFAULT_URL, out, build, progress)
