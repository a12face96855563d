# The common part of the stubdmd tests on the simulated host (sourced by
# tests/stubdmd*.sh, after they set ctl, daemon and client): a private
# simulated host and directories, the checks' counters, and the helpers
# that spawn a stubdomain, start a stubdmd and look at what it serves.
# The sourcing script ends with stubdmd_summary.
pass=0 fail=0

dir=$(mktemp -d "${TMPDIR:-/tmp}/stubdmd-test.XXXXXX") || exit 2
chmod 700 "$dir"
export STUBDM_SIM_DIR=$dir/sim
unset XENSTORED_PATH XDG_RUNTIME_DIR
mkdir "$dir/log" "$dir/qmp"
dpid=
cleanup() {
    [ -n "$dpid" ] && kill -KILL "$dpid" 2>/dev/null
    "$ctl" sim stop > /dev/null 2>&1
    rm -rf "$dir"
}
trap cleanup EXIT
trap 'exit 1' INT TERM

ok() { pass=$((pass + 1)); }
bad() { echo "FAIL: $*"; fail=$((fail + 1)); }
check() { # DESCRIPTION COMMAND...
    local what=$1
    shift
    if "$@"; then ok; else bad "$what"; fi
}
# until SECONDS COMMAND...: true once COMMAND succeeds within SECONDS.
until_ok() {
    local end=$((SECONDS + $1))
    shift
    while ! "$@"; do
        [ $SECONDS -lt $end ] || return 1
        sleep 0.1
    done
}

eval "$("$ctl" sim start 2> "$dir/sim-start.log")" || {
    cat "$dir/sim-start.log"; echo "cannot start the simulated host"; exit 2; }

spawn() { # GUEST [OPTION...]: prints the stubdomain's domid
    local g=$1
    shift
    "$ctl" spawn --guest "$g" "$@" --sim-arg --no-qemu --timeout 20 -- \
        -xen-domid "$g" -machine xenfv -m 16 -nodefaults 2>> "$dir/spawn.err"
}
start_daemon() {
    "$daemon" --run-dir "$dir/run" --log-dir "$dir/log" \
        --qmp-dir "$dir/qmp" 2>> "$dir/stubdmd.err" &
    dpid=$!
}
qmp_running() { # GUEST
    "$client" "$dir/qmp/qmp-libxl-$1" query-status 10 > "$dir/qmp.out" \
        2>> "$dir/qmp.err" && grep -q '"status":"running"' "$dir/qmp.out"
}
logged() { # GUEST TEXT
    grep -qF "$2" "$dir/log/qemu-dm-guest$1-dm.log" 2>/dev/null
}
be_state() { # STUBDOM
    xenstore-read "/local/domain/0/backend/console/$1/0/state" 2>/dev/null
}


# stubdmd_summary NAME: the counts, what the daemon and the QMP client
# said when something failed, and the exit status.
stubdmd_summary() {
    echo "$1: $pass passed, $fail failed"
    [ "$fail" = 0 ] || { echo "--- stubdmd's stderr"; cat "$dir/stubdmd.err"
        echo "--- the QMP client's stderr"; cat "$dir/qmp.err"; }
    [ "$fail" = 0 ]
}
