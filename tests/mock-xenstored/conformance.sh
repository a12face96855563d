#!/bin/sh
# xenstore conformance checks driven only by the real xenstore-* tools
# (plus stubdm-mockxs-helper for SET_TARGET and errno reporting), so the
# same script runs against the mock and against a real xenstored.
#
#   conformance.sh [--start-mock BINARY] [--helper HELPER]
#
# Environment (when not using --start-mock):
#   XENSTORED_PATH    the dom0 xenstored socket (required)
#   XS_CONF_DOMAINS   "GUEST:SOCKET OTHER:SOCKET STUB:SOCKET": sockets whose
#                     connections act as three unprivileged domains.  Unset
#                     on a real host: the checks needing them print SKIP.
#   XS_CONF_HELPER    stubdm-mockxs-helper (or --helper); else SKIP.
#   XS_CONF_CONTROL   a real xenstore-control binary for the mock-only
#                     sim-release check (default: /usr/lib/xen-*/bin/...,
#                     from xen-utils-4.17; missing with the mock: FAIL).
#   XS_CONF_BASE      scratch subtree (default /tool/xs-conformance-PID),
#                     removed at the end.
# Output: one line per check (PASS/FAIL/SKIP), then "N skipped" and
# finally "N passed, N failed".  Exit status 1 if anything failed.
set -u

mock_bin=""
helper="${XS_CONF_HELPER:-}"
while [ $# -gt 0 ]; do
	case "$1" in
	--start-mock) mock_bin="$2"; shift 2 ;;
	--helper) helper="$2"; shift 2 ;;
	*) echo "usage: $0 [--start-mock BINARY] [--helper HELPER]" >&2; exit 2 ;;
	esac
done

passed=0 failed=0 skipped=0
pass() { passed=$((passed + 1)); echo "PASS: $1"; }
fail() { failed=$((failed + 1)); echo "FAIL: $1"; }
skip() { skipped=$((skipped + 1)); echo "SKIP: $1"; }
check() { # check DESCRIPTION COMMAND...
	d="$1"; shift
	if "$@"; then pass "$d"; else fail "$d"; fi
}
eq() { # eq GOT WANT
	[ "$1" = "$2" ] && return 0
	printf '  got:  %s\n  want: %s\n' "$1" "$2"
	return 1
}

