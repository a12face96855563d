#!/bin/sh
# libstubdm demo on the simulated host (no Xen needed):
#   start the simulated host, spawn a stubdomain for a guest, wait for
#   running, ask its QEMU `query-status` over QMP, show the log console,
#   destroy it, prove nothing is left, stop the simulated host.
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
stub=

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
# Processes running under our simulated host's directory.
ours() { pgrep -f -- "$STUBDM_SIM_DIR" || true; }

cleanup() {
    status=$?
    trap - EXIT INT TERM
    if [ -n "$stub" ]; then "$ctl" destroy "$stub" >/dev/null 2>&1 || true; fi
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

step "spawn a stubdomain for guest $guest (QEMU: -machine xenfv -m 16)"
start=$(date +%s%N)
stub=$("$ctl" spawn --guest "$guest" --guest-name demo --log "$log" \
        --memory 128 --timeout 20 -- \
        -xen-domid "$guest" -machine xenfv -m 16 -nodefaults -display none \
        -no-shutdown)
echo "stubdomain $stub for guest $guest after $(( ($(date +%s%N) - start) / 1000000 )) ms"
"$ctl" list

step "device model state, read as the toolstack"
xenstore-read "/local/domain/$stub/device-model/$guest/state"

step "query-status through QMP (the simulated vchan)"
"$ctl" qmp "$stub" "$guest" query-status

step "last lines of the log console ($log)"
tail -n 4 "$log"

step "destroy it"
"$ctl" destroy "$stub"
stub=
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
