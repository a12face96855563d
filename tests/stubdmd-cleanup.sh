#!/bin/bash
# stubdmd's cleanup after dead stubdomains on the simulated host (issue 15):
#  1. a served stubdomain (a disk and a nic with hotplug scripts) killed
#     behind stubdmd's back (SIGKILL to the stand-in): its console, vbd and
#     vif backends go, the disk's remove and the nic's offline script run,
#     its contract and sockets go; another served stubdomain and one
#     spawned without --service are untouched;
#  1b. one spawned with --service-serve-only (as libxl asks) killed: stubdmd
#     stops serving it and removes its sockets, but tears nothing down;
#     its toolstack's destroy does, each hotplug script running once;
#  2. the same while no stubdmd runs: the next stubdmd cleans up at start
#     after the one that asked for the service, and leaves alone one that
#     did not (the adoption rules select what is cleaned).
# The time from the death to the cleanup done is printed.
#
#   tests/stubdmd-cleanup.sh STUBDM-CTL STUBDMD QMP-CLIENT MOCKXS-HELPER
set -u

usage="usage: stubdmd-cleanup.sh STUBDM-CTL STUBDMD QMP-CLIENT MOCKXS-HELPER"
ctl=${1:?$usage}
daemon=${2:?$usage}
client=${3:?$usage}
helper=${4:?$usage}
. "$(dirname "$0")/stubdmd-lib.sh"

# The hotplug script, in the directory stubdmd trusts: each run logged.
mkdir "$dir/scripts"
cat > "$dir/scripts/hp" <<EOS
#!/bin/sh
echo "\$XENBUS_PATH \$1" >> "$dir/hotplug.log"
case "\$1" in add|online) ;; *) exit 0 ;; esac
xenstore-write "\$XENBUS_PATH/hotplug-status" connected
EOS
chmod 755 "$dir/scripts/hp"
: > "$dir/disk.img"
: > "$dir/hotplug.log"

ms_now() { echo $(( $(date +%s%N) / 1000000 )); }
start_daemon_hp() {
    "$daemon" --run-dir "$dir/run" --log-dir "$dir/log" \
        --qmp-dir "$dir/qmp" --hotplug-dir "$dir/scripts" \
        2>> "$dir/stubdmd.err" &
    dpid=$!
}
spawn_dev() { # GUEST [OPTION...]
    spawn "$@" --disk "$dir/disk.img,script=$dir/scripts/hp" \
        --nic "script=$dir/scripts/hp"
}
stand_in() { # STUBDOM: the pid of its stand-in process
    "$helper" control sim-list | awk -v d="$1" '$1 == d {print $3}'
}
# What dom0 and xenstore hold for a stubdomain and its guest.
nodes_of() { # STUBDOM GUEST
    for p in /local/domain/0/backend/console/$1 /local/domain/0/backend/vbd/$1 \
        /local/domain/0/backend/vif/$1 /local/domain/$2/image \
        /local/domain/$1; do
        xenstore-ls -fp "$p" 2>/dev/null
    done
}
has_backends() { # STUBDOM
    xenstore-exists "/local/domain/0/backend/vbd/$1" &&
        xenstore-exists "/local/domain/0/backend/vif/$1" &&
        xenstore-exists "/local/domain/0/backend/console/$1"
}
no_backends() { # STUBDOM
    ! xenstore-exists "/local/domain/0/backend/vbd/$1" &&
        ! xenstore-exists "/local/domain/0/backend/vif/$1" &&
        ! xenstore-exists "/local/domain/0/backend/console/$1"
}
cleaned() { # GUEST
    grep -q "(guest $1): cleaned up" "$dir/stubdmd.err"
}
ran() { # STUBDOM KIND ACTION
    grep -qE "^(/local/domain/0/)?backend/$2/$1/[0-9]+ $3\$" "$dir/hotplug.log"
}

# ---- 1. killed behind the daemon's back ----------------------------------------
start_daemon_hp
s100=$(spawn_dev 100 --service)
s101=$(spawn_dev 101 --service)
s102=$(spawn_dev 102)
[[ "$s100$s101$s102" =~ ^[0-9]+$ ]] || {
    cat "$dir/spawn.err"; echo "FAIL: spawn"; exit 1; }
check "no QMP for guest 100" until_ok 10 qmp_running 100
check "no QMP for guest 101" until_ok 10 qmp_running 101
check "no backends for $s100" has_backends "$s100"
before101=$(nodes_of "$s101" 101)
before102=$(nodes_of "$s102" 102)
t0=$(ms_now)
kill -KILL "$(stand_in "$s100")"
check "no cleanup after $s100: $(tail -3 "$dir/stubdmd.err")" \
    until_ok 20 cleaned 100
t1=$(ms_now)
check "backends of $s100 left: $(nodes_of "$s100" 100)" no_backends "$s100"
check "the disk's remove did not run: $(cat "$dir/hotplug.log")" \
    ran "$s100" vbd remove