mock_pid="" tmp=""
cleanup() {
	if [ -n "$mock_pid" ]; then
		kill "$mock_pid" 2>/dev/null
		wait "$mock_pid" 2>/dev/null
	fi
	[ -n "$tmp" ] && rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 1' INT TERM

if [ -n "$mock_bin" ]; then
	tmp=$(mktemp -d "${TMPDIR:-/tmp}/xsconf-XXXXXX")
	# The mock dies with this script, even a SIGKILLed one.
	setpriv --pdeathsig KILL -- "$mock_bin" --dir "$tmp" --domain-socket "5:$tmp/d5" \
		--domain-socket "6:$tmp/d6" --domain-socket "9:$tmp/d9" &
	mock_pid=$!
	i=0
	while [ ! -S "$tmp/d9" ] || [ ! -S "$tmp/socket" ]; do
		i=$((i + 1))
		if [ $i -gt 100 ]; then echo "mock did not start"; exit 1; fi
		sleep 0.05
	done
	XENSTORED_PATH="$tmp/socket"
	XS_CONF_DOMAINS="5:$tmp/d5 6:$tmp/d6 9:$tmp/d9"
	if [ -z "${XS_CONF_CONTROL:-}" ]; then
		# The binary itself (xen-utils-4.17), not Debian's
		# /usr/bin/xenstore-control wrapper, which refuses to run
		# without a hypervisor in sysfs
		for c in /usr/lib/xen-*/bin/xenstore-control; do
			[ -x "$c" ] && XS_CONF_CONTROL="$c"
		done
	fi
fi
if [ -z "${XENSTORED_PATH:-}" ]; then
	echo "XENSTORED_PATH must name the dom0 xenstored socket" >&2
	exit 2
fi
export XENSTORED_PATH
dom0_sock="$XENSTORED_PATH"
B="${XS_CONF_BASE:-/tool/xs-conformance-$$}"

# Strip xenstore-ls's dotted padding: 'k = "v" . . .  (n0)' -> 'k = "v" (n0)'
ls_p() { xenstore-ls -p "$1" | sed -E 's/"[ .]*\(/" (/'; }

# --- dom0 basics -------------------------------------------------------
xenstore-write "$B/k" "hello world"
check "write then read" eq "$(xenstore-read "$B/k")" "hello world"
xenstore-write "$B/k" ""
check "empty value" eq "$(xenstore-read "$B/k")" ""
xenstore-write "$B/l/one" 1 "$B/l/two" 2 "$B/l/three" 3
# The order of children differs between daemons (C xenstored and the mock:
# creation order; Xen 4.17's oxenstored: sorted by name), and nothing in
# the protocol depends on it, so compare as sets.
check "list returns every child" eq "$(xenstore-list "$B/l" | sort | tr '\n' ' ')" "one three two "
xenstore-chmod "$B/l/two" n0 r0
check "ls -p shows values and permissions" eq "$(ls_p "$B/l" | sort)" \
"one = \"1\" (n0)
three = \"3\" (n0)
two = \"2\" (n0,r0)"
check "exists: present" xenstore-exists "$B/l/one"
check "exists: absent" sh -c '! xenstore-exists "$1/nothere"' sh "$B"
check "read of a missing node fails" sh -c '! xenstore-read "$1/nothere" 2>/dev/null' sh "$B"
xenstore-rm "$B/l/one"
check "rm removes the node" sh -c '! xenstore-exists "$1/l/one"' sh "$B"
check "rm of a missing child of an existing node succeeds" xenstore-rm "$B/l/one"
check "invalid path refused" sh -c '! xenstore-write "$1/bad path" x 2>/dev/null' sh "$B"

# --- watches -----------------------------------------------------------
wout="${TMPDIR:-/tmp}/xsconf-watch-$$"
xenstore-write "$B/w" ""
timeout 10 xenstore-watch -n 4 "$B/w" >"$wout" &
wpid=$!
i=0
while [ ! -s "$wout" ] && [ $i -lt 100 ]; do sleep 0.05; i=$((i + 1)); done
xenstore-write "$B/w/a" 1
xenstore-write "$B/other" 1
xenstore-chmod "$B/w/a" n0 r0
xenstore-rm "$B/w"
wait $wpid
check "watch: initial fire, child write, chmod, rm (other paths silent)" \
	eq "$(cat "$wout")" "$B/w
$B/w/a
$B/w/a
$B/w"
rm -f "$wout"

# --- entry-size quota (2048 bytes by default) --------------------------
v2048=$(head -c 2048 /dev/zero | tr '\0' 'x')
v4000=$(head -c 4000 /dev/zero | tr '\0' 'x')
check "2048-byte value accepted" xenstore-write "$B/q" "$v2048"
check "2048-byte value reads back" eq "$(xenstore-read "$B/q" | wc -c)" "2049"
check "4000-byte value refused" sh -c '! xenstore-write "$1/q" "$2" 2>/dev/null' sh "$B" "$v4000"

# --- acting as other domains -------------------------------------------
guest="" guest_sock="" other="" other_sock="" stub="" stub_sock=""
if [ -n "${XS_CONF_DOMAINS:-}" ]; then
	set -- $XS_CONF_DOMAINS
	guest=${1%%:*} guest_sock=${1#*:}
	other=${2%%:*} other_sock=${2#*:}
	stub=${3%%:*} stub_sock=${3#*:}
fi
as() { # as SOCKET COMMAND...
	s="$1"; shift
	XENSTORED_PATH="$s" "$@"
}
errno_of() { # errno_of SOCKET read PATH -> strerror text via the helper
	as "$1" "$helper" read "$2" 2>/dev/null | sed -n 's/^error: //p'
}

if [ -z "$guest" ]; then
	for c in "unprivileged read refused" "unprivileged write under dom0 node refused" \
		 "chmod by non-owner refused" "domain relative paths" "guest creates and owns" \
		 "other domain cannot read guest node" "watch events filtered by read permission"; do
		skip "$c (XS_CONF_DOMAINS unset)"
	done
else
	G=/local/domain/$guest
	xenstore-write "$G/name" guest
	xenstore-chmod "$G" "n$guest"
	xenstore-chmod "$G/name" "n$guest"
	xenstore-write "$B/secret" s
	check "unprivileged read refused" sh -c '! XENSTORED_PATH="$1" xenstore-read "$2" 2>/dev/null' \
		sh "$guest_sock" "$B/secret"
	if [ -n "$helper" ]; then
		check "unprivileged read refused with EACCES" \
			eq "$(errno_of "$guest_sock" "$B/secret")" "Permission denied"
	fi
	check "unprivileged write under dom0 node refused" \
		sh -c '! XENSTORED_PATH="$1" xenstore-write "$2/new" x 2>/dev/null' sh "$guest_sock" "$B"
	check "chmod by non-owner refused" \
		sh -c '! XENSTORED_PATH="$1" xenstore-chmod "$2" "b$3" 2>/dev/null' sh "$guest_sock" "$B/secret" "$guest"
	check "domain relative paths" eq "$(as "$guest_sock" xenstore-read name)" guest
	as "$guest_sock" xenstore-write data/x 1
	check "guest creates and owns" eq "$(ls_p "$G/data")" "x = \"1\" (n$guest)"
	check "other domain cannot read guest node" \
		sh -c '! XENSTORED_PATH="$1" xenstore-read "$2/data/x" 2>/dev/null' sh "$other_sock" "$G"

	wout="${TMPDIR:-/tmp}/xsconf-watch-$$"
	XENSTORED_PATH="$other_sock" timeout 10 xenstore-watch -n 2 "$G" >"$wout" &
	wpid=$!
	i=0
	while [ ! -s "$wout" ] && [ $i -lt 100 ]; do sleep 0.05; i=$((i + 1)); done
	xenstore-write "$G/data/hidden" 1
	xenstore-write "$B/vis" 1
	xenstore-chmod "$B/vis" n0 "r$other"
	xenstore-write "$G/data/shown" 1
	xenstore-chmod "$G/data/shown" "n$guest" "r$other"
	wait $wpid
	check "watch events filtered by read permission" eq "$(cat "$wout")" "$G
$G/data/shown"
	rm -f "$wout"
fi

if [ -z "$guest" ] || [ -z "$helper" ]; then
	skip "SET_TARGET gives the stub domain its target's rights (needs XS_CONF_DOMAINS and the helper)"
else
	check "stub domain refused before SET_TARGET" \
		eq "$(errno_of "$stub_sock" "$G/data/x")" "Permission denied"
	"$helper" set-target "$stub" "$guest" >/dev/null
	check "stub domain reads its target's node after SET_TARGET" \
		eq "$(as "$stub_sock" xenstore-read "$G/data/x")" 1
	check "stub domain writes its target's node after SET_TARGET" \
		as "$stub_sock" xenstore-write "$G/data/x" 2
fi

# --- mock-only: the simulated host's domain-death hook -------------------
if [ -z "$mock_bin" ]; then
	skip "xenstore-control sim-release (mock only)"
elif [ -z "${XS_CONF_CONTROL:-}" ]; then
	fail "xenstore-control sim-release: no xenstore-control binary (make deps installs xen-utils-4.17)"
else
	check "xenstore-control sim-release" eq "$("$XS_CONF_CONTROL" sim-release 7 crashed)" OK
	check "sim-release records the reason" \
		eq "$(ls_p /tool/stubdm-sim/domain/7)" 'exit = "crashed" (n0)'
	xenstore-rm /tool/stubdm-sim
fi

# --- clean up -----------------------------------------------------------
xenstore-rm "$B"
[ -n "$guest" ] && xenstore-rm "/local/domain/$guest"
check "scratch tree removed" sh -c '! xenstore-exists "$1"' sh "$B"
if [ -n "$mock_pid" ]; then
	kill "$mock_pid"
	wait "$mock_pid"
	rc=$?
	mock_pid=""
	check "mock exits cleanly on SIGTERM and removes its sockets" \
		sh -c '[ "$1" -eq 0 ] && [ ! -e "$2/socket" ] && [ ! -e "$2/d5" ]' sh "$rc" "$tmp"
fi

echo "$skipped skipped"
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
