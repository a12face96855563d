#!/bin/sh
# Build every libFuzzer target with clang in its own build directory and
# run each for a bounded time (docs/fuzzing.md).
#   tests/fuzz/run-fuzz.sh [seconds-per-target=60] [build-dir=/tmp/build-fuzz]
# Environment: FUZZ_JOBS (targets run at once, default 2 if there are 2
# cores or more, else 1; each target is one process, -jobs is not used),
# FUZZ_TARGETS (a subset, e.g. "qmp_wire num"), CC (clang-14, else clang).
#
# Prints one line per target and a total line the CI log keeps:
#   fuzz: N executions in S s (qmp_wire: n, console_ring: n, ...)
# Exits non-zero if a fuzzer found a crash, a leak or a hang (the
# reproducer is written to tests/fuzz/artifacts/<target>-crash-*; add it
# to corpus/<target>/ with the fix).  New corpus entries go to the build
# directory, not to the seed corpus in git.
set -eu
secs=${1:-60}
build=${2:-/tmp/build-fuzz}
here=$(cd "$(dirname "$0")" && pwd)
src=$(cd "$here/../.." && pwd)
cc=${CC:-clang-14}
command -v "$cc" >/dev/null 2>&1 || cc=clang
ncpu=$(nproc 2>/dev/null || echo 1)
jobs=${FUZZ_JOBS:-$([ "$ncpu" -ge 2 ] && echo 2 || echo 1)}
all="qmp_wire console_ring dmargs_decode qmp_proxy_client mockxs_wire num"
targets=${FUZZ_TARGETS:-$all}

cmake -S "$src" -B "$build" -DCMAKE_C_COMPILER="$cc" \
  -DCMAKE_BUILD_TYPE=RelWithDebInfo -DSTUBDM_BUILD_FUZZ=ON \
  -DSTUBDM_BUILD_EXAMPLES=OFF -DSTUBDM_BUILD_BENCH=OFF >/dev/null
# Only the targets this tree has (fuzz_num needs lib/core/num.c): each has a
# CMakeFiles/<target>.dir, whatever the generator.
# shellcheck disable=SC2012 # the names are ours: fuzz_[a-z_]*.dir
avail=$(ls "$build/tests/fuzz/CMakeFiles" |
  sed -n 's/^fuzz_\([a-z_]*\)\.dir$/\1/p' | grep -v '^replay_' | tr '\n' ' ')
run=""
for t in $targets; do
  case " $avail " in
  *" $t "*) run="$run $t" ;;
  *) echo "fuzz: $t: no such target in this tree; skipped" ;;
  esac
done
# shellcheck disable=SC2086
set -- $run
[ "$#" -gt 0 ] || { echo "fuzz: no target to run" >&2; exit 1; }
build_targets=""
for t in "$@"; do build_targets="$build_targets fuzz_$t"; done
# shellcheck disable=SC2086
cmake --build "$build" --target $build_targets -j"$ncpu" >/dev/null

# Per-target input size bound (the rest of the options are common).
max_len() {
  case $1 in
  qmp_wire) echo 8192 ;;
  console_ring) echo 4096 ;;
  dmargs_decode) echo 8192 ;;
  qmp_proxy_client) echo 8192 ;;
  mockxs_wire) echo 16384 ;;
  num) echo 64 ;;
  *) echo 4096 ;;
  esac
}

mkdir -p "$here/artifacts"
out="$build/fuzz-results"
rm -rf "$out"
mkdir -p "$out"
# Stopped from outside (CI's timeout): the fuzzers are in sessions of their
# own, so take them (and what they started) down explicitly.
stop_all() {
  for f in "$out"/*.pid; do
    [ -f "$f" ] && kill -KILL "-$(cat "$f")" 2>/dev/null
  done
  return 0
}
trap 'stop_all; exit 1' INT TERM

# run_one TARGET: the fuzzer in its own session, so whatever it started
# (the proxy target's mock xenstored and fake QEMU) is killed with it even
# when it dies on a finding.
run_one() {
  t=$1
  log="$out/$t.log"
  mkdir -p "$build/corpus/$t"
  t0=$(date +%s)
  st=0
  setsid -w "$build/tests/fuzz/fuzz_$t" -max_total_time="$secs" \
    -max_len="$(max_len "$t")" -timeout=20 -rss_limit_mb=2048 \
    -print_final_stats=1 -artifact_prefix="$here/artifacts/$t-" \
    "$build/corpus/$t" "$here/corpus/$t" >"$log" 2>&1 &
  pid=$!
  echo "$pid" >"$out/$t.pid"
  wait "$pid" || st=$?
  kill -KILL "-$pid" 2>/dev/null || true
  rm -f "$out/$t.pid"
  n=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
  echo "$t ${n:-0} $(($(date +%s) - t0)) $st" >"$out/$t.result"
  echo "fuzz: $t: ${n:-0} executions in $(($(date +%s) - t0)) s, status $st"
}

# FUZZ_JOBS queues, round robin over the targets.
wall0=$(date +%s)
i=0
while [ "$i" -lt "$jobs" ]; do
  (
    k=0
    for t in "$@"; do
      [ $((k % jobs)) -eq "$i" ] && run_one "$t"
      k=$((k + 1))
    done
  ) &
  i=$((i + 1))
done
wait
wall=$(($(date +%s) - wall0))

total=0
per=""
failed=""
for t in "$@"; do
  read -r _ n _ st <"$out/$t.result"
  total=$((total + n))
  per="$per${per:+, }$t: $n"
  if [ "$st" -ne 0 ]; then
    failed="$failed $t"
    echo "---- fuzz_$t failed (status $st): end of $out/$t.log" >&2
    tail -n 60 "$out/$t.log" >&2
  fi
done
echo "fuzz: $total executions in $wall s ($per)"
if [ -n "$failed" ]; then
  echo "fuzz: finding in:$failed; reproducers in $here/artifacts/" >&2
  exit 1
fi
