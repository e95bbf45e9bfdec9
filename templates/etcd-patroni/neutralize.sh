#!/bin/sh
# Nothing cluster-specific may be baked: Debian's packages create and enable both of these.
set -eu
# postgresql-17 creates a `main` cluster; Patroni initialises its own data directory at boot.
if pg_lsclusters -h 2>/dev/null | grep -q .; then
  pg_lsclusters -h | while read -r ver name _; do
    pg_dropcluster --stop "$ver" "$name"
  done
fi
# The umbrella unit would start any cluster it finds; Patroni owns PostgreSQL here. Stopped
# too: on a package layer the bake VM booted with it enabled (apt's policy-rc.d kept it from
# starting only on a bare base). --no-reload: a daemon-reload costs ~7 s under TCG.
systemctl --no-reload disable --now postgresql.service
# etcd-server starts with ETCD_NAME=%H and default data: remove that member's traces.
systemctl --no-reload disable --now etcd.service
rm -rf /var/lib/etcd/default /var/lib/etcd/member
install -d -o etcd -g etcd -m 0700 /var/lib/etcd
# Debian's patroni unit reads /etc/patroni/config.yml; the agent writes it at boot.
install -d -o postgres -g postgres -m 0750 /etc/patroni
