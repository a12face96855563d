#!/bin/bash
# stubdm-ctl's PCI passthrough on the simulated host (docs/pci.md): a fake
# sysfs with one pciback device and one bound to another driver, a shell
# stand-in for pciback/pcifront (the bus Connected whenever it is
# configured), the stand-in stubdomain's simulated xen-pci-passthrough:
#  - spawn --pci: the device on the bus, its slot from query-pci, its
#    permissions in the simulated hypervisor's tables; destroy: nothing
#    left;
#  - pci-attach / pci-list / pci-detach on a running stubdomain, and
#    their refusals (not pciback's: exit 5 naming the driver; no IOMMU:
#    exit 11; not attached: exit 5; a bad address: exit 2), each leaving
#    nothing.
#
#   tests/ctl-pci.sh STUBDM-CTL
set -u

ctl=${1:?usage: ctl-pci.sh STUBDM-CTL}
ctl=$(cd "$(dirname "$ctl")" && pwd)/$(basename "$ctl")
pass=0 fail=0
GUEST=100
SIMT=/tool/stubdm-sim-pci

dir=$(mktemp -d "${TMPDIR:-/tmp}/stubdm-ctl-pci.XXXXXX") || exit 2
chmod 700 "$dir"
export STUBDM_SIM_DIR=$dir/sim
unset XENSTORED_PATH XDG_RUNTIME_DIR
pbpid=
cleanup() {
    [ -n "$pbpid" ] && kill "$pbpid" 2>/dev/null
    "$ctl" sim stop > /dev/null 2>&1
    rm -rf "$dir"
}
trap cleanup EXIT
trap 'exit 1' INT TERM

ok() { pass=$((pass + 1)); }
bad() { echo "FAIL: $*"; fail=$((fail + 1)); }

# expect CODE PATTERN ARGS...: stubdm-ctl ARGS exits CODE, stderr has
# PATTERN (fixed string).
expect() {
    local code=$1 pat=$2 rc
    shift 2
    "$ctl" "$@" > "$dir/out" 2> "$dir/err"
    rc=$?
    if [ "$rc" != "$code" ]; then
        bad "$*: exit $rc, not $code: $(cat "$dir/err")"
    elif [ -n "$pat" ] && ! grep -qF -- "$pat" "$dir/err"; then
        bad "$*: stderr lacks '$pat': $(cat "$dir/err")"
    else
        ok
    fi
}

# ---- the fake sysfs --------------------------------------------------------
sys=$dir/sys
mkdir -p "$sys/bus/pci/drivers/pciback/0000:00:04.0" \
    "$sys/bus/pci/drivers/e1000e" "$sys/bus/pci/devices/0000:00:04.0" \
    "$sys/bus/pci/devices/0000:00:05.0"
: > "$sys/bus/pci/drivers/pciback/do_flr"
: > "$sys/bus/pci/drivers/pciback/permissive"
: > "$sys/bus/pci/drivers/pciback/allow_interrupt_control"
echo "0x00000000fea00000 0x00000000feafffff 0x0000000000040200" \
    > "$sys/bus/pci/devices/0000:00:04.0/resource"
echo 11 > "$sys/bus/pci/devices/0000:00:04.0/irq"
ln -s ../../drivers/e1000e "$sys/bus/pci/devices/0000:00:05.0/driver"

eval "$("$ctl" sim start 2> "$dir/sim-start.log")" || {
    cat "$dir/sim-start.log"; echo "cannot start the simulated host"; exit 2; }

# pciback and pcifront: every bus in Initialising or Reconfiguring goes
# Connected.
pciback() {
    while :; do
        for s in $(xenstore-list /local/domain/0/backend/pci 2>/dev/null); do
            be=/local/domain/0/backend/pci/$s/0
            st=$(xenstore-read "$be/state" 2>/dev/null) || continue
            if [ "$st" = 1 ] || [ "$st" = 7 ]; then
                xenstore-write "/local/domain/$s/device/pci/0/state" 4 \
                    "$be/state" 4 2>/dev/null
            fi
        done
        sleep 0.05
    done
}
pciback &
pbpid=$!

gone() { ! xenstore-exists "$1" 2>/dev/null; }
nothing_left() { # what
    gone $SIMT/perm || bad "$1: permissions left: $(xenstore-ls $SIMT)"
    gone $SIMT/assigned || bad "$1: assignments left"
    for s in $(xenstore-list /local/domain/0/backend/pci 2>/dev/null); do
        bad "$1: a PCI backend is left for $s"
    done
    ok
}

