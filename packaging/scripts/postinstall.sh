#!/bin/sh
# After install or upgrade (deb: configure; rpm: 1 or 2).
set -e
install -d -m 0700 -o ward -g ward /var/lib/ward
chmod 0700 /var/lib/ward
if [ -d /run/systemd/system ]; then
	systemctl daemon-reload >/dev/null 2>&1 || true
fi
# Services are never started or restarted by the package: a coordinator
# needs its advertised names, an agent its join string, and restarting an
# agent stops the tasks it runs.
case "$1" in
configure | 1)
	if [ -z "$2" ]; then
		cat <<'MSG'
Ward is installed. Next:
  head node:    edit /etc/ward/coordinator.json (advertise), then
                systemctl enable --now ward-coordinator
  compute node: put the join string from `ward token create` in /etc/ward/join
                (chown ward /etc/ward/join; chmod 600 /etc/ward/join), then
                systemctl enable --now ward-agent
Reference: man ward-coordinator, man ward-agent, /usr/share/doc/ward/config.md
MSG
	fi
	;;
esac
if [ "$1" = 2 ] || { [ "$1" = configure ] && [ -n "$2" ]; }; then
	echo "Ward upgraded. Restart running services to use it (drain an agent first: ward node drain NODE;"
	echo "restarting it stops its tasks): systemctl try-restart ward-coordinator ward-agent"
fi
