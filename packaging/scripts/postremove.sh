#!/bin/sh
# After removal. deb: remove, purge, upgrade...; rpm: 0 (erase) or 1 (upgrade).
set -e
case "$1" in
remove | 0)
	if [ -d /run/systemd/system ]; then
		systemctl daemon-reload >/dev/null 2>&1 || true
	fi
	;;
esac
case "$1" in
purge | 0)
	# An empty data directory goes; one that holds a cluster (CA keys, the
	# store, an agent's identity) is kept, and so is the user that owns it.
	if [ -d /var/lib/ward ] && rmdir /var/lib/ward 2>/dev/null; then
		if [ "$1" = purge ]; then
			# Debian's purge removes the user too; RPM never removes users.
			if getent passwd ward >/dev/null 2>&1; then userdel ward; fi
			if getent group ward >/dev/null 2>&1; then groupdel ward; fi
		fi
	elif [ -d /var/lib/ward ]; then
		echo "Ward: kept /var/lib/ward (it holds a cluster's keys and data) and the ward user; remove them by hand if the cluster is gone."
	fi
	;;
esac
