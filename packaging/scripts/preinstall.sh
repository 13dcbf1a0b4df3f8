#!/bin/sh
# Before Ward's files are unpacked: the ward system user and group, which
# own /var/lib/ward and run both services.
set -e
if ! getent group ward >/dev/null 2>&1; then
	groupadd --system ward
fi
if ! getent passwd ward >/dev/null 2>&1; then
	useradd --system --gid ward --home-dir /var/lib/ward --no-create-home \
		--shell /usr/sbin/nologin --comment "Ward cluster job system" ward
fi
