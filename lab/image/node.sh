#!/bin/bash
# node.sh: what turns the image into a node, shared by both kinds of init.
#
#   node.sh boot    Every boot, before sshd and PostgreSQL start. The first boot
#                   turns the image into a fresh "VM right after apt install
#                   postgresql": unique SSH host keys, a random sudo password for
#                   pwsudo, and a new PostgreSQL cluster with its own system
#                   identifier (none on a proxy node). Later boots only drop
#                   postmaster.pid files a killed container left behind.
#   node.sh ready   Every boot, once sshd and PostgreSQL were started: wait until
#                   PostgreSQL answers (not on a proxy), then touch
#                   /run/pgrepl-lab.ready and say "entrypoint: ready" in the
#                   container's log, which `lab up` and `lab start` wait for.
#
# entrypoint.sh runs both itself; on systemd nodes pgrepl-lab-boot.service and
# pgrepl-lab-ready.service do. Settings come from `docker run -e`:
# PGREPL_LAB_LAYOUT (debian|pgctl) and PGREPL_LAB_ROLE (postgres|proxy).
set -euo pipefail

V=$(find /usr/lib/postgresql -mindepth 1 -maxdepth 1 -printf '%f\n' | sort -n | tail -n1)
BIN=/usr/lib/postgresql/$V/bin
PGCTL_DATA=/var/lib/pgsql/$V/data
STATE=/var/lib/pgrepl-lab          # in the container's layer: survives restarts
READY=/run/pgrepl-lab.ready        # /run is a tmpfs: gone after a restart

systemd_running() { [ -d /run/systemd/system ]; }

# Under systemd the `docker run -e` variables live only in PID 1's environment.
if systemd_running && [ -z "${PGREPL_LAB_LAYOUT:-}" ]; then
    while IFS= read -r -d '' kv; do
        case $kv in PGREPL_LAB_*=*) export "${kv?}" ;; esac
    done </proc/1/environ
fi
LAYOUT=${PGREPL_LAB_LAYOUT:-debian}
ROLE=${PGREPL_LAB_ROLE:-postgres}
[ ! -e "$STATE/layout" ] || LAYOUT=$(cat "$STATE/layout")
[ ! -e "$STATE/role" ] || ROLE=$(cat "$STATE/role")

# To docker logs: the entrypoint's stdout, or under systemd the console (the
# units send their output to journal+console, and lab/lab gives them a tty).
say() { echo "entrypoint: $*"; }

random_password() { tr -dc 'A-Za-z0-9' </dev/urandom | head -c 32 || true; }

as_postgres() { runuser -u postgres -- "$@"; }

# The service that runs the cluster under systemd.
unit() {
    case $LAYOUT in
    debian) echo "postgresql@$V-main.service" ;;
    pgctl) echo "postgresql-$V.service" ;;
    esac
}

create_cluster() {
    # Drop the package's cluster (if the image still has one) for a fresh one.
    if [ -d "/etc/postgresql/$V/main" ]; then
        pg_dropcluster --stop "$V" main
    fi
    case $LAYOUT in
    debian)
        pg_createcluster "$V" main
        ;;
    pgctl)
        install -d -o postgres -g postgres -m 0700 "/var/lib/pgsql/$V" "$PGCTL_DATA"
        as_postgres "$BIN/initdb" -D "$PGCTL_DATA" --auth-local=peer --auth-host=scram-sha-256
        ;;
    esac
    if systemd_running; then
        # As `apt install postgresql` does: the new cluster starts now and at
        # every boot (debian: the postgresql generator finds it; pgctl: enabled
        # like a PGDG unit). --no-block: this unit is ordered before it.
        systemctl daemon-reload
        [ "$LAYOUT" = debian ] || systemctl enable --quiet "$(unit)"
        systemctl start --no-block "$(unit)"
    fi
}

first_boot() {
    case $LAYOUT in debian | pgctl) ;; *) say "unknown layout '$LAYOUT' (want debian or pgctl)"; exit 1 ;; esac
    case $ROLE in postgres | proxy) ;; *) say "unknown role '$ROLE' (want postgres or proxy)"; exit 1 ;; esac
    say "first boot, role $ROLE, layout $LAYOUT, PostgreSQL $V"
    rm -f /etc/ssh/ssh_host_*
    ssh-keygen -A >/dev/null
    echo "pwsudo:$(random_password)" | chpasswd
    [ "$ROLE" = proxy ] || create_cluster
    mkdir -p "$STATE"
    echo "$ROLE" >"$STATE/role"
    echo "$LAYOUT" >"$STATE/layout"
}

boot() {
    rm -f "$READY"
    # A killed container leaves postmaster.pid behind, and in a fresh pid
    # namespace its pid may well belong to a live process; nothing of ours
    # runs yet, so every pid file found is stale.
    find /var/lib/postgresql /var/lib/pgsql -maxdepth 4 -name postmaster.pid -delete 2>/dev/null || true
    [ -e "$STATE/layout" ] || first_boot
}

pg_ready() { "$BIN/pg_isready" -q; }

ready() {
    local i u
    # A cluster kept from starting at boot (fenced, removed) is not waited for.
    if systemd_running && ! systemctl is-enabled --quiet "$(unit)" 2>/dev/null; then
        PG_FAILED=1
        say "PostgreSQL is not enabled at boot"
    fi
    if [ "$ROLE" = postgres ] && [ "${PG_FAILED:-0}" = 0 ]; then
        for i in $(seq 600); do
            pg_ready && break
            if systemd_running; then
                for u in pgrepl-lab-boot.service "$(unit)"; do
                    if systemctl is-failed --quiet "$u"; then
                        say "$u failed"
                        break 2
                    fi
                done
            fi
            sleep 0.2
        done
        pg_ready || say "PostgreSQL does not answer"
    fi
    touch "$READY"
    say "ready"
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
    case ${1:-} in
    boot) boot ;;
    ready) ready ;;
    *) echo "usage: node.sh boot|ready" >&2; exit 2 ;;
    esac
fi
