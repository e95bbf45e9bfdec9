#!/bin/sh
# Installs Saleor from its bundle ($BUILDER_BUNDLE, docs/bundles.md) with no network: the
# venv gets the bundle's wheels only. Runs as root during the bake.
set -eu
B="${BUILDER_BUNDLE:?the bundle is unpacked by provision.sh}"
runtime=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["runtime"]["python"])' "$B/bundle.json")

id saleor >/dev/null 2>&1 || useradd --system --home-dir /var/lib/saleor --no-create-home \
  --shell /usr/sbin/nologin saleor
install -d -m 0755 -o root -g root /opt/saleor
install -d -m 0750 -o saleor -g saleor /var/lib/saleor /var/lib/saleor/media
install -d -m 0750 -o root -g saleor /etc/saleor

rm -rf /opt/saleor/app /opt/saleor/venv /opt/saleor/python
cp -R "$B/app" /opt/saleor/app
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

# Static files once, at bake: the key is a throwaway for this one command (Saleor refuses to
# start without one), never the instance's SECRET_KEY, which arrives at boot.
(cd /opt/saleor/app && SECRET_KEY=collectstatic-only-not-a-secret \
  /opt/saleor/venv/bin/python manage.py collectstatic --no-input >/dev/null)

install -m 0644 "$B/bundle.json" /opt/saleor/bundle.json
chown -R root:root /opt/saleor
chmod -R u=rwX,go=rX /opt/saleor
# Only the API's own site listens: nothing on :80 of this node.
rm -f /etc/nginx/sites-enabled/default
echo "builder: saleor $(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["version"])' "$B/bundle.json") installed ($runtime python $("$PY" -c 'import platform; print(platform.python_version())'))"
