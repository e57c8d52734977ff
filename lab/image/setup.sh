#!/bin/bash
# Build-time configuration of a lab node (runs once, inside `docker build`).
# Per-node state (host keys, passwords, the PostgreSQL cluster) is NOT made
# here but at first boot by entrypoint.sh, so that every node is unique.
set -euxo pipefail

# Login user like a cloud image's default user: key auth, passwordless sudo.
# Password '*' = no password but not locked, so sshd accepts key logins.
useradd --create-home --shell /bin/bash --groups sudo ubuntu
usermod -p '*' ubuntu
echo 'ubuntu ALL=(ALL) NOPASSWD:ALL' >/etc/sudoers.d/90-ubuntu

# A user whose sudo needs a password (set randomly at first boot): lets tests
# check that a tool fails fast instead of hanging on a sudo prompt.
useradd --create-home --shell /bin/bash --groups sudo pwsudo
chmod 0440 /etc/sudoers.d/90-ubuntu

# sshd: Debian includes sshd_config.d first, and the first value wins.
cat >/etc/ssh/sshd_config.d/pgrepl-lab.conf <<'CONF'
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin prohibit-password
PubkeyAuthentication yes
AllowTcpForwarding yes
MaxStartups 100:30:200
MaxSessions 20
UseDNS no
CONF
rm -f /etc/ssh/ssh_host_*

# Where the pgctl (RHEL-like) layout keeps its clusters.
install -d -o postgres -g postgres -m 0700 /var/lib/pgsql

# Later apt installs inside nodes stay small too.
cat >/etc/dpkg/dpkg.cfg.d/01-pgrepl-lab-nodoc <<'CONF'
path-exclude /usr/share/doc/*
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
CONF
chmod 0755 /usr/local/lib/pgrepl-lab/*.sh
