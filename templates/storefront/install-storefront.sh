#!/bin/sh
# Bake step of the storefront image (images/storefront.yaml `scripts`), run as root by
# provision.sh once nodejs is installed. BUILDER_BUNDLE is the extracted and
# checksum-verified storefront bundle (docs/bundles.md): bundle.json and app/, the Next.js
# standalone output (server.js, .next/, public/, node_modules/).
#
# The node that runs the server is /opt/storefront/node/bin/node: the bundle's own
# (node/, runtime.node_runtime "bundled": Node.js's build of the major the app needs) or a
# link to the image's. Fails the bake unless that node is as new as runtime.node (">=N").
# Installs app/ as /opt/storefront, root-owned and read-only to the service, with the
# bundle's manifest as bundle.json, and the system user storefront that runs it.
set -eu
: "${BUILDER_BUNDLE:?must name the extracted storefront bundle}"
DEST=/opt/storefront
SRC=$BUILDER_BUNDLE/app
CACHE=/var/cache/storefront
HOME_DIR=/var/lib/storefront
fail() { echo "install-storefront: $*" >&2; exit 1; }

[ -f "$BUILDER_BUNDLE/bundle.json" ] || fail "$BUILDER_BUNDLE/bundle.json missing"
[ -f "$SRC/server.js" ] && [ -d "$SRC/.next" ] \
  || fail "$SRC has no server.js and .next/: not a Next.js standalone build"

[ ! -e "$SRC/node" ] || fail "$SRC has its own node/: that name is the runtime's place"

runtime_field() {
  node -p "JSON.parse(require('fs').readFileSync(process.argv[1], 'utf8')).runtime?.$1 ?? ''" \
    "$BUILDER_BUNDLE/bundle.json" || fail "cannot read runtime.$1 from bundle.json"
}
case $(runtime_field node_runtime) in
  bundled)
    NODE=$BUILDER_BUNDLE/node/bin/node
    [ -f "$NODE" ] || fail "bundle.json says node_runtime bundled, but node/bin/node is missing"
    chmod 0755 "$NODE"
    bundled=$(runtime_field node_version)
    [ "$("$NODE" --version)" = "v$bundled" ] \
      || fail "the bundle's node/bin/node is not node $bundled, as bundle.json says"
    ;;
  '') NODE=$(command -v node) || fail "no node in this image" ;;
  *) fail "bundle.json runtime.node_runtime is \"$(runtime_field node_runtime)\"; expected bundled" ;;
esac

# node new enough for the bundle.
want=$(runtime_field node)
need=$(printf '%s' "$want" | tr -d ' ')
case $need in
  '>='*) need=${need#>=} ;;
  *) fail "bundle.json runtime.node is \"$want\"; expected \">=MAJOR\"" ;;
esac
need=${need%%.*}
case $need in
  '' | *[!0-9]*) fail "bundle.json runtime.node is \"$want\"; expected \">=MAJOR\"" ;;
esac
version=$("$NODE" --version)
have=${version#v}
have=${have%%.*}
case $have in
  '' | *[!0-9]*) fail "cannot read a major version from node --version: $version" ;;
esac
[ "$have" -ge "$need" ] || fail "node $version is older than the bundle needs ($want)"
echo "install-storefront: node $version ($NODE) satisfies $want"

if ! getent passwd storefront >/dev/null; then
  useradd --system --user-group --home-dir "$HOME_DIR" --no-create-home \
    --shell /usr/sbin/nologin --comment "Saleor storefront" storefront
fi
install -d -m 0750 -o storefront -g storefront "$HOME_DIR" "$CACHE"

rm -rf "$DEST"
mkdir -p "$DEST"
# cp -R keeps symbolic links as links: pnpm's node_modules are made of them.
cp -R "$SRC/." "$DEST/"
cp "$BUILDER_BUNDLE/bundle.json" "$DEST/bundle.json"
mkdir -p "$DEST/node/bin"
if [ "$NODE" = "$BUILDER_BUNDLE/node/bin/node" ]; then
  cp "$NODE" "$DEST/node/bin/node"
  cp "$BUILDER_BUNDLE/node/LICENSE" "$DEST/node/LICENSE"
else
  ln -s "$NODE" "$DEST/node/bin/node"
fi
# Next.js keeps its data cache and optimized images in .next/cache: the one place it writes,
# made writable by the unit's CacheDirectory=storefront.
rm -rf "$DEST/.next/cache"
ln -s "$CACHE" "$DEST/.next/cache"
# tar kept the bundle maker's owners and modes; the tree is root's and read-only to the app.
chown -R -h root:root "$DEST"
chmod -R a+rX,go-w "$DEST"
echo "install-storefront: $(find "$DEST" -type f | wc -l) files in $DEST"
