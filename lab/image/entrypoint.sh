#!/bin/bash
# Entrypoint of a lab node (runs under `docker run --init`, which reaps zombies).
# First boot turns the image into a fresh "VM right after apt install
# postgresql": unique SSH host keys, a random sudo password for pwsudo, and a
# new PostgreSQL cluster with its own system identifier. Every boot then starts
# sshd and PostgreSQL as daemons and waits: the container lives on whatever
# happens to postgres, so tools may stop/start it over SSH.
set -euo pipefail

LAYOUT=${PGREPL_LAB_LAYOUT:-debian}
V=$(find /usr/lib/postgresql -mindepth 1 -maxdepth 1 -printf '%f\n' | sort -n | tail -n1)
BIN=/usr/lib/postgresql/$V/bin
PGCTL_DATA=/var/lib/pgsql/$V/data
STATE=/var/lib/pgrepl-lab          # survives `docker restart`
READY=/run/pgrepl-lab.ready        # /run is a tmpfs: gone after a restart

say() { echo "entrypoint: $*"; }

random_password() { tr -dc 'A-Za-z0-9' </dev/urandom | head -c 32 || true; }

as_postgres() { runuser -u postgres -- "$@"; }

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
    *)
        say "unknown layout '$LAYOUT' (want debian or pgctl)" >&2
        exit 1
        ;;
    esac
}

first_boot() {
    say "first boot, layout $LAYOUT, PostgreSQL $V"
    rm -f /etc/ssh/ssh_host_*
    ssh-keygen -A
    echo "pwsudo:$(random_password)" | chpasswd
    create_cluster
    mkdir -p "$STATE"
    echo "$LAYOUT" >"$STATE/layout"
}

start_postgres() {
    case $LAYOUT in
    debian)
        pg_ctlcluster "$V" main start
        ;;
    pgctl)
        # After `docker restart` a postmaster.pid of the dead container may name a
        # live pid in the new pid namespace; nothing of ours runs yet, so drop it.
        rm -f "$PGCTL_DATA/postmaster.pid"
        as_postgres "$BIN/pg_ctl" -D "$PGCTL_DATA" -l "/var/lib/pgsql/$V/logfile" -w start
        ;;
    esac
}

stop_postgres() {
    case $LAYOUT in
    debian) pg_ctlcluster "$V" main stop -m fast || true ;;
    pgctl) as_postgres "$BIN/pg_ctl" -D "$PGCTL_DATA" -m fast stop || true ;;
    esac
}

[ -e "$STATE/layout" ] || first_boot
LAYOUT=$(cat "$STATE/layout")

install -d -m 0755 /run/sshd
install -d -o postgres -g postgres -m 2775 /run/postgresql
/usr/sbin/sshd -E /var/log/sshd.log
start_postgres
touch "$READY"
say "ready"

trap 'stop_postgres; exit 0' TERM INT
sleep infinity &
wait $!
