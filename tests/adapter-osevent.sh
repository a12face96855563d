#!/bin/bash
# examples/loop-osevent.c on the simulated host: the library driven from a
# loop that, like libxl's, only registers fds (the ctx's timer a timerfd
# the adapter registers as one more fd), with the dispatch's context seen
# by the callback.  The wait completes when "running" is written, and a
# wait nobody answers times out through the timerfd.
#
#   tests/adapter-osevent.sh STUBDM-CTL LOOP-OSEVENT-EXAMPLE MOCKXS-HELPER
set -u

ctl=${1:?usage: adapter-osevent.sh STUBDM-CTL EXAMPLE HELPER}
demo=${2:?}
helper=${3:?}
fail=0

dir=$(mktemp -d "${TMPDIR:-/tmp}/stubdm-osevent.XXXXXX") || exit 2
chmod 700 "$dir"
export STUBDM_SIM_DIR=$dir/sim
unset XENSTORED_PATH XDG_RUNTIME_DIR
pid=
cleanup() {
    [ -n "$pid" ] && kill -KILL "$pid" 2> /dev/null
    "$ctl" sim stop > /dev/null 2>&1
    rm -rf "$dir"
}
trap cleanup EXIT
trap 'exit 1' INT TERM

eval "$("$ctl" sim start)" || exit 1
"$helper" introduce 5 1 1 > /dev/null || exit 1
"$helper" write /local/domain/5/device-model/4/state starting > /dev/null ||
    exit 1

"$demo" 5 4 20000 > "$dir/out" 2>&1 &
pid=$!
sleep 0.5
"$helper" write /local/domain/5/device-model/4/state running > /dev/null
wait "$pid"
rc=$?
pid=
if [ "$rc" != 0 ] || ! grep -q '^running after' "$dir/out"; then
    echo "FAIL: the wait for running: exit $rc: $(cat "$dir/out")"
    fail=1
fi

start=$(date +%s%N)
"$demo" 5 4 300 > /dev/null 2>&1 # already running: at once
rc=$?
[ "$rc" = 0 ] || { echo "FAIL: running already written: exit $rc"; fail=1; }

"$helper" write /local/domain/5/device-model/9/state starting > /dev/null
"$demo" 5 9 300 > "$dir/out" 2>&1
rc=$?
ms=$((($(date +%s%N) - start) / 1000000))
if [ "$rc" != 3 ]; then
    echo "FAIL: a wait nobody answers: exit $rc, want 3 (timed out): $(cat "$dir/out")"
    fail=1
fi
echo "adapter-osevent: $([ $fail = 0 ] && echo ok || echo FAILED) (${ms} ms for the last two)"
exit $fail
