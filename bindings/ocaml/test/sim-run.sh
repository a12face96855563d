#!/bin/bash
# Run a command on a private simulated host (stubdm-ctl sim start: the mock
# xenstored, simulated stubdomains running a real QEMU), as the shell tests
# under tests/ do; the host is stopped afterwards, whatever the command did.
#
#   sim-run.sh STUBDM-CTL [--valgrind|--helgrind] COMMAND [ARGS...]
#
# The command gets XENSTORED_PATH and STUBDM_SIM_DIR of that host and
# STUBDM_TEST_DIR, a private scratch directory.  --valgrind runs it under
# memcheck as CI's valgrind stage runs the Check suites, --helgrind under
# helgrind (the OCaml runtime's own lock-free fields suppressed).
set -u
ctl=${1:?usage: sim-run.sh STUBDM-CTL [--valgrind|--helgrind] COMMAND [ARGS...]}
shift
ctl=$(cd "$(dirname "$ctl")" && pwd)/$(basename "$ctl")
wrap=()
supp=$(cd "$(dirname "$0")" && pwd)
if [ "${1:-}" = --helgrind ]; then
    shift
    wrap=(valgrind --tool=helgrind --quiet --error-exitcode=1
        --suppressions="$supp/helgrind.supp")
elif [ "${1:-}" = --valgrind ]; then
    shift
    wrap=(valgrind --quiet --error-exitcode=1 --leak-check=full
        --show-leak-kinds=definite,indirect
        --errors-for-leak-kinds=definite,indirect --track-origins=yes
        --suppressions="$supp/ocaml.supp")
fi
dir=$(mktemp -d "${TMPDIR:-/tmp}/stubdm-ocaml.XXXXXX") || exit 2
chmod 700 "$dir"
export STUBDM_SIM_DIR=$dir/sim STUBDM_TEST_DIR=$dir
unset XENSTORED_PATH XDG_RUNTIME_DIR
cleanup() {
    "$ctl" sim stop > /dev/null 2>&1
    rm -rf "$dir"
}
trap cleanup EXIT
trap 'exit 1' INT TERM
eval "$("$ctl" sim start 2> "$dir/sim-start.log")" || {
    cat "$dir/sim-start.log"; echo "cannot start the simulated host"; exit 2; }
[ -S "${XENSTORED_PATH:-}" ] || { echo "no mock socket"; exit 2; }
export XENSTORED_PATH
# An ASan build: OCaml 4.13 installs its own alternate signal stack on
# every thread it starts, which ASan then fails to unmap at the thread's
# exit ("unable to unmap"); ASan's own is not needed here.
export ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}use_sigaltstack=0"
cd "$dir" && "${wrap[@]}" "$@"
