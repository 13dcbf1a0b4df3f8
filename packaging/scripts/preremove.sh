#!/bin/sh
# Before removal (deb: remove; rpm: 0). Upgrades leave running services be.
set -e
case "$1" in
remove | 0)
	if [ -d /run/systemd/system ]; then
		systemctl --no-reload disable --now ward-coordinator.service ward-agent.service >/dev/null 2>&1 || true
	fi
	;;
esac
