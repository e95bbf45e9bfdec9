#!/bin/sh
# Installs Saleor by the image's method, as root during the bake:
# - bundle ($BUILDER_BUNDLE, docs/bundles.md): no network, the venv gets the bundle's wheels;
# - container ($BUILDER_CONTAINER_IMAGE, pulled by provision.sh): the Quadlet units get the
#   image, and nginx gets the image's static files.
set -eu

id saleor >/dev/null 2>&1 || useradd --system --home-dir /var/lib/saleor --no-create-home \
  --shell /usr/sbin/nologin saleor
install -d -m 0755 -o root -g root /opt/saleor
install -d -m 0750 -o saleor -g saleor /var/lib/saleor /var/lib/saleor/media
install -d -m 0750 -o root -g saleor /etc/saleor
# Only the API's own site listens: nothing on :80 of this node.
rm -f /etc/nginx/sites-enabled/default

if [ -n "${BUILDER_CONTAINER_IMAGE:-}" ]; then
  IMAGE="$BUILDER_CONTAINER_IMAGE"
  for unit in /etc/containers/systemd/saleor-api.container \
              /etc/containers/systemd/saleor-worker.container \
              /etc/systemd/system/saleor-beat.service; do
    sed -i -e "s#@IMAGE@#$IMAGE#g" -e "s#@UID@#$(id -u saleor)#g" -e "s#@GID@#$(id -g saleor)#g" "$unit"
  done
  # The image's collected static files, served by nginx on the host (DEBUG is off).
  rm -rf /opt/saleor/static
  podman create --name builder-static --pull never "$IMAGE" true >/dev/null
  trap 'podman rm --force --ignore builder-static >/dev/null' EXIT
  podman cp builder-static:/app/static /opt/saleor/static
  chown -R root:root /opt/saleor
  chmod -R u=rwX,go=rX /opt/saleor
  # Quadlet's generator must accept both units (it skips a unit it cannot parse, silently).
  /usr/lib/systemd/system-generators/podman-system-generator --dryrun >/tmp/quadlet.out
  grep -q 'saleor-api.service' /tmp/quadlet.out && grep -q 'saleor-worker.service' /tmp/quadlet.out
  rm -f /tmp/quadlet.out
  echo "builder: saleor container $IMAGE installed ($(find /opt/saleor/static -type f | wc -l) static files)"
  exit 0
fi

B="${BUILDER_BUNDLE:?the bundle is unpacked by provision.sh}"
runtime=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["runtime"]["python"])' "$B/bundle.json")

rm -rf /opt/saleor/app /opt/saleor/venv /opt/saleor/python /opt/saleor/schema
cp -R "$B/app" /opt/saleor/app
# The release's migrated schema (`builder vendor saleor --schema-dump`): a first boot
# restores it into an empty database instead of migrating (builder/agent/schema.py).
if [ -d "$B/schema" ]; then
  cp -R "$B/schema" /opt/saleor/schema
fi
if [ "$runtime" = bundled ]; then
  cp -R "$B/python" /opt/saleor/python
  PY=/opt/saleor/python/bin/python3
else
  PY=/usr/bin/python3
fi
"$PY" -m venv /opt/saleor/venv
# --no-index: a requirement missing from wheels/ fails the bake instead of reaching out.
/opt/saleor/venv/bin/pip install --quiet --no-index --no-cache-dir --disable-pip-version-check \
  --find-links "$B/wheels" --requirement "$B/requirements.txt"
/opt/saleor/venv/bin/pip check
# Bytecode for the app tree now (pip compiled the venv's): the tree is read-only for the
# service user, so without it every process start compiles Saleor's modules again in
# memory (a first `import saleor.asgi` took ~4 min in a TCG guest). Unchecked hashes keep the
# .pyc valid whatever mtimes the copy gives the sources.
/opt/saleor/venv/bin/python -m compileall -q -j 0 --invalidation-mode unchecked-hash \
  /opt/saleor/app >/dev/null

# Static files once, at bake: the key is a throwaway for this one command (Saleor refuses to
# start without one), never the instance's SECRET_KEY, which arrives at boot.
(cd /opt/saleor/app && SECRET_KEY=collectstatic-only-not-a-secret \
  /opt/saleor/venv/bin/python manage.py collectstatic --no-input >/dev/null)

install -m 0644 "$B/bundle.json" /opt/saleor/bundle.json
chown -R root:root /opt/saleor
chmod -R u=rwX,go=rX /opt/saleor
echo "builder: saleor $(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["version"])' "$B/bundle.json") installed ($runtime python $("$PY" -c 'import platform; print(platform.python_version())'))"
