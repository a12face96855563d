#!/bin/bash
# Crash safety of a spawn on the simulated host: `stubdm-ctl spawn` killed
# with SIGKILL at every step, then `stubdm-ctl destroy <domid>` (a new
# process, a new connection), must leave nothing: the whole xenstore as it
# was before the spawn (xenstore-ls -fp), no simulated domain (sim-list),
# no process of the spawn (the stand-in stubdomain, its QEMU, a hotplug
# script).
#
#   tests/spawn-crash.sh STUBDM-CTL STUBDM-MOCKXS-HELPER [POINT...]
#
# Points (default: all), each a fresh spawn with a raw disk and a nic whose
# hotplug scripts are fakes (hp-ok: connected at once, hp-hang: blocks):
#   create      CREATE done (entering CONTRACT)
#   contract    CONTRACT done (entering DEVICES)
#   devices     DEVICES done (entering HOTPLUG): backends, consoles served
#   hotplug     inside HOTPLUG: the disk's add script runs (and blocks)
#   unpause     HOTPLUG and UNPAUSE done (entering WAIT): the stubdomain
#               and its QEMU run
#   wait        inside WAIT: the stubdomain never writes running
#   qmp         WAIT done (entering QMP): running, QMP about to open
# The points between two waits are hit exactly by the CLI's test hook
# STUBDM_CTL_CRASH_AT (it kills itself right after printing the matching
# -v line: those steps run back to back, no outside signal can land
# between them); the three waits are hit from outside: the -v line of the
# step (and, for hotplug, the script's own start mark) read from the
# CLI's stderr, then SIGKILL.
set -u

ctl=${1:?usage: spawn-crash.sh STUBDM-CTL STUBDM-MOCKXS-HELPER [POINT...]}
helper=${2:?usage: spawn-crash.sh STUBDM-CTL STUBDM-MOCKXS-HELPER [POINT...]}
shift 2
ctl=$(cd "$(dirname "$ctl")" && pwd)/$(basename "$ctl")
points=("$@")
[ ${#points[@]} -gt 0 ] ||
    points=(create contract devices hotplug unpause wait qmp)
# Above the domids the simulated host hands out here (from 1, round robin).
GUEST=100
pass=0 fail=0

dir=$(mktemp -d "${TMPDIR:-/tmp}/stubdm-crash.XXXXXX") || exit 2
chmod 700 "$dir"
export STUBDM_SIM_DIR=$dir/sim
unset XENSTORED_PATH XDG_RUNTIME_DIR
spawn_pid=
cleanup() {
    [ -n "$spawn_pid" ] && kill -KILL "$spawn_pid" 2>/dev/null
    "$ctl" sim stop > /dev/null 2>&1
    rm -rf "$dir"
}
trap cleanup EXIT
trap 'exit 1' INT TERM

eval "$("$ctl" sim start 2> "$dir/sim-start.log")" || {
    cat "$dir/sim-start.log"; echo "cannot start the simulated host"; exit 2; }
[ -S "${XENSTORED_PATH:-}" ] || { echo "no mock socket"; exit 2; }
mock_pid=$(cat "$STUBDM_SIM_DIR/pid")

# The fake hotplug scripts (tests/test_hotplug.c has the full set): each
# start leaves "started-<type>-<action>" in $dir.
for mode in ok hang; do
    cat > "$dir/hp-$mode" <<EOF
#!/bin/sh
touch "$dir/started-\$XENBUS_TYPE-\$1"
case "\$1" in add|online) ;; *) exit 0 ;; esac
case $mode in
ok) xenstore-write "\$XENBUS_PATH/hotplug-status" connected ;;
hang) while :; do sleep 0.2; done ;;
esac
exit 0
EOF
    chmod 755 "$dir/hp-$mode"
done
: > "$dir/disk.img"

