#!/bin/sh
# Runs every benchmark of BUILD_DIR/bench (default build/bench) and prints
# their figures.  Nothing here judges a figure: a benchmark "fails" only
# when it cannot run to the end (exit status not 0), e.g. because its peer
# or the simulated host could not start.  The last line is
# "N ran, N failed"; the exit status is non-zero if any failed.
#
# bench_stubdmd is a python3 script behind a generated wrapper (it starts
# the simulated host, 100 stubdomains and stubdmd; about a minute).
#
# bench_qmp runs pinned to one CPU (taskset -c 1) when there are two or
# more: unpinned, the wake-up of an idle vCPU decides its figures
# (docs/qmp.md, "Wall clock").
dir=${1:-build}/bench
ran=0 failed=0
for b in "$dir"/bench_*; do
    [ -x "$b" ] || continue
    name=${b##*/}
    pin=
    if [ "$name" = bench_qmp ] && [ "$(nproc)" -gt 1 ] &&
        command -v taskset > /dev/null; then
        pin="taskset -c 1"
    fi
    echo "== $name${pin:+ ($pin)}"
    t0=$(date +%s)
    if $pin "$b"; then
        echo "== $name: ran in $(($(date +%s) - t0)) s"
    else
        echo "== $name: FAILED (exit status $?)"
        failed=$((failed + 1))
    fi
    ran=$((ran + 1))
done
if [ "$ran" -eq 0 ]; then
    echo "no bench_* programs under $dir (configure with -DSTUBDM_BUILD_BENCH=ON)"
    failed=1
fi
echo "$ran ran, $failed failed"
[ "$failed" -eq 0 ]
