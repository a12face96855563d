#!/bin/sh
# Build the QMP wire fuzzer with clang in its own build directory and run
# it for a bounded time.
#   tests/fuzz/run-fuzz.sh [seconds=60] [build-dir=/tmp/build-fuzz]
# Exits non-zero if the fuzzer found a crash (the reproducer is written to
# tests/fuzz/artifacts/).  New corpus entries go to the build directory,
# not to the seed corpus in git.
set -eu
secs=${1:-60}
build=${2:-/tmp/build-fuzz}
here=$(cd "$(dirname "$0")" && pwd)
src=$(cd "$here/../.." && pwd)
cc=${CC:-clang-14}
command -v "$cc" >/dev/null 2>&1 || cc=clang

cmake -S "$src" -B "$build" -DCMAKE_C_COMPILER="$cc" \
  -DCMAKE_BUILD_TYPE=RelWithDebInfo -DSTUBDM_BUILD_FUZZ=ON \
  -DSTUBDM_BUILD_EXAMPLES=OFF -DSTUBDM_BUILD_BENCH=OFF >/dev/null
cmake --build "$build" --target fuzz_qmp_wire -j"$(nproc)" >/dev/null

mkdir -p "$build/corpus" "$here/artifacts"
log="$build/fuzz.log"
status=0
"$build/tests/fuzz/fuzz_qmp_wire" -max_total_time="$secs" -max_len=8192 \
  -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
  -artifact_prefix="$here/artifacts/" \
  "$build/corpus" "$here/corpus/qmp_wire" >"$log" 2>&1 || status=$?
grep -E '^Done [0-9]+ runs|stat::number_of_executed_units' "$log" || true
if [ "$status" -ne 0 ]; then
  tail -n 60 "$log"
  echo "fuzzer failed (status $status); see $log and $here/artifacts/" >&2
  exit 1
fi