check "the nic's offline did not run: $(cat "$dir/hotplug.log")" \
    ran "$s100" vif offline
check "the contract of guest 100 left" \
    eval '! xenstore-exists /local/domain/100/image/device-model-service'
check "the sockets of guest 100 left" \
    test ! -e "$dir/qmp/qmp-libxl-100" -a ! -e "$dir/qmp/qmp-event-100"
check "$s100 still listed: $("$ctl" list 2>&1)" \
    eval '! "$ctl" list 2>/dev/null | grep -qE "^$s100 "'
check "guest 101's stubdomain touched" \
    test "$(nodes_of "$s101" 101)" = "$before101"
check "guest 102's stubdomain touched" \
    test "$(nodes_of "$s102" 102)" = "$before102"
check "a script ran for another stubdomain: $(cat "$dir/hotplug.log")" \
    eval '! grep -qE "backend/(vbd|vif)/($s101|$s102)/[0-9]+ (remove|offline)" "$dir/hotplug.log"'
check "guest 101 no longer served" qmp_running 101
echo "killed $s100 while served: cleanup done $((t1 - t0)) ms after the kill" \
    "($(grep -o "(guest 100): cleaned up [0-9]* ms after its death was seen" \
    "$dir/stubdmd.err" | sed 's/.*cleaned up //'))"

# ---- 1b. serve only: its builder tears it down, not stubdmd ---------------------
s103=$(spawn_dev 103 --service-serve-only)
[[ "$s103" =~ ^[0-9]+$ ]] || { cat "$dir/spawn.err"; echo "FAIL: spawn 103"; exit 1; }
check "no QMP for guest 103" until_ok 10 qmp_running 103
kill -KILL "$(stand_in "$s103")"
check "stubdmd did not see $s103 go: $(tail -3 "$dir/stubdmd.err")" \
    until_ok 20 grep -q "(guest 103): gone: no longer served" "$dir/stubdmd.err"
sleep 1.5 # past the grace a destroyed one gets
check "stubdmd tore down the serve-only $s103: $(grep "guest 103" "$dir/stubdmd.err" | tail -2)" \
    has_backends "$s103"
check "a script ran for the serve-only $s103: $(cat "$dir/hotplug.log")" \
    eval '! grep -qE "backend/(vbd|vif)/$s103/[0-9]+ (remove|offline)" "$dir/hotplug.log"'
check "the sockets of guest 103 left" \
    test ! -e "$dir/qmp/qmp-libxl-103" -a ! -e "$dir/qmp/qmp-event-103"
check "its toolstack's destroy of $s103 failed" \
    "$ctl" destroy "$s103" --script-dir "$dir/scripts"
check "backends of $s103 left after its destroy" no_backends "$s103"
check "the disk's remove ran twice for $s103: $(cat "$dir/hotplug.log")" \
    test "$(grep -cE "backend/vbd/$s103/[0-9]+ remove" "$dir/hotplug.log")" = 1

# ---- 2. killed while no stubdmd runs -------------------------------------------
kill -TERM "$dpid"
wait "$dpid"
rc=$?
dpid=
check "stubdmd after SIGTERM: exit $rc, want 0" test "$rc" = 0
kill -KILL "$(stand_in "$s101")" "$(stand_in "$s102")"
sleep 0.5
check "$s101 not dead: $("$ctl" list 2>&1)" \
    eval '! "$ctl" list 2>/dev/null | grep -qE "^$s101 .*running"'
before102=$(nodes_of "$s102" 102)
t0=$(ms_now)
start_daemon_hp
check "no cleanup after $s101 at start: $(tail -3 "$dir/stubdmd.err")" \
    until_ok 20 cleaned 101
t1=$(ms_now)
check "$s101 not found dead at start: $(grep "guest 101" "$dir/stubdmd.err" | tail -3)" \
    grep -q "(guest 101): adopting .*: died while no stubdmd ran" \
    "$dir/stubdmd.err"
check "backends of $s101 left: $(nodes_of "$s101" 101)" no_backends "$s101"
check "the disk's remove did not run for $s101" ran "$s101" vbd remove
check "the nic's offline did not run for $s101" ran "$s101" vif offline
check "the contract of guest 101 left" \
    eval '! xenstore-exists /local/domain/101/image/device-model-service'
sleep 0.5
check "$s102 (no --service) cleaned up" \
    test "$(nodes_of "$s102" 102)" = "$before102"
check "$s102 (no --service): a script ran: $(cat "$dir/hotplug.log")" \
    eval '! grep -qE "backend/(vbd|vif)/$s102/[0-9]+ (remove|offline)" "$dir/hotplug.log"'
echo "killed $s101 while no stubdmd ran: cleanup done $((t1 - t0)) ms after the start"
kill -TERM "$dpid"
wait "$dpid"
rc=$?
dpid=
check "stubdmd after SIGTERM: exit $rc, want 0" test "$rc" = 0

stubdmd_summary stubdmd-cleanup
