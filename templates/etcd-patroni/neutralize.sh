#!/bin/sh
# Nothing cluster-specific may be baked: Debian's packages create and enable both of these.
# Runs in the package layer's chroot (native speed) and again in the bake VM (and on AWS):
# every step looks before it acts, so on a layer the VM has nothing to do. Under TCG,
# pg_lsclusters and each update-rc.d behind `systemctl disable` are seconds of perl each.
set -eu
# postgresql-17 creates a `main` cluster; Patroni initialises its own data directory at boot.
for conf in /etc/postgresql/*/*/postgresql.conf; do
  [ -e "$conf" ] || continue
  dir=${conf%/postgresql.conf}
  pg_dropcluster --stop "$(basename "$(dirname "$dir")")" "$(basename "$dir")"
done
# Disabled only while a target still wants it; stopped only where systemd runs (not in a
# chroot) and the unit is up (a bake from a bare base: policy-rc.d kept it from starting).
off() {
  for link in /etc/systemd/system/*.wants/"$1" /etc/systemd/system/*.requires/"$1"; do
    if [ -e "$link" ]; then
      systemctl --no-reload disable "$1"
      break
    fi
  done
  if [ -d /run/systemd/system ] && systemctl is-active --quiet "$1"; then
    systemctl stop "$1"
  fi
}
# The umbrella unit would start any cluster it finds; Patroni owns PostgreSQL here.
off postgresql.service
# etcd-server starts with ETCD_NAME=%H and default data: remove that member's traces.
off etcd.service
rm -rf /var/lib/etcd/default /var/lib/etcd/member
install -d -o etcd -g etcd -m 0700 /var/lib/etcd
# Debian's patroni unit reads /etc/patroni/config.yml; the agent writes it at boot.
install -d -o postgres -g postgres -m 0750 /etc/patroni
