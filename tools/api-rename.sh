#!/usr/bin/env bash
# One-time migration aid for the public API naming pass (docs/api-naming.md):
# renames every old public identifier to its new name in every tracked text
# file of the tree, whatever the layout (files are found with git ls-files,
# or find outside a git checkout).  Re-runnable and idempotent: no new name
# is an old name, and identifiers are matched whole (a name is never
# rewritten inside a longer one), so a second run changes nothing.
#
# Only renames: signature changes (the stats structs, the split of
# stubdm_dm_save_sync, the op_out of stubdm_qmp_open) are in separate
# commits; code still calling the old shapes fails to compile.
#
# usage: tools/api-rename.sh [--check] [DIR]   (DIR: the tree, default .)
#   --check  change nothing; list the files that still use an old name and
#            exit 1 if there is any.
set -euo pipefail

check=0
if [ "${1:-}" = --check ]; then check=1; shift; fi
root=${1:-.}
cd "$root"

# old new: one rename a line.  Keep docs/api-naming.md's table in step.
table=$(cat <<'EOF'
stubdm_argv_free                      stubdm_dm_argv_free
stubdm_argv_encoding                  stubdm_dm_argv_encoding
STUBDM_ARGV_DIRECTORY                 STUBDM_DM_ARGV_DIRECTORY
STUBDM_ARGV_MINIOS_DMARGS             STUBDM_DM_ARGV_MINIOS_DMARGS
STUBDM_ARGV_ESC_STRING                STUBDM_DM_ARGV_ESC_STRING
STUBDM_DEFAULT_MAX_VALUE_LEN          STUBDM_DM_ARGV_DEFAULT_MAX_VALUE_LEN
STUBDM_MAX_DM_ARGS                    STUBDM_DM_ARGV_MAX_ARGS
stubdm_wait_running                   stubdm_dm_wait_running
stubdm_wait_running_sync              stubdm_dm_wait_running_sync
STUBDM_HAVE_WAIT_RUNNING              STUBDM_HAVE_DM_WAIT_RUNNING
stubdm_op_done                        stubdm_op_is_done
STUBDM_CONSOLE_IOEMU                  STUBDM_CONSOLE_BACKEND_IOEMU
STUBDM_CONSOLE_XENCONSOLED            STUBDM_CONSOLE_BACKEND_XENCONSOLED
STUBDM_CONSOLE_LIBSTUBDM              STUBDM_CONSOLE_BACKEND_LIBSTUBDM
STUBDM_MAX_SERIALS                    STUBDM_CONSOLE_MAX_SERIALS
stubdm_qmp_close                      stubdm_qmp_free
stubdm_qmp_unsubscribe                stubdm_qmp_sub_free
stubdm_qmp_oob_enabled                stubdm_qmp_is_oob_enabled
stubdm_console_close                  stubdm_console_free
stubdm_spawn_config                   stubdm_spawn_opts
stubdm_spawn_config_new               stubdm_spawn_opts_new
stubdm_spawn_config_free              stubdm_spawn_opts_free
stubdm_spawn_config_set_guest         stubdm_spawn_opts_set_guest
stubdm_spawn_config_set_name          stubdm_spawn_opts_set_name
stubdm_spawn_config_set_kernel        stubdm_spawn_opts_set_kernel
stubdm_spawn_config_set_memory_kib    stubdm_spawn_opts_set_memory_kib
stubdm_spawn_config_set_vcpus         stubdm_spawn_opts_set_vcpus
stubdm_spawn_config_set_args          stubdm_spawn_opts_set_args
stubdm_spawn_config_set_console_output  stubdm_spawn_opts_set_console_output
stubdm_spawn_config_set_console_backend stubdm_spawn_opts_set_console_backend
stubdm_spawn_config_set_log_limits    stubdm_spawn_opts_set_log_limits
stubdm_spawn_config_set_restore_fd    stubdm_spawn_opts_set_restore_fd
stubdm_spawn_config_add_disk          stubdm_spawn_opts_add_disk
stubdm_spawn_config_set_disk_script   stubdm_spawn_opts_set_disk_script
stubdm_spawn_config_add_nic           stubdm_spawn_opts_add_nic
stubdm_spawn_config_set_xsm_label     stubdm_spawn_opts_set_xsm_label
stubdm_spawn_config_set_stubdom_domid stubdm_spawn_opts_set_stubdom_domid
stubdm_spawn_config_set_timeout       stubdm_spawn_opts_set_timeout
stubdm_spawn_config_set_qmp           stubdm_spawn_opts_set_qmp
stubdm_spawn_config_set_sim_program   stubdm_spawn_opts_set_sim_program
stubdm_spawn_config_validate          stubdm_spawn_opts_validate
STUBDM_SPAWN_CREATE                   STUBDM_SPAWN_STEP_CREATE
STUBDM_SPAWN_CONTRACT                 STUBDM_SPAWN_STEP_CONTRACT
STUBDM_SPAWN_DEVICES                  STUBDM_SPAWN_STEP_DEVICES
STUBDM_SPAWN_HOTPLUG                  STUBDM_SPAWN_STEP_HOTPLUG
STUBDM_SPAWN_UNPAUSE                  STUBDM_SPAWN_STEP_UNPAUSE
STUBDM_SPAWN_WAIT                     STUBDM_SPAWN_STEP_WAIT
STUBDM_SPAWN_QMP                      STUBDM_SPAWN_STEP_QMP
STUBDM_SPAWN_RUNNING                  STUBDM_SPAWN_STEP_RUNNING
STUBDM_SPAWN_FAILED                   STUBDM_SPAWN_STEP_FAILED
STUBDM_SPAWN_DESTROYED                STUBDM_SPAWN_STEP_DESTROYED
stubdm_destroy                        stubdm_stubdom_destroy_by_domid
stubdm_destroy_ext                    stubdm_stubdom_destroy_by_domid_ext
STUBDM_DESTROY_FORCE                  STUBDM_STUBDOM_DESTROY_FORCE
stubdm_find_stubdom                   stubdm_stubdom_find_by_guest
stubdm_list                           stubdm_stubdom_list_new
EOF
)