qemu=(-xen-domid $GUEST -machine xenfv -m 16 -nodefaults)

# ---- spawn --pci -----------------------------------------------------------
stub=$("$ctl" spawn --guest $GUEST --qmp --sim-arg --no-qemu --timeout 20 \
    --sysfs "$sys" --pci 0000:00:04.0,vslot=6,permissive -- "${qemu[@]}" \
    2> "$dir/spawn.err")
if [[ "$stub" =~ ^[0-9]+$ ]]; then
    ok
    out=$("$ctl" pci-list "$stub")
    [ "$out" = "0000:00:04.0 06.0" ] && ok || bad "pci-list after spawn: '$out'"
    [ "$(xenstore-read $SIMT/assigned/0000-00-04-0)" = $GUEST ] && ok ||
        bad "not assigned to the guest"
    xenstore-exists "$SIMT/perm/$stub/iomem-fea00-100" && ok ||
        bad "the stubdomain lacks the BAR"
    xenstore-exists "$SIMT/perm/$GUEST/irq-11" && ok || bad "the guest lacks irq 11"
    "$ctl" destroy --sysfs "$sys" "$stub" > /dev/null 2>&1 || bad "destroy $stub failed"
    nothing_left "spawn --pci, destroy"
else
    bad "spawn --pci printed '$stub': $(cat "$dir/spawn.err")"
fi

# A device bound to another driver: the spawn refused, nothing left.
expect 5 "PCI device 0000:00:05.0 is bound to 'e1000e', not pciback" \
    spawn --guest $GUEST --qmp --sim-arg --no-qemu --timeout 20 \
    --sysfs "$sys" --pci 0000:00:05.0 -- "${qemu[@]}"
nothing_left "spawn --pci of e1000e's device"
expect 2 "bad pci" spawn --guest $GUEST --qmp --pci 0000:00:04 -- "${qemu[@]}"

# ---- attach, list, detach at runtime ----------------------------------------
stub=$("$ctl" spawn --guest $GUEST --qmp --sim-arg --no-qemu --timeout 20 \
    -- "${qemu[@]}" 2> "$dir/spawn.err")
[[ "$stub" =~ ^[0-9]+$ ]] || {
    cat "$dir/spawn.err"; echo "FAIL: spawn printed '$stub'"; exit 1; }
[ -z "$("$ctl" pci-list "$stub")" ] && ok || bad "pci-list of an empty bus"
expect 2 "need a PCI address" pci-attach "$stub" $GUEST 0000:00:4.0
expect 5 "bound to 'e1000e', not pciback" \
    pci-attach "$stub" $GUEST 0000:00:05.0 --sysfs "$sys"
nothing_left "pci-attach of e1000e's device"
xenstore-write $SIMT/no-iommu ""
expect 11 "the hypervisor has no IOMMU" \
    pci-attach "$stub" $GUEST 0000:00:04.0 --sysfs "$sys"
xenstore-rm $SIMT
nothing_left "pci-attach without an IOMMU"
expect 0 "" pci-attach "$stub" $GUEST 0000:00:04.0 --sysfs "$sys"
out=$("$ctl" --json pci-list "$stub")
[ "$out" = '{"ok":true,"command":"pci-list","devices":[{"device":"0000:00:04.0","vslot":3}]}' ] &&
    ok || bad "pci-list --json: '$out'"
expect 10 "already on stubdomain $stub's bus" \
    pci-attach "$stub" $GUEST 0000:00:04.0 --sysfs "$sys"
expect 0 "" pci-detach "$stub" $GUEST 0000:00:04.0 --sysfs "$sys"
nothing_left "pci-detach"
expect 5 "is not attached to stubdomain $stub" \
    pci-detach "$stub" $GUEST 0000:00:04.0 --sysfs "$sys"
# A destroy revokes what the bus recorded as granted, not what sysfs says
# then: here without --sysfs, where this host's own 0000:00:04.0 (if it
# has one) has other ranges, and sysfs's revocation left the granted ones.
expect 0 "" pci-attach "$stub" $GUEST 0000:00:04.0 --sysfs "$sys"
case $(xenstore-read "/local/domain/0/backend/pci/$stub/0/irq-0") in
11*) ok ;;
*) bad "irq-0 does not record the granted irq" ;;
esac
"$ctl" destroy "$stub" > /dev/null 2> "$dir/err" ||
    bad "destroy $stub failed: $(cat "$dir/err")"
nothing_left "destroy"

echo "ctl-pci: $pass passed, $fail failed"
[ "$fail" = 0 ]
