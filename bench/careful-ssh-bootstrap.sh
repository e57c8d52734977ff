#!/usr/bin/env bash
# careful-ssh-bootstrap.sh LABDIR: the baseline pgrepl's bootstrap is measured against
# (issue 14): what a careful person writes by hand with plain OpenSSH, as few round trips
# as the steps allow, and no checks, no safety, no verify.
#
# 1. One ssh call to the primary: append the replication settings to postgresql.conf,
#    add one pg_hba line for the lab's subnet, restart, create the role and pre-create
#    every replica's slot.
# 2. For each replica, in parallel, one ssh call: stop, empty the data dir, write a
#    passfile, `pg_basebackup -R -X stream -S SLOT --checkpoint=fast`, append the same
#    settings, start.
# 3. One ssh call to the primary that polls pg_stat_replication until every replica
#    streams.
set -euo pipefail

dir=${1:?usage: careful-ssh-bootstrap.sh LABDIR}
. "$dir/lab.env"
V=$LAB_VERSION
PASS=$(cat "$dir/replication-password")
DATA=/var/lib/postgresql/$V/main
CONF=/etc/postgresql/$V/main
BIN=/usr/lib/postgresql/$V/bin

s() { local h=$1; shift; ssh -F "$dir/ssh_config" -o ControlMaster=no -o ControlPath=none "$h" "$@"; }

primary= primary_addr= replicas=()
while IFS=$'\t' read -r node _ addr role; do
    [ "$role" = postgres ] || continue
    if [ -z "$primary" ]; then primary=$node primary_addr=$addr; else replicas+=("$node"); fi
done <"$dir/nodes.tsv"
n=${#replicas[@]}
slots=""
for r in "${replicas[@]}"; do slots+="SELECT pg_create_physical_replication_slot('$r');"; done

# The same settings on every member: a standby refuses to start with a lower
# max_wal_senders (and the like) than its primary's.
settings="sudo tee -a $CONF/postgresql.conf >/dev/null <<'EOF'
listen_addresses = '*'
wal_level = replica
max_wal_senders = $((n * 3 + 4))
max_replication_slots = $((n + 4))
wal_keep_size = '1GB'
EOF"

# 1. The primary, in one call.
s "$primary" "set -e
$settings
echo 'host replication replicator $LAB_SUBNET scram-sha-256' | sudo tee -a $CONF/pg_hba.conf >/dev/null
sudo pg_ctlcluster $V main restart
sudo -u postgres psql -X -q -v ON_ERROR_STOP=1 >/dev/null <<'EOF'
CREATE ROLE replicator WITH LOGIN REPLICATION PASSWORD '$PASS';
$slots
EOF"

# 2. Each replica, in parallel, one call each.
pids=()
for r in "${replicas[@]}"; do
    s "$r" "set -e
sudo pg_ctlcluster $V main stop
sudo -u postgres find $DATA -mindepth 1 -delete
echo '$primary_addr:5432:*:replicator:$PASS' | sudo -u postgres tee /var/lib/postgresql/.pgpass >/dev/null
sudo -u postgres chmod 600 /var/lib/postgresql/.pgpass
sudo -u postgres $BIN/pg_basebackup -h $primary_addr -U replicator -w -D $DATA -R -X stream -S $r --checkpoint=fast
$settings
sudo pg_ctlcluster $V main start" &
    pids+=($!)
done
rc=0
for p in "${pids[@]}"; do wait "$p" || rc=1; done
[ $rc -eq 0 ] || exit $rc

# 3. Until every replica streams.
s "$primary" "for i in \$(seq 1 600); do
  [ \"\$(sudo -u postgres psql -X -A -t -c \"SELECT count(*) FROM pg_stat_replication WHERE state = 'streaming'\")\" -ge $n ] && exit 0
  sleep 0.1
done
echo 'careful: not every replica streams after 60 s' >&2; exit 1"
