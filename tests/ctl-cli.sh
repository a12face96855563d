#!/bin/bash
# stubdm-ctl's command line, as stubdm-ctl(1) documents it:
#  1. the option parser: every numeric option refuses an empty value, a
#     sign, trailing text, a base prefix and a value out of its range or
#     past 64 bits with exit 2 and a message naming the option and the
#     value; unknown options, missing values and unknown names likewise;
#     values at the edges of the ranges are accepted; the options each
#     command's --help lists are the ones it takes;
#  2. the exit codes of a command on the simulated host: a timeout (3),
#     and a QMP command sent on a connection lost meanwhile: exit 8 and
#     "QMP connection lost", as the list says (not 1).
#
#   tests/ctl-cli.sh STUBDM-CTL
set -u

ctl=${1:?usage: ctl-cli.sh STUBDM-CTL}
ctl=$(cd "$(dirname "$ctl")" && pwd)/$(basename "$ctl")
pass=0 fail=0
GUEST=100

dir=$(mktemp -d "${TMPDIR:-/tmp}/stubdm-ctl-cli.XXXXXX") || exit 2
chmod 700 "$dir"
export STUBDM_SIM_DIR=$dir/sim
unset XENSTORED_PATH XDG_RUNTIME_DIR
qpid=
cleanup() {
    exec 3>&- 2>/dev/null
    [ -n "$qpid" ] && kill -KILL "$qpid" 2>/dev/null
    "$ctl" sim stop > /dev/null 2>&1
    rm -rf "$dir"
}
trap cleanup EXIT
trap 'exit 1' INT TERM

ok() { pass=$((pass + 1)); }
bad() { echo "FAIL: $*"; fail=$((fail + 1)); }

# expect CODE PATTERN ARGS...: stubdm-ctl ARGS exits CODE and its stderr
# contains PATTERN (a fixed string; empty: anything).
expect() {
    local code=$1 pat=$2 rc
    shift 2
    "$ctl" "$@" > "$dir/out" 2> "$dir/err"
    rc=$?
    if [ "$rc" != "$code" ]; then
        bad "stubdm-ctl $*: exit $rc, want $code: $(head -2 "$dir/err")"
    elif [ -n "$pat" ] && ! grep -qF -- "$pat" "$dir/err"; then
        bad "stubdm-ctl $*: no '$pat' in: $(head -2 "$dir/err")"
    else
        ok
    fi
}

# ---- 1. the option parser ---------------------------------------------------

# Where each numeric option sits in a command line that is otherwise
# complete: OPTION KIND COMMAND-LINE (@ is the value).
numeric=(
    "--guest domid spawn --guest @ -- -m 16"
    "--memory uint spawn --guest 5 --memory @ -- -m 16"
    "--vcpus uint spawn --guest 5 --vcpus @ -- -m 16"
    "--stubdom-domid domid spawn --guest 5 --stubdom-domid @ -- -m 16"
    "--timeout seconds spawn --guest 5 --timeout @ -- -m 16"
    "--qmp-timeout seconds spawn --guest 5 --qmp-timeout @ -- -m 16"
    "--guest domid destroy --guest @"
    "--timeout seconds wait 1 2 --timeout @"
    "--timeout seconds qmp 1 2 query-status --timeout @"
    "--open-timeout seconds qmp 1 2 query-status --open-timeout @"
    "--timeout seconds qmp-proxy 1 2 --listen /x --timeout @"
    "--open-timeout seconds qmp-proxy 1 2 --listen /x --open-timeout @"
    "--guest domid save 1 --out /x --guest @"
    "--limit uint save 1 --out /x --limit @"
    "--timeout seconds save 1 --out /x --timeout @"
    "--stubdom domid dm-argv encode --vm /vm/x --stubdom @ -- a"
    "--max-value uint dm-argv encode --vm /vm/x --stubdom 1 --max-value @ -- a"
    "--guest domid layout --guest @ --stubdom 6 --vm /vm/x -- a"
    "--stubdom domid layout --guest 5 --stubdom @ --vm /vm/x -- a"
    "--toolstack domid layout --guest 5 --stubdom 6 --vm /vm/x --toolstack @ -- a"
)
# Past each kind's range (and, for a seconds value, below its resolution).
declare -A over=(
    [domid]="32752 99999999999999999999999"
    [uint]="18446744073709551616 99999999999999999999999"
    [seconds]="2073601 0 0.0004 99999999999999999999"
)
check_value() { # ROW VALUE PATTERN
    local opt kind line a=() w
    read -r opt kind line <<< "$1"
    for w in $line; do
        if [ "$w" = @ ]; then a+=("$2"); else a+=("$w"); fi
    done
    expect 2 "$3" "${a[@]}"
}
for row in "${numeric[@]}"; do
    read -r opt kind line <<< "$row"
    check_value "$row" "" "$opt: empty"
    for v in -1 12x 0x10 " 7" +7 1e3 "7 " 1.5.; do
        check_value "$row" "$v" "$opt: '$v' is not"
    done
    for v in ${over[$kind]}; do
        check_value "$row" "$v" "$opt: '$v' is out of range"
    done
done
# Bounds of the uint options, one past each.
check_value "${numeric[1]}" 67108865 "--memory: '67108865' is out of range"
check_value "${numeric[2]}" 4097 "--vcpus: '4097' is out of range"
check_value "${numeric[16]}" 4097 "--max-value: '4097' is out of range"
check_value "${numeric[16]}" 0 "--max-value: '0' is out of range"
check_value "${numeric[13]}" 0 "--limit: '0' is out of range"

