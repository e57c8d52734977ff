#!/bin/bash
# Build-time configuration of a lab node (runs once, inside `docker build`).
# Per-node state (host keys, passwords, the PostgreSQL cluster) is NOT made
# here but at first boot by node.sh, so that every node is unique.
# usage: setup.sh entrypoint|systemd
set -euxo pipefail

INIT=${1:?usage: setup.sh entrypoint|systemd}
LIB=/usr/local/lib/pgrepl-lab
V=$(find /usr/lib/postgresql -mindepth 1 -maxdepth 1 -printf '%f\n' | sort -n | tail -n1)
chmod 0755 "$LIB"/*.sh
echo "$INIT" >"$LIB/init"

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

# haproxy is there for pgrepl to configure, not running: as after
# `apt install haproxy` followed by `systemctl disable --now haproxy`.
command -v haproxy

[ "$INIT" = systemd ] || exit 0

# ---- systemd as PID 1 ------------------------------------------------------

# The lab's own units, for this PostgreSQL major.
for u in pgrepl-lab-boot.service pgrepl-lab-ready.service; do
    sed "s/@V@/$V/g" "$LIB/$u" >"/etc/systemd/system/$u"
done
# The pgctl layout's server, as a PGDG package's postgresql-V unit would run it
# (enabled by node.sh on pgctl nodes only).
cat >"/etc/systemd/system/postgresql-$V.service" <<UNIT
[Unit]
Description=PostgreSQL $V database server (pgctl layout)
After=network.target

[Service]
Type=notify
User=postgres
Group=postgres
Environment=PGDATA=/var/lib/pgsql/$V/data
ExecStart=/usr/lib/postgresql/$V/bin/postgres -D \${PGDATA}
ExecReload=/bin/kill -HUP \$MAINPID
KillMode=mixed
KillSignal=SIGINT
TimeoutSec=300

[Install]
WantedBy=multi-user.target
UNIT
# What runs is what the packages enabled when they were installed. systemd's
# first boot would apply the presets (Debian's: enable everything, haproxy,
# ssh.socket and systemd-networkd included): let them enable nothing.
mkdir -p /etc/systemd/system-preset
echo 'disable *' >/etc/systemd/system-preset/00-pgrepl-lab.preset
systemctl enable pgrepl-lab-boot.service pgrepl-lab-ready.service
systemctl disable haproxy.service
# No timers that would wake up to reach a mirror or scrub disks mid-test; no
# consoles (there is no tty).
systemctl mask apt-daily.timer apt-daily-upgrade.timer dpkg-db-backup.timer \
    e2scrub_all.timer fstrim.timer getty@tty1.service console-getty.service \
    systemd-firstboot.service
systemctl set-default multi-user.target
# A unique machine id per node: generated at first boot (which makes it a
# first boot for systemd: ConditionFirstBoot, presets).
echo uninitialized >/etc/machine-id
rm -f /var/lib/dbus/machine-id
ln -s /etc/machine-id /var/lib/dbus/machine-id
