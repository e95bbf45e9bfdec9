#!/bin/sh
# Bake step of the saleor-dashboard image (images/saleor-dashboard.yaml `scripts`), run as
# root by provision.sh once nginx is installed. BUILDER_BUNDLE is the extracted and
# checksum-verified dashboard bundle (docs/bundles.md): bundle.json and dist/.
#
# Installs dist/ as /opt/saleor-dashboard, root-owned and world-readable, keeps the pristine
# index.html as index.html.orig (the node agent writes API_URL into index.html from it at
# every boot) and the bundle's manifest as bundle.json. Removes nginx's default site: the
# agent's site on the private address :9000 is the only one.
set -eu
: "${BUILDER_BUNDLE:?must name the extracted dashboard bundle}"
DEST=/opt/saleor-dashboard
SRC=$BUILDER_BUNDLE/dist
fail() { echo "install-dashboard: $*" >&2; exit 1; }

[ -f "$BUILDER_BUNDLE/bundle.json" ] || fail "$BUILDER_BUNDLE/bundle.json missing"
[ -f "$SRC/index.html" ] || fail "$SRC/index.html missing: not a dashboard bundle"
# The agent fails the boot without the placeholder; a bundle without it fails the bake.
grep -q 'window\.__SALEOR_CONFIG__' "$SRC/index.html" \
  || fail "$SRC/index.html has no window.__SALEOR_CONFIG__"
grep -q 'API_URL *: *"' "$SRC/index.html" \
  || fail "$SRC/index.html has no API_URL: \"...\" to write the API URL into"
# nginx serves whatever the tree holds; a link could point it anywhere on the image.
if [ -n "$(find "$SRC" -type l)" ]; then
  fail "$SRC holds symbolic links: $(find "$SRC" -type l | head -n 3 | tr '\n' ' ')"
fi

rm -rf "$DEST"
mkdir -p "$DEST"
cp -R "$SRC/." "$DEST/"
cp "$SRC/index.html" "$DEST/index.html.orig"
cp "$BUILDER_BUNDLE/bundle.json" "$DEST/bundle.json"
# tar kept the bundle maker's owners and modes; the tree is root's and read-only to nginx.
chown -R root:root "$DEST"
find "$DEST" -type d -exec chmod 0755 {} + -o -type f -exec chmod 0644 {} +

rm -f /etc/nginx/sites-enabled/default
echo "install-dashboard: $(find "$DEST" -type f | wc -l) files in $DEST"