# Files: tracked text files (or, outside git, every regular file), minus
# this script and the naming document, which hold the old names on purpose.
list_files() {
    if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
        git ls-files -z
    else
        find . -path ./.git -prune -o -path './build*' -prune -o -type f \
            -print0 | sed -z 's|^\./||'
    fi | grep -zv -e '^tools/api-rename\.sh$' -e '^docs/api-naming\.md$'
}

olds=$(awk 'NF { printf "%s%s", sep, $1; sep = "|" }' <<<"$table")
# Sanity: no new name may be an old name (the second run would chain).
dups=$(awk 'NF { old[$1] = 1; new[$2] = 1 }
            END { for (n in new) if (n in old) print n }' <<<"$table")
[ -z "$dups" ] || { echo "api-rename: new names that are old names: $dups" >&2; exit 2; }

mapfile -d '' files < <(list_files | xargs -0r grep -IlZE \
    "(^|[^A-Za-z0-9_]|\\\\f[BIRP])($olds)([^A-Za-z0-9_]|\$)" 2>/dev/null || true)

if [ "$check" = 1 ]; then
    [ "${#files[@]}" -eq 0 ] && { echo "api-rename: no old name left"; exit 0; }
    printf '%s\n' "${files[@]}"
    exit 1
fi
[ "${#files[@]}" -eq 0 ] && { echo "api-rename: nothing to rename"; exit 0; }

# One pass per file over whole identifiers: an identifier is a maximal
# [A-Za-z0-9_] run, also right after a roff font escape (\fB, \fI, ...).
export API_RENAME_TABLE=$table
perl -i -pe '
    BEGIN {
        for (split /\n/, $ENV{API_RENAME_TABLE}) {
            my ($o, $n) = split " ";
            $map{$o} = $n if defined $n;
        }
    }
    s/(?:(?<=\\f[BIRP])|(?<![A-Za-z0-9_]))((?:stubdm|STUBDM)_[A-Za-z0-9_]*)/
      exists $map{$1} ? $map{$1} : $1/ge;
' "${files[@]}"
printf 'api-rename: %d files rewritten\n' "${#files[@]}"
