#!/bin/bash
# Run by `lab up` through docker exec: install the lab's client key for every
# login user, then print this node's ed25519 host key for known_hosts.
set -euo pipefail
key=$1
for user in ubuntu root pwsudo; do
    home=$(getent passwd "$user" | cut -d: -f6)
    group=$(id -gn "$user")
    install -d -m 0700 -o "$user" -g "$group" "$home/.ssh"
    printf '%s\n' "$key" >"$home/.ssh/authorized_keys"
    chown "$user:$group" "$home/.ssh/authorized_keys"
    chmod 0600 "$home/.ssh/authorized_keys"
done
cat /etc/ssh/ssh_host_ed25519_key.pub
