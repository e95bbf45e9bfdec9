"""`builder vendor`: make the application bundles of docs/bundles.md, one module per app
(saleor, dashboard, storefront) on the shared steps of common.py (node.py: Node builds,
pins.py: pinned requirements); bundles.py finds, reads, verifies and writes them, for
rendering and the gate too. Not named `vendor`: .gitignore, ruff and other tools take a
directory of that name for third-party code and skip it."""