# Other refusals: unknown option, missing value, a value on a flag, an
# unknown name, a missing command, positional domids.
expect 2 "unknown option '--bogus'" --bogus list
expect 2 "unknown option '--bogus'" list --bogus
expect 2 "unknown command 'bogus'" bogus
expect 2 "" # no command
expect 2 "--timeout needs SECONDS" wait 1 2 --timeout
expect 2 "--force takes no value" destroy 5 --force=yes
expect 2 "--encoding: unknown encoding 'x'" \
    dm-argv encode --vm /vm/x --stubdom 1 --encoding x -- a
expect 2 "--console-backend: unknown backend 'x'" \
    spawn --guest 5 --console-backend x -- -m 16
expect 2 "--transport: unknown transport 'x'" qmp 1 2 q --transport x
expect 2 "need STUBDOM and GUEST domids" wait 1 32752
expect 2 "need STUBDOM and GUEST domids" qmp 12x 2 query-status
expect 2 "bad STUBDOM domid '1x'" destroy 1x
expect 2 "bad STUBDOM domid '99999999999999999999999'" save \
    99999999999999999999999 --out /x
expect 2 "unknown option '-1'" destroy -1

# Accepted: the edges of the ranges, --opt=value, and what the library
# then makes of them (layout and dm-argv encode need no xenstore).
expect 0 "" layout --guest 32751 --stubdom 1 --vm /vm/x --toolstack=7 -- a
grep -q '^/local/domain/1/device-model/32751 = ""  (n1 r32751)' "$dir/out" &&
    grep -q '^/local/domain/1/console/backend = "/local/domain/7/' "$dir/out" ||
    bad "layout --guest 32751 --toolstack=7: $(head -8 "$dir/out")"
expect 0 "" dm-argv encode --vm /vm/x --stubdom 1 --max-value 4096 \
    --encoding esc -- a
expect 9 "" dm-argv encode --vm /vm/x --stubdom 1 --max-value 1 -- ab

# Every option a command's --help lists is in its option table (the help
# text and the table are written apart).  Not the command's own: the
# global options, another command's, the stand-in's (--sim-arg values).
foreign=" save--restore sim--sim spawn--no-hotplug spawn--die-at spawn--no-qemu "
foreign+="list--control save--control console--control restore--control "
foreign+="spawn--in restore--service restore--restore-by-service restore--restore "
for cmd in console destroy dm-argv layout list qmp qmp-proxy restore save sim \
    spawn wait; do
    for o in $("$ctl" "$cmd" --help | grep -oE -- '--[a-z][a-z-]*' | sort -u); do
        [[ "$foreign" == *" $cmd$o "* ]] && continue
        if "$ctl" "$cmd" "$o" < /dev/null 2>&1 | grep -q "unknown option"; then
            bad "$cmd --help lists $o, which $cmd does not take"
        else
            ok
        fi
    done
done

# ---- 2. exit codes on the simulated host -----------------------------------

eval "$("$ctl" sim start 2> "$dir/sim-start.log")" || {
    cat "$dir/sim-start.log"; echo "cannot start the simulated host"; exit 2; }

# A light stubdomain (the stand-in answers QMP itself).
stub=$("$ctl" spawn --guest $GUEST --sim-arg --no-qemu --timeout 20 -- \
    -xen-domid $GUEST -machine xenfv -m 16 -nodefaults 2> "$dir/spawn.err")
[[ "$stub" =~ ^[0-9]+$ ]] || {
    cat "$dir/spawn.err"; echo "FAIL: spawn printed '$stub'"; exit 1; }

# A seconds value with a fraction reaches the library: a wait for a
# device model the stubdomain does not run times out after 0.3 s (exit 3),
# not a usage error.
start=$(date +%s%N)
expect 3 "STUBDM_ETIMEDOUT" wait "$stub" 91 --timeout 0.3
ms=$(( ($(date +%s%N) - start) / 1000000 ))
[ "$ms" -ge 250 ] || bad "wait --timeout 0.3 returned after $ms ms"

# The QMP shell: one command answered, then the stubdomain destroyed
# while the shell waits for its next line; that line finds the
# connection gone.
mkfifo "$dir/in"
"$ctl" qmp "$stub" $GUEST --interactive < "$dir/in" > "$dir/qmp.out" \
    2> "$dir/qmp.err" &
qpid=$!
exec 3> "$dir/in"
echo query-status >&3
for _ in $(seq 100); do
    grep -q running "$dir/qmp.out" && break
    sleep 0.1
done
grep -q '"running"' "$dir/qmp.out" ||
    bad "qmp --interactive: no query-status reply: $(cat "$dir/qmp.err")"
"$ctl" destroy "$stub" > /dev/null 2>&1 || bad "destroy $stub failed"
# Long enough for the shell's loop to see the connection close.
sleep 1
echo query-status >&3
exec 3>&-
wait "$qpid"
rc=$?
qpid=
if [ "$rc" != 8 ]; then
    bad "qmp on a lost connection: exit $rc, want 8: $(cat "$dir/qmp.err")"
elif ! grep -q "QMP connection lost" "$dir/qmp.err"; then
    bad "qmp on a lost connection: no 'QMP connection lost' in: $(cat "$dir/qmp.err")"
else
    ok
fi

echo "ctl-cli: $pass passed, $fail failed"
[ "$fail" = 0 ]
