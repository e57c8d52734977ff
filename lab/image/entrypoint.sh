#!/bin/bash
# Entrypoint of a lab node. On a systemd image it only hands over to systemd
# (lab/lab runs /sbin/init itself; this is for a bare `docker run`). Otherwise
# it runs under `docker run --init` (which reaps zombies) and plays init: every
# boot it runs node.sh boot (the first one makes the node unique), starts sshd
# and PostgreSQL as daemons, says ready, and waits. The container lives on
# whatever happens to postgres, so tools may stop/start it over SSH.
set -euo pipefail

LIB=/usr/local/lib/pgrepl-lab
if [ "$(cat "$LIB/init")" = systemd ]; then
    exec /sbin/init "$@"
fi

# shellcheck source=node.sh
. "$LIB/node.sh"

start_postgres() {
    case $LAYOUT in
    debian)
        pg_ctlcluster "$V" main start
        ;;
    pgctl)
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

first=0
[ -e "$STATE/layout" ] || first=1
boot

install -d -m 0755 /run/sshd
install -d -o postgres -g postgres -m 2775 /run/postgresql
/usr/sbin/sshd -E /var/log/sshd.log
if [ "$ROLE" = postgres ]; then
    if [ $first = 1 ]; then
        start_postgres
    else
        # As on a host that boots: a cluster that does not start leaves the
        # host up (a tool may have left a broken configuration behind).
        start_postgres || { say "PostgreSQL did not start"; PG_FAILED=1; }
    fi
fi
ready

trap '[ "$ROLE" = proxy ] || stop_postgres; exit 0' TERM INT
sleep infinity &
wait $!