# Every process of the spawn mentions $dir in its command line (hotplug
# scripts, QEMU's -qmp socket) or is a child of the mock (the stand-in);
# the mock itself is the simulated host and stays.
leftover_processes() {
    local p cmd
    for p in /proc/[0-9]*; do
        p=${p#/proc/}
        [ "$p" = "$mock_pid" ] && continue
        [ "$p" = "$$" ] && continue
        cmd=$( { tr '\0' ' ' < "/proc/$p/cmdline"; } 2>/dev/null) || continue
        [ -n "$cmd" ] || continue
        if [[ "$cmd" == *"$dir"* && "$cmd" != *" sim "* ]] ||
           [ "$(awk '{print $4}' "/proc/$p/stat" 2>/dev/null)" = "$mock_pid" ]; then
            echo "  pid $p: $cmd"
        fi
    done
}

store() { xenstore-ls -fp 2>&1 | sort; }
# The simulated hypervisor's domains ("DOMID STATE PID" lines).
sim_domains() { "$helper" control sim-list | tr '\n' ' '; }

# wait_for FILE-OR-PATTERN SECONDS : until the CLI's stderr has the text
wait_log() {
    local text=$1 n=$(( $2 * 20 ))
    while [ $n -gt 0 ]; do
        grep -qF -- "$text" "$log" 2>/dev/null && return 0
        kill -0 "$spawn_pid" 2>/dev/null || return 1
        sleep 0.05; n=$((n - 1))
    done
    return 1
}
wait_file() {
    local f=$1 n=$(( $2 * 20 ))
    while [ $n -gt 0 ]; do
        [ -e "$f" ] && return 0
        kill -0 "$spawn_pid" 2>/dev/null || return 1
        sleep 0.05; n=$((n - 1))
    done
    return 1
}

run_point() {
    local point=$1 crash_at= disk_script=hp-ok extra=() why= domid rc
    log=$dir/spawn-$point.log
    rm -f "$dir"/started-*
    case $point in
    create)     crash_at="writing the xenstore contract" ;;
    contract)   crash_at="attaching devices" ;;
    devices)    crash_at="running hotplug scripts" ;;
    hotplug)    disk_script=hp-hang ;;
    unpause)    crash_at="waiting for running" ;;
    wait)       extra=(--sim-arg --no-running) ;;
    qmp)        crash_at="opening QMP"; extra=(--qmp) ;;
    *) echo "unknown point $point"; return 1 ;;
    esac
    local before; before=$(store)

    STUBDM_CTL_CRASH_AT=$crash_at "$ctl" -v spawn --guest $GUEST \
        --disk "$dir/disk.img,script=$dir/$disk_script" \
        --nic "script=$dir/hp-ok" --timeout 60 "${extra[@]}" \
        -- -machine none -m 16 -nodefaults -display none \
        > /dev/null 2> "$log" &
    spawn_pid=$!
    case $point in
    hotplug) wait_file "$dir/started-vbd-add" 20 || why="the add script never started" ;;
    wait)    wait_log "spawn: waiting for running" 20 || why="the spawn never reached WAIT"
             # the stand-in is up (QEMU started) once the log console has it
             sleep 0.5 ;;
    esac
    if [ -z "$crash_at" ]; then
        kill -KILL "$spawn_pid" 2>/dev/null
    fi
    wait "$spawn_pid" 2>/dev/null; rc=$?
    spawn_pid=
    [ -n "$why" ] || [ $rc -eq 137 ] ||
        why="the spawn was not killed (exit $rc)"

    # The domid: the library's "simulated domain N created" line.
    domid=$(sed -n 's/.*simulated domain \([0-9]*\) created.*/\1/p' "$log" | head -n1)
    if [ -z "$why" ] && [ -z "$domid" ]; then
        why="no domid in the log"
    fi
    local during=; [ -n "$domid" ] && during=$(sim_domains)
    if [ -z "$why" ]; then
        if ! "$ctl" destroy --script-dir "$dir" "$domid" > "$dir/destroy-$point.log" 2>&1; then
            why="destroy $domid failed: $(tr '\n' ' ' < "$dir/destroy-$point.log")"
        fi
    fi
    # A killed script's children take up to one sleep to notice.
    sleep 0.3
    local after procs doms
    after=$(store)
    procs=$(leftover_processes)
    doms=$(sim_domains)
    [ -n "$why" ] || [ "$before" = "$after" ] ||
        why="xenstore differs: $(diff <(echo "$before") <(echo "$after") | grep '^[<>]' | head -n 12 | tr '\n' ' ')"
    [ -n "$why" ] || [ -z "$doms" ] || why="simulated domains left: $doms"
    [ -n "$why" ] || [ -z "$procs" ] || why="processes left: $procs"
    if [ "$point" = hotplug ] && [ -z "$why" ] &&
       [ ! -e "$dir/started-vbd-remove" ]; then
        why="the disk's remove script did not run"
    fi
    if [ -z "$why" ]; then
        echo "PASS crash-$point (domid $domid; at the kill: ${during:-no domain})"
        pass=$((pass + 1))
    else
        echo "FAIL crash-$point: $why"
        sed 's/^/    | /' "$log" | tail -n 25
        fail=$((fail + 1))
        # Whatever is left must not spoil the next point.
        [ -n "$domid" ] && "$ctl" destroy --script-dir "$dir" "$domid" > /dev/null 2>&1
        while read -r p _; do
            [ -n "$p" ] && kill -KILL "$p" 2>/dev/null
        done < <(leftover_processes | sed 's/^  pid \([0-9]*\):.*/\1/')
    fi
}

for point in "${points[@]}"; do
    run_point "$point"
done
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
