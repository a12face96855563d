#!/bin/sh
# libstubdm demo on the simulated host (no Xen needed):
#   start the simulated host, spawn a stubdomain for a guest (its consoles
#   served by the library: no QEMU in dom0), wait for running, ask its QEMU
#   `query-status` over QMP, show the log that came through console 0,
#   save the device model's state through console 1, restore it into a new
#   stubdomain through console 2, destroy, prove nothing is left, stop the
#   simulated host.
#
# usage: examples/demo.sh [BUILD_DIR]      (default: ./build)
#   STUBDM_CTL=/path/to/stubdm-ctl overrides the binary.
set -eu

build=${1:-build}
ctl=${STUBDM_CTL:-$build/examples/stubdm-ctl}
[ -x "$ctl" ] || { echo "demo: no stubdm-ctl at $ctl (build first, or pass BUILD_DIR)" >&2; exit 2; }
command -v xenstore-ls >/dev/null || { echo "demo: xenstore-ls (xen-utils) is needed" >&2; exit 2; }
command -v qemu-system-x86_64 >/dev/null || { echo "demo: qemu-system-x86_64 is needed" >&2; exit 2; }

work=$(mktemp -d "${TMPDIR:-/tmp}/stubdm-demo.XXXXXX")
export STUBDM_SIM_DIR="$work/sim"      # a private simulated host
unset XENSTORED_PATH
guest=5
log="$work/qemu-dm-guest$guest.log"
state="$work/guest$guest.dm-state"
stub=
serve=

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
# Processes running under our simulated host's directory.
ours() { pgrep -f -- "$STUBDM_SIM_DIR" || true; }

cleanup() {
    status=$?
    trap - EXIT INT TERM
    if [ -n "$stub" ]; then "$ctl" destroy "$stub" >/dev/null 2>&1 || true; fi
    if [ -n "$serve" ]; then kill "$serve" 2>/dev/null || true; wait "$serve" 2>/dev/null || true; fi
    "$ctl" sim stop >/dev/null 2>&1 || true
    rm -rf "$work"
    exit $status
}
trap cleanup EXIT INT TERM

step "start the simulated host"
eval "$("$ctl" sim start)"
echo "XENSTORED_PATH=$XENSTORED_PATH"
xenstore-ls -fp > "$work/before.txt"
echo "xenstore before: $(wc -l < "$work/before.txt") nodes"

# spawn --serve: the library serves the stubdomain's consoles (log, save,
# restore, serials) from this process's event loop, so it stays running in
# the background; it prints the domid, then serves until the domain is gone.
spawn_serving() { # OUTFILE ARGS...
    out=$1; shift
    "$ctl" spawn --guest "$guest" --guest-name demo --log "$log" \
        --memory 128 --timeout 20 --serve "$@" -- \
        -xen-domid "$guest" -machine xenfv -m 16 -nodefaults -display none \
        -no-shutdown > "$out" 2> "$out.err" &
    serve=$!
    i=0
    while [ ! -s "$out" ]; do
        if ! kill -0 "$serve" 2>/dev/null || [ $i -ge 200 ]; then
            cat "$out.err" >&2; echo "demo: FAIL: spawn" >&2; exit 1
        fi
        sleep 0.1; i=$((i + 1))
    done
    stub=$(cat "$out")
}
stop_serving() {
    "$ctl" destroy "$stub"
    stub=
    wait "$serve" 2>/dev/null || true
    serve=
}
# Every QEMU of this simulated host runs inside a stubdomain.
no_dom0_qemu() {
    for p in $(pgrep -f -- "qemu-system.*$STUBDM_SIM_DIR" || true); do
        parent=$(cat "/proc/$(awk '{print $4}' "/proc/$p/stat")/comm")
        [ "$parent" = stubdm-sim-stub ] || {
            echo "demo: FAIL: QEMU $p's parent is $parent" >&2; exit 1; }
        echo "QEMU $p runs inside stubdomain process $(awk '{print $4}' "/proc/$p/stat") ($parent); none in dom0"
    done
}

step "spawn a stubdomain for guest $guest (QEMU: -machine xenfv -m 16)"
start=$(date +%s%N)
spawn_serving "$work/stub1"
echo "stubdomain $stub for guest $guest after $(( ($(date +%s%N) - start) / 1000000 )) ms (consoles served by the library)"
"$ctl" list
no_dom0_qemu

step "device model state, read as the toolstack"
xenstore-read "/local/domain/$stub/device-model/$guest/state"

step "query-status through QMP (the simulated vchan)"
"$ctl" qmp "$stub" "$guest" query-status

step "the log, as it came through console 0's ring ($log)"
grep -c . "$log" | sed 's/$/ lines written by the library'"'"'s console 0 backend/'
grep -E "fdset 1|device model running" "$log"

step "save the device model's state through console 1"
"$ctl" save "$stub" --out "$state"
echo "$(wc -c < "$state") bytes in $state (starts with $(head -c 4 "$state"))"
stop_serving

step "restore it into a new stubdomain through console 2"
start=$(date +%s%N)
spawn_serving "$work/stub2" --restore "$state"
echo "stubdomain $stub restored and running after $(( ($(date +%s%N) - start) / 1000000 )) ms"
grep restored "$work/stub2.err" || true
"$ctl" qmp "$stub" "$guest" query-migrate
no_dom0_qemu

step "destroy it"
stop_serving
xenstore-ls -fp > "$work/after.txt"
if diff -u "$work/before.txt" "$work/after.txt"; then
    echo "xenstore after: identical to before ($(wc -l < "$work/after.txt") nodes)"
else
    echo "demo: FAIL: xenstore differs after destroy" >&2
    exit 1
fi
left=$(ours | grep -v "^$$\$" || true)
for p in $left; do
    # Only the mock xenstored itself may remain until `sim stop`.
    case "$(cat "/proc/$p/cmdline" 2>/dev/null | tr '\0' ' ')" in
        *stubdm-mock-xenstored*) ;;
        *) echo "demo: FAIL: process $p left: $(tr '\0' ' ' < "/proc/$p/cmdline")" >&2; exit 1 ;;
    esac
done
echo "processes: no stubdomain or QEMU left"

step "stop the simulated host"
"$ctl" sim stop
echo
echo "demo: OK"
