#!/bin/bash
# Read a dm-argv directory exactly as a real Linux stubdomain does (Qubes
# rootfs/init): one xenstore-read of the sorted full paths, split on
# newlines with globbing off.  Prints each argument followed by a NUL.
# Usage: XENSTORED_PATH=<socket of the stubdomain> readback.sh <dm-argv dir>
dm_args=$(xenstore-read $(xenstore-list -p "$1" | sort)) || exit 1
IFS=$'\n'; set -f
set -- $dm_args
for a in "$@"; do printf '%s\0' "$a"; done
