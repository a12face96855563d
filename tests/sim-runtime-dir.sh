#!/bin/bash
# The simulated host's runtime directory is trusted only when it is ours
# alone, and nothing is written or signalled through a link planted in it.
#   sim-runtime-dir.sh STUBDM_CTL MOCK_XENSTORED
# Runs as root (as CI does): the hostile directories are made for a
# STUBDM_SIM_DIR, and, with setpriv, for uid nobody's default
# /tmp/libstubdm-sim-65534.
set -u
ctl=$1 mock=$2
fail=0
t=$(mktemp -d /tmp/stubdm-simdir.XXXXXX)
chmod 0755 "$t"
victim=
cleanup() {
    [ -n "$victim" ] && kill "$victim" 2>/dev/null
    for d in "$t"/*/ /tmp/libstubdm-sim-65534/; do
        [ -S "$d/socket" ] || continue
        STUBDM_SIM_DIR=${d%/} "$ctl" sim stop >/dev/null 2>&1
    done
    rm -rf "$t"
    [ "${as_nobody:-0}" = 1 ] && rm -rf /tmp/libstubdm-sim-65534
}
trap cleanup EXIT

bad() { echo "FAIL: $*"; fail=1; }

# expect_refused WHAT GREP CMD...: the command fails and says why.
expect_refused() {
    local what=$1 pat=$2 out
    shift 2
    if out=$("$@" 2>&1); then
        bad "$what: accepted: $out"
    elif ! grep -q -- "$pat" <<<"$out"; then
        bad "$what: no '$pat' in: $out"
    else
        echo "ok: $what: $(head -1 <<<"$out")"
    fi
}

# empty DIR: nothing was created in it
empty() { [ -z "$(ls -A "$1")" ]; }

run_root() { env -u XDG_RUNTIME_DIR STUBDM_SIM_DIR="$1" "$ctl" sim "${@:2}"; }

# 1. owned by another uid
mkdir -m 0700 "$t/other"; chown nobody "$t/other"
expect_refused "dir owned by another uid" "owned by uid 65534" \
    run_root "$t/other" start
empty "$t/other" || bad "something was created in $t/other"
# 2. group/other access
mkdir -m 0700 "$t/open"; chmod 0777 "$t/open"
expect_refused "dir with mode 0777" "mode 0777" run_root "$t/open" start
empty "$t/open" || bad "something was created in $t/open"
# 3. a symlink to a directory that would pass
mkdir -m 0700 "$t/real"; ln -s "$t/real" "$t/link"
expect_refused "symlinked dir" "symbolic link" run_root "$t/link" start
empty "$t/real" || bad "something was created through the link"
# 4. a pid symlink: sim stop must not signal what it names
mkdir -m 0700 "$t/pidlink"
sleep 300 & victim=$!
echo "$victim" >"$t/victim.pid"
ln -s "$t/victim.pid" "$t/pidlink/pid"
: >"$t/pidlink/socket"
run_root "$t/pidlink" stop >/dev/null 2>&1
sleep 0.2
if kill -0 "$victim" 2>/dev/null; then
    echo "ok: sim stop did not signal the process a pid symlink names"
else
    bad "sim stop signalled pid $victim through a symlinked pid file"
fi
[ "$(cat "$t/victim.pid")" = "$victim" ] || bad "victim.pid was rewritten"
# 5. start through a planted pid symlink: the target is never written
mkdir -m 0700 "$t/start"
echo keep >"$t/target"
ln -s "$t/target" "$t/start/pid"
if run_root "$t/start" start >/dev/null 2>&1; then
    [ "$(cat "$t/target")" = keep ] || bad "sim start wrote through the pid link"
    [ -L "$t/start/pid" ] && bad "the pid link is still there"
    run_root "$t/start" stop >/dev/null 2>&1
    echo "ok: sim start replaced the pid symlink, target untouched"
else
    bad "sim start failed in a clean directory with a stale pid link"
fi
# 6. the mock itself never writes its pidfile through a link
mkdir -m 0700 "$t/mock"
echo keep >"$t/mtarget"
ln -s "$t/mtarget" "$t/mock/pid.lnk"
"$mock" --dir "$t/mock" --daemon --pidfile "$t/mock/pid.lnk" >/dev/null 2>&1
sleep 0.2
if [ "$(cat "$t/mtarget")" = keep ]; then
    echo "ok: the mock did not write its pidfile through a symlink"
else
    bad "the mock wrote its pid through a symlink"
    kill "$(cat "$t/mtarget")" 2>/dev/null
fi
pkill_mock() { [ -f "$1" ] && kill "$(cat "$1")" 2>/dev/null; }
pkill_mock "$t/mock/pid.lnk"
sleep 0.2

# 7. uid nobody's predictable default, /tmp/libstubdm-sim-65534
if command -v setpriv >/dev/null && [ "$(id -u)" = 0 ] &&
   setpriv --reuid=65534 --regid=65534 --clear-groups test -x "$ctl"; then
    as_nobody=1
    nob() { env -u XDG_RUNTIME_DIR -u STUBDM_SIM_DIR -u XENSTORED_PATH \
        setpriv --reuid=65534 --regid=65534 --clear-groups "$ctl" sim "$@"; }
    d=/tmp/libstubdm-sim-65534
    rm -rf "$d"
    mkdir -m 0700 "$d"   # created first by root
    expect_refused "nobody: default dir owned by root" "owned by uid 0" nob start
    empty "$d" || bad "something was created in $d"
    rm -rf "$d"; mkdir -m 0777 "$d"; chown nobody "$d"; chmod 0777 "$d"
    expect_refused "nobody: default dir mode 0777" "mode 0777" nob start
    rm -rf "$d"; mkdir -m 0700 "$t/nreal"; chown nobody "$t/nreal"
    ln -s "$t/nreal" "$d"
    expect_refused "nobody: default dir a symlink" "symbolic link" nob start
    empty "$t/nreal" || bad "something was created through $d"
    rm -f "$d"
    if nob start >/dev/null 2>&1 && nob status >/dev/null 2>&1; then
        echo "ok: nobody: a fresh default dir works"
    else
        bad "nobody: sim start in a fresh $d failed"
    fi
    nob stop >/dev/null 2>&1
    [ -e "$d" ] && bad "$d left after sim stop"
else
    echo "skip: no setpriv or not root: the uid-nobody cases did not run"
fi
exit $fail
