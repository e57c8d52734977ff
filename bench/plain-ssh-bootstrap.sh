#!/usr/bin/env bash
# plain-ssh-bootstrap.sh LABDIR: the tutorials' steps (../shared/seeds) as one plain
# OpenSSH script, the fair baseline for pgrepl's bootstrap: the replicas are cloned in
# parallel, and every command is a new `ssh` connection (no ControlMaster), as people
# run them by hand or from a simple script.
#
# Primary: ALTER SYSTEM for the replication settings, pg_hba rules for every replica,
# CREATE ROLE replicator, one physical slot per replica, restart.
# Each replica, in the background: stop, move the data dir aside, pg_basebackup -R
# -X stream -S SLOT with the password in a .pgpass file, start, wait until streaming.
set -euo pipefail

dir=${1:?usage: plain-ssh-bootstrap.sh LABDIR}
. "$dir/lab.env"
V=$LAB_VERSION
PASS=$(cat "$dir/replication-password")
DATA=/var/lib/postgresql/$V/main
CONF=/etc/postgresql/$V/main
BIN=/usr/lib/postgresql/$V/bin

s() { local h=$1; shift; ssh -F "$dir/ssh_config" -o ControlMaster=no -o ControlPath=none "$h" "$@"; }

mapfile -t rows <"$dir/nodes.tsv"
primary=$(cut -f1 <<<"${rows[0]}")
primary_addr=$(cut -f3 <<<"${rows[0]}")
replicas=()
for row in "${rows[@]:1}"; do replicas+=("$(cut -f1,3 <<<"$row")"); done
n=${#replicas[@]}

# --- primary: settings, pg_hba, role, slots, restart
s "$primary" "sudo -u postgres psql -X -q -c \"ALTER SYSTEM SET listen_addresses = '*'\" \
    -c \"ALTER SYSTEM SET wal_level = 'replica'\" \
    -c \"ALTER SYSTEM SET max_wal_senders = $((n * 2 + 4))\" \
    -c \"ALTER SYSTEM SET max_replication_slots = $((n * 2 + 4))\" \
    -c \"ALTER SYSTEM SET wal_keep_size = '512MB'\" \
    -c \"ALTER SYSTEM SET hot_standby = on\""
for r in "${replicas[@]}"; do
    addr=${r#*$'\t'}
    s "$primary" "echo 'host replication replicator $addr/32 scram-sha-256' | sudo tee -a $CONF/pg_hba.conf >/dev/null"
done
s "$primary" "sudo -u postgres psql -X -q -c \"CREATE ROLE replicator WITH LOGIN REPLICATION PASSWORD '$PASS'\""
for r in "${replicas[@]}"; do
    name=${r%%$'\t'*}
    s "$primary" "sudo -u postgres psql -X -q -c \"SELECT pg_create_physical_replication_slot('$name')\" >/dev/null"
done
s "$primary" "sudo pg_ctlcluster $V main restart"

# --- replicas, in parallel
clone() {
    local name=$1
    s "$name" "sudo pg_ctlcluster $V main stop"
    s "$name" "sudo mv $DATA $DATA.old-\$(date +%s) && sudo install -d -o postgres -g postgres -m 700 $DATA"
    s "$name" "echo '$primary_addr:5432:*:replicator:$PASS' | sudo -u postgres tee /var/lib/postgresql/.pgpass >/dev/null && sudo chmod 600 /var/lib/postgresql/.pgpass"
    s "$name" "sudo -u postgres env PGPASSFILE=/var/lib/postgresql/.pgpass $BIN/pg_basebackup -h $primary_addr -U replicator -D $DATA -R -X stream -S $name -c fast -w"
    s "$name" "sudo pg_ctlcluster $V main start"
    for _ in $(seq 1 300); do
        if [ "$(s "$name" "sudo -u postgres psql -X -A -t -c \"SELECT status FROM pg_stat_wal_receiver\"")" = streaming ]; then
            return 0
        fi
        sleep 0.2
    done
    echo "plain: $name never streamed" >&2
    return 1
}
pids=()
for r in "${replicas[@]}"; do
    clone "${r%%$'\t'*}" & pids+=($!)
done
rc=0
for p in "${pids[@]}"; do wait "$p" || rc=1; done
exit $rc
