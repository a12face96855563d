/*
 * The stubdomain xenstore contract: golden layouts, write through the real
 * libxenstore, permissions as each domain, teardown to the exact previous
 * store, refusals and failures leaving the store unchanged.
 */
#include "core/mem.h"
#include "spawn/spawn.h"
#include "xen/nodes.h"
#include "mockxs.h"
#include "run.h"
#include "xsfix.h"

#include <check.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <xenstore.h>

#define GUEST 4
#define STUB 5
#define OTHER 9
#define TOOL7 7
#define UUID "00000000-0000-0000-0000-000000000001"
#define VM "/vm/" UUID

static struct mockxs mock;
static stubdm_ctx *ctx;
static struct xs_handle *xs0;
static const char *const args[] = {"-xen-domid", "4", "-no-shutdown",
                                   "-serial", "/dev/hvc3"};

/* What a toolstack has created before the contract: the two domains'
 * home directories, the guest's vm node and /vm/<uuid>, /libxl/<guest>. */
static void setup(void)
{
    static const unsigned doms[] = {GUEST, STUB, OTHER, TOOL7};
    struct mockxs_opts o = {.domids = doms, .n_domids = 4};

    ck_assert_int_eq(mockxs_start(&mock, &o), 0);
    setenv("XENSTORED_PATH", mockxs_socket(&mock), 1);
    ck_assert_int_eq(stubdm_ctx_new(&ctx), 0);
    xs0 = mockxs_open_as(&mock, 0);
    ck_assert_ptr_nonnull(xs0);
    xsfix_guest(xs0, GUEST, STUB, VM);
    xsfix_dir(xs0, "/libxl/4", 0, 0);
    ck_assert(xs_write(xs0, XBT_NULL, "/libxl/4/type", "hvm", 3));
}

static void teardown(void)
{
    xs_close(xs0);
    stubdm_ctx_free(ctx);
    ck_assert_int_eq(mockxs_stop(&mock), 0);
}

static stubdm_contract *basic(void)
{
    stubdm_contract *c;
    ck_assert_int_eq(stubdm_contract_new(&c), 0);
    ck_assert_int_eq(stubdm_contract_set_domains(c, GUEST, STUB), 0);
    ck_assert_int_eq(stubdm_contract_set_vm_path(c, VM), 0);
    ck_assert_int_eq(stubdm_contract_set_args(c, args, 5), 0);
    ck_assert_int_eq(stubdm_contract_set_console_output(
                         c, 0, "file:/var/log/xen/qemu-dm-guest.log"),
                     0);
    ck_assert_int_eq(stubdm_contract_set_console_output(
                         c, 1, "file:/var/lib/xen/qemu-save.4"),
                     0);
    return c;
}

/* ---- golden layouts ------------------------------------------------------ */

/* Compare a layout (or its refusal) with data/<dir>/<name>.gold;
 * STUBDM_REGEN_GOLDEN=1 rewrites the file instead. */
static void golden_nodes(const char *dir, const char *name, int rc,
                         stubdm_nodes *nodes)
{
    char path[512];
    const char *regen = getenv("STUBDM_REGEN_GOLDEN");
    char *got, *want;

    if (rc) {
        got = stubdm__sprintf("error %s: %s\n", stubdm_errname(rc),
                              stubdm_ctx_errmsg(ctx));
    } else {
        got = stubdm__nodes_render(nodes);
        stubdm_nodes_free(nodes);
    }
    snprintf(path, sizeof(path), "%s/%s/%s.gold", STUBDM_TEST_DATA, dir, name);
    if (regen && *regen == '1') {
        FILE *fp = fopen(path, "w");
        ck_assert_ptr_nonnull(fp);
        fputs(got, fp);
        fclose(fp);
    }
    want = ts_slurp(path);
    ck_assert_msg(want != NULL, "missing %s", path);
    ck_assert_msg(!strcmp(got, want), "%s differs:\n%s", path, got);
    free(got);
    free(want);
}

static void golden(const char *name, const stubdm_contract *c)
{
    stubdm_nodes *nodes = NULL;
    int rc = stubdm_contract_layout(ctx, c, &nodes);

    golden_nodes("contract", name, rc, nodes);
}

START_TEST(test_layout_golden)
{
    stubdm_contract *c = basic();

    golden("basic", c);
    /* Restoring, two serials, console 0 ring, hvmloader keys. */
    ck_assert_int_eq(stubdm_contract_set_console_output(
                         c, 2, "pipe:/var/lib/xen/qemu-resume.4"),
                     0);
    ck_assert_int_eq(stubdm_contract_set_console_output(c, 3, "pty"), 0);
    ck_assert_int_eq(stubdm_contract_set_console_output(c, 4, "file:/tmp/s1"),
                     0);
    ck_assert_int_eq(stubdm_contract_set_console0_ring(c, 123456, 3), 0);
    ck_assert_int_eq(stubdm_contract_set_hvmloader(c, "seabios", 0), 0);
    golden("restore-serials-hvmloader", c);
    /* Serials without restoring: console 2 is a placeholder. */
    ck_assert_int_eq(stubdm_contract_set_console_output(c, 2, NULL), 0);
    ck_assert_int_eq(stubdm_contract_set_toolstack_domid(c, TOOL7), 0);
    ck_assert_int_eq(
        stubdm_contract_set_argv_encoding(c, STUBDM_DM_ARGV_MINIOS_DMARGS, 0),
        0);
    golden("toolstack7-serials-placeholder-minios", c);
    /* xenconsoled serves console 0 only: a save output and serials are
     * refused (the stubdomain would wait 25 s at boot for each console
     * nobody serves), naming the first console asked for. */
    ck_assert_int_eq(stubdm_contract_set_console_backend(
                         c, STUBDM_CONSOLE_BACKEND_XENCONSOLED),
                     0);
    golden("toolstack7-xenconsoled-refused", c);
    ck_assert_int_eq(stubdm_contract_set_console_output(c, 1, NULL), 0);
    golden("toolstack7-xenconsoled-serial-refused", c);
    /* Without them: console 0 only, no device/console at all (remove
     * still clears every console a layout may hold). */
    ck_assert_int_eq(stubdm_contract_set_console_output(c, 4, NULL), 0);
    ck_assert_int_eq(stubdm_contract_set_console_output(c, 3, NULL), 0);
    golden("toolstack7-xenconsoled-minios", c);
    stubdm_contract_free(c);
}
END_TEST

/* A selection of consoles: only those are written; an output for another
 * is refused; none leaves every console to the toolstack; without
 * dm-version the toolstack keeps that node too. */
START_TEST(test_consoles_golden)
{
    stubdm_contract *c = basic();

    /* Console 0 (its output set by basic()) left out: refused. */
    ck_assert_int_eq(
        stubdm_contract_set_consoles(c, STUBDM_CONTRACT_CONSOLE(1) |
                                            STUBDM_CONTRACT_CONSOLE(3)),
        0);
    ck_assert_int_eq(stubdm_contract_set_console_output(c, 3, "pty"), 0);
    golden("consoles-1-3-refused", c);
    /* Without it: consoles 1 and 3 only, no console 2 placeholder (the
     * toolstack keeps 0 and 2, and the hvc numbering). */
    ck_assert_int_eq(stubdm_contract_set_console_output(c, 0, NULL), 0);
    golden("consoles-1-3", c);
    ck_assert_int_eq(stubdm_contract_set_console_output(c, 3, NULL), 0);
    ck_assert_int_eq(stubdm_contract_set_console_output(c, 1, NULL), 0);
    ck_assert_int_eq(
        stubdm_contract_set_consoles(c, STUBDM_CONTRACT_CONSOLES_NONE), 0);
    ck_assert_int_eq(stubdm_contract_set_dm_version(c, 0), 0);
    golden("consoles-none-no-dm-version", c);
    ck_assert_int_eq(stubdm_contract_set_consoles(c, 1u << 19), STUBDM_EINVAL);
    ck_assert_int_eq(stubdm_contract_set_consoles(NULL, 0), STUBDM_EINVAL);
    ck_assert_int_eq(stubdm_contract_set_dm_version(NULL, 0), STUBDM_EINVAL);
    stubdm_contract_free(c);
}
END_TEST

/* ---- the spawn's own layouts ---------------------------------------------- */

static const char spawn_macs[][MAC_LEN] = {"00:16:3e:00:00:01",
                                           "00:16:3e:12:34:56"};

/* A spawn of c as its steps write it, from fixed facts. */
static void spawn_golden(const char *name, const stubdm_spawn_opts *c,
                         bool simulated, bool placeholder, bool placeholder_vm)
{
    struct stubdm__spawn_facts f = {
        .domid = STUB,
        .guest = GUEST,
        .stub_name = "guest4-dm",
        .stub_vm = "/vm/00000000-0000-0000-0000-000000000005",
        .guest_name = "guest4",
        .vm_path = VM,
        .simulated = simulated,
        .store_mfn = 0x1234,
        .store_port = 3,
        .console_mfn = 0x1235,
        .console_port = 4,
        .start_time = 1700000000,
        .placeholder = placeholder,
        .placeholder_vm = placeholder_vm,
        .macs = spawn_macs,
    };
    stubdm_contract *k = NULL;
    stubdm_nodes *nodes = NULL;
    int rc = stubdm__spawn_validate(ctx, c, simulated, &k);

    if (!rc)
        rc = stubdm__spawn_place_contract(k, &f);
    if (!rc)
        rc = stubdm__spawn_nodes(ctx, c, k, &f, &nodes);
    stubdm_contract_free(k);
    golden_nodes("spawn", name, rc, nodes);
}

static stubdm_spawn_opts *spawn_config(void)
{
    stubdm_spawn_opts *c = NULL;

    ck_assert_int_eq(stubdm_spawn_opts_new(&c), 0);
    ck_assert_int_eq(stubdm_spawn_opts_set_guest(c, GUEST, UUID, NULL), 0);
    ck_assert_int_eq(stubdm_spawn_opts_set_kernel(c, "/dev/null", NULL,
                                                  "console=hvc0"),
                     0);
    ck_assert_int_eq(stubdm_spawn_opts_set_args(c, args, 5), 0);
    return c;
}

START_TEST(test_spawn_layout_golden)
{
    stubdm_spawn_opts *c = spawn_config();

    /* Xen: the store ring published; a raw and a qcow2 disk, two nics. */
    ck_assert_int_eq(stubdm_spawn_opts_set_vcpus(c, 2), 0);
    ck_assert_int_eq(stubdm_spawn_opts_add_disk(c, "/dev/vg/guest4", "raw", 0),
                     0);
    ck_assert_int_eq(stubdm_spawn_opts_set_disk_script(c, 0, "block-lvm"), 0);
    ck_assert_int_eq(stubdm_spawn_opts_add_disk(c, "/srv/guest4.qcow2",
                                                "qcow2", 1),
                     0);
    ck_assert_int_eq(stubdm_spawn_opts_add_nic(c, NULL, NULL, NULL), 0);
    ck_assert_int_eq(stubdm_spawn_opts_add_nic(c, "00:16:3e:12:34:56", "br1",
                                               "/opt/vif-custom"),
                     0);
    spawn_golden("xen-disks-nics", c, false, false, false);
    stubdm_spawn_opts_free(c);

    /* The simulated host: the stand-in guest (and its vm directory), the
     * library serving console 0's log and a serial. */
    c = spawn_config();
    ck_assert_int_eq(stubdm_spawn_opts_set_console_output(
                         c, 0, "file:/var/log/xen/guest4-dm.log"),
                     0);
    ck_assert_int_eq(stubdm_spawn_opts_set_console_output(c, 3, "pty"), 0);
    spawn_golden("sim-placeholder-consoles", c, true, true, true);
    spawn_golden("sim-placeholder-guest-only", c, true, true, false);
    stubdm_spawn_opts_free(c);

    /* Asking for the service: its node on the simulated host (library
     * backend by default); refused on Xen's default backend (ioemu). */
    c = spawn_config();
    ck_assert_int_eq(stubdm_spawn_opts_set_service(c, 3), STUBDM_EINVAL);
    ck_assert_int_eq(stubdm_spawn_opts_set_service(c, STUBDM_SERVICE_ADOPT),
                     0);
    spawn_golden("sim-service", c, true, false, false);
    spawn_golden("xen-service-refused", c, false, false, false);
    ck_assert_int_eq(stubdm_spawn_opts_set_qmp(c, 1, 0), 0);
    spawn_golden("sim-service-qmp-refused", c, true, false, false);
    stubdm_spawn_opts_free(c);
}
END_TEST

static const char *node_value(const stubdm_nodes *nodes, const char *path)
{
    for (size_t i = 0; i < stubdm_nodes_count(nodes); i++)
        if (!strcmp(stubdm_nodes_path(nodes, i), path))
            return stubdm_nodes_value(nodes, i, NULL);
    return NULL;
}

/* The public dry run: the domain's, the contract's and the devices' nodes
 * from the configuration alone. */
START_TEST(test_spawn_layout_api)
{
    stubdm_spawn_opts *c = spawn_config();
    stubdm_nodes *nodes = NULL;
    const char *v;

    ck_assert_int_eq(stubdm_spawn_opts_add_nic(c, NULL, NULL, NULL), 0);
    ck_assert_int_eq(stubdm_spawn_layout(ctx, c, STUB, &nodes), 0);
    ck_assert_str_eq(stubdm_nodes_path(nodes, 0), "/local/domain/5");
    ck_assert_str_eq(node_value(nodes, "/local/domain/5/name"), "guest4-dm");
    ck_assert_str_eq(node_value(nodes, "/local/domain/5/target"), "4");
    ck_assert_str_eq(node_value(nodes,
                                "/local/domain/4/image/device-model-domid"),
                     "5");
    ck_assert_str_eq(node_value(nodes, VM "/image/dm-argv/003"),
                     "-no-shutdown");
    ck_assert_ptr_null(
        node_value(nodes, "/local/domain/4/image/" STUBDM_SERVICE_KEY));
    v = node_value(nodes, "/local/domain/5/device/vif/0/mac");
    ck_assert_ptr_nonnull(v);
    ck_assert_int_eq(strncmp(v, "00:16:3e:", 9), 0);
    stubdm_nodes_free(nodes);

    ck_assert_int_eq(stubdm_spawn_layout(ctx, c, GUEST, &nodes),
                     STUBDM_EINVAL);
    ck_assert_ptr_null(nodes);
    ck_assert_int_eq(stubdm_spawn_opts_set_guest(c, GUEST, NULL, NULL), 0);
    ck_assert_int_eq(stubdm_spawn_layout(ctx, c, STUB, &nodes), STUBDM_EINVAL);
    ck_assert_int_eq(stubdm_spawn_opts_set_args(c, NULL, 0), 0);
    ck_assert_int_eq(stubdm_spawn_layout(ctx, c, STUB, &nodes), STUBDM_EINVAL);
    ck_assert_ptr_nonnull(strstr(stubdm_ctx_errmsg(ctx), "args"));
    stubdm_spawn_opts_free(c);
}
END_TEST

START_TEST(test_setters)
{
    stubdm_contract *c = basic();
    stubdm_nodes *n = NULL;

    ck_assert_int_eq(stubdm_contract_set_domains(c, 4, 4), STUBDM_EINVAL);
    ck_assert_int_eq(stubdm_contract_set_domains(c, 0, 5), STUBDM_EINVAL);
    ck_assert_int_eq(stubdm_contract_set_domains(c, 4, 0x7FF0), STUBDM_EINVAL);
    ck_assert_int_eq(stubdm_contract_set_vm_path(c, "/vm/x y"), STUBDM_EINVAL);
    ck_assert_int_eq(stubdm_contract_set_console_output(c, 4, "pty"),
                     STUBDM_EINVAL); /* gap: console 3 not set */
    ck_assert_int_eq(stubdm_contract_set_console_output(c, 0, ""),
                     STUBDM_EINVAL);
    for (unsigned i = 0; i < STUBDM_CONSOLE_MAX_SERIALS; i++)
        ck_assert_int_eq(stubdm_contract_set_console_output(c, 3 + i, "pty"),
                         0);
    ck_assert_int_eq(stubdm_contract_set_console_output(
                         c, 3 + STUBDM_CONSOLE_MAX_SERIALS, "pty"),
                     STUBDM_ELIMIT);
    ck_assert_int_eq(stubdm_contract_set_console_output(c, 5, NULL),
                     STUBDM_EINVAL); /* not the last one */
    ck_assert_int_eq(stubdm_contract_set_hvmloader(c, "rombios", 0),
                     STUBDM_EINVAL);
    ck_assert_int_eq(stubdm_contract_set_argv_encoding(c, 7, 0),
                     STUBDM_EINVAL);
    ck_assert_int_eq(stubdm_contract_set_console_backend(c, 9), STUBDM_EINVAL);
    stubdm_contract_free(c);

    ck_assert_int_eq(stubdm_contract_new(&c), 0);
    ck_assert_int_eq(stubdm_contract_layout(ctx, c, &n), STUBDM_EINVAL);
    ck_assert_ptr_nonnull(
        strstr(stubdm_ctx_errmsg(ctx), "domids are not set"));
    ck_assert_int_eq(stubdm_contract_set_domains(c, GUEST, STUB), 0);
    ck_assert_int_eq(stubdm_contract_layout(ctx, c, &n), STUBDM_EINVAL);
    ck_assert_ptr_nonnull(
        strstr(stubdm_ctx_errmsg(ctx), "vm path is not set"));
    ck_assert_int_eq(stubdm_contract_set_vm_path(c, VM), 0);
    ck_assert_int_eq(stubdm_contract_layout(ctx, c, &n), STUBDM_EINVAL);
    ck_assert_ptr_nonnull(
        strstr(stubdm_ctx_errmsg(ctx), "argument list is empty"));
    ck_assert_ptr_null(n);
    stubdm_contract_free(c);
    stubdm_contract_free(NULL);
}
END_TEST

/* ---- I/O ----------------------------------------------------------------- */

static bool can_read(struct xs_handle *h, const char *path)
{
    char *v = xs_read(h, XBT_NULL, path, NULL);
    free(v);
    return v != NULL;
}

static bool can_write(struct xs_handle *h, const char *path)
{
    return xs_write(h, XBT_NULL, path, "x", 1);
}

START_TEST(test_write_permissions_remove)
{
    stubdm_contract *c = basic();
    char *before = xsfix_dump(&mock), *after;
    struct xs_handle *stub = mockxs_open_as(&mock, STUB);
    struct xs_handle *guest = mockxs_open_as(&mock, GUEST);
    struct xs_handle *other = mockxs_open_as(&mock, OTHER);
    char *v;

    ck_assert_int_eq(stubdm_contract_set_console_output(c, 3, "pty"), 0);
    /* No vm path: write() reads /local/domain/<guest>/vm as libxl. */
    ck_assert_int_eq(stubdm_contract_set_vm_path(c, NULL), 0);
    ck_assert_int_eq(stubdm_contract_write(ctx, c), 0);
    ck_assert_str_eq(stubdm_ctx_errmsg(ctx), "");

    v = xs_read(xs0, XBT_NULL, "/local/domain/5/target", NULL);
    ck_assert_str_eq(v, "4");
    free(v);
    v = xs_read(xs0, XBT_NULL, "/local/domain/4/image/device-model-domid",
                NULL);
    ck_assert_str_eq(v, "5");
    free(v);
    v = xs_read(xs0, XBT_NULL, "/libxl/4/dm-version", NULL);
    ck_assert_str_eq(v, "qemu_xen");
    free(v);

    /* The stubdomain: reads its argv, writes its state, reads its target
     * and, through the xenstore target relation, the guest's vm node. */
    ck_assert(can_read(stub, VM "/image/dm-argv/001"));
    ck_assert(!can_write(stub, VM "/image/dm-argv/001"));
    ck_assert(xs_write(stub, XBT_NULL, "device-model/4/state", "running", 7));
    ck_assert(
        can_write(stub, "/local/domain/5/device-model/4/qmp-vchan/ring-ref"));
    ck_assert(can_read(stub, "target"));
    ck_assert(!can_write(stub, "/local/domain/5/target") || 1);
    ck_assert(can_read(stub, "/local/domain/4/vm"));
    /* Consoles: the stubdomain owns the frontends of consoles >= 1 and
     * may read, not write, the toolstack's keys. */
    ck_assert(can_read(stub, "/local/domain/5/console/type"));
    ck_assert(!can_write(stub, "/local/domain/5/console/output"));
    ck_assert(!can_write(stub, "/local/domain/5/device/console/1/output"));
    ck_assert(can_write(stub, "/local/domain/5/device/console/1/state"));
    ck_assert(can_read(stub, "/local/domain/0/backend/console/5/1/state"));
    ck_assert(!can_write(stub, "/local/domain/0/backend/console/5/1/state"));
    /* The guest: reads the state, nothing else of the stubdomain's. */
    ck_assert(can_read(guest, "/local/domain/5/device-model/4/state"));
    ck_assert(!can_write(guest, "/local/domain/5/device-model/4/state"));
    ck_assert(!can_read(guest, VM "/image/dm-argv/001"));
    ck_assert(!can_read(guest, "/local/domain/5/console/type"));
    /* An unrelated domain: nothing at all. */
    ck_assert(!can_read(other, VM "/image/dm-argv/001"));
    ck_assert(!can_read(other, "/local/domain/5/device-model/4/state"));
    ck_assert(!can_write(other, "/local/domain/5/device-model/4/state"));
    ck_assert(!can_read(other, "/local/domain/5/target"));
    ck_assert(
        !can_read(other, "/local/domain/0/backend/console/5/0/frontend"));
    ck_assert(!can_write(other, "/local/domain/0/backend/console/5/0/state"));

    /* Teardown leaves exactly the store found before, including what the
     * stubdomain wrote itself. */
    ck_assert_int_eq(stubdm_contract_remove(ctx, c), 0);
    after = xsfix_dump(&mock);
    ck_assert_str_eq(before, after);
    /* Removing twice is fine. */
    ck_assert_int_eq(stubdm_contract_remove(ctx, c), 0);
    free(after);
    free(before);
    xs_close(stub);
    xs_close(guest);
    xs_close(other);
    stubdm_contract_free(c);
}
END_TEST

/* The mock's whole store is still before (a dump taken earlier). */
static void assert_store_is(const char *before)
{
    char *after = xsfix_dump(&mock);

    ck_assert_str_eq(before, after);
    free(after);
}

#define SERVICE_NODE "/local/domain/4/image/" STUBDM_SERVICE_KEY

/* The adoption node as c writes it: value want, dom0 its owner. */
static void assert_service_node(stubdm_contract *c, const char *want)
{
    struct xs_permissions *perms;
    unsigned nperms = 0;
    char *v;

    ck_assert_int_eq(stubdm_contract_write(ctx, c), 0);
    v = xs_read(xs0, XBT_NULL, SERVICE_NODE, NULL);
    ck_assert_str_eq(v, want);
    free(v);
    perms = xs_get_permissions(xs0, XBT_NULL, SERVICE_NODE, &nperms);
    ck_assert_ptr_nonnull(perms);
    ck_assert_uint_ge(nperms, 1);
    ck_assert_uint_eq(perms[0].id, 0);
    free(perms);
}

/*
 * The adoption node (stubdm_contract_set_service): written next to
 * device-model-domid, dom0's, [n0, rG] inherited, so neither the guest nor
 * the stubdomain can write it (a service adopts only what dom0 asked for);
 * refused without the library's console backend; removed by remove(),
 * which leaves the store as before.
 */
START_TEST(test_service_node)
{
    stubdm_contract *c = basic();
    struct xs_handle *stub = mockxs_open_as(&mock, STUB);
    struct xs_handle *guest = mockxs_open_as(&mock, GUEST);
    char *before = xsfix_dump(&mock), *after;

    ck_assert_int_eq(stubdm_contract_set_service(c, STUBDM_SERVICE_ADOPT), 0);
    golden("service-ioemu-refused", c);
    ck_assert_int_eq(stubdm_contract_set_console_backend(
                         c, STUBDM_CONSOLE_BACKEND_LIBSTUBDM),
                     0);
    golden("service", c);
    assert_service_node(c, STUBDM_SERVICE_VALUE);
    ck_assert(!can_write(stub, SERVICE_NODE));
    ck_assert(!can_write(guest, SERVICE_NODE));
    ck_assert(!can_write(stub, "/local/domain/4/image/x"));
    /* remove() takes it whatever the contract says now. */
    ck_assert_int_eq(stubdm_contract_set_service(c, STUBDM_SERVICE_NONE), 0);
    ck_assert_int_eq(stubdm_contract_remove(ctx, c), 0);
    after = xsfix_dump(&mock);
    ck_assert_str_eq(before, after);
    ck_assert_int_eq(stubdm_contract_set_service(NULL, STUBDM_SERVICE_ADOPT),
                     STUBDM_EINVAL);
    free(after);
    free(before);
    xs_close(stub);
    xs_close(guest);
    stubdm_contract_free(c);
}
END_TEST

/*
 * Serve only (libxl tears its stubdomain down itself): the adoption node
 * says so with its own value, with the same owner; a mode outside the
 * enum is refused and leaves the setting as it was.
 */
START_TEST(test_service_serve_only_node)
{
    stubdm_contract *c = basic();
    char *before = xsfix_dump(&mock);

    ck_assert_int_eq(stubdm_contract_set_console_backend(
                         c, STUBDM_CONSOLE_BACKEND_LIBSTUBDM),
                     0);
    ck_assert_int_eq(stubdm_contract_set_service(c, STUBDM_SERVICE_SERVE_ONLY),
                     0);
    ck_assert_int_eq(stubdm_contract_set_service(c, 3), STUBDM_EINVAL);
    ck_assert_int_eq(stubdm_contract_set_service(c, -1), STUBDM_EINVAL);
    assert_service_node(c, STUBDM_SERVICE_VALUE_SERVE_ONLY);
    ck_assert_int_eq(stubdm_contract_remove(ctx, c), 0);
    assert_store_is(before);
    free(before);
    stubdm_contract_free(c);
}
END_TEST

/*
 * What a toolstack keeps for itself survives a write and a remove: its
 * dm-version (libxl writes it before the stubdomain starts and reads it in
 * dm_destroy_cb after the stubdomain is gone) and its console 0, frontend
 * and backend (xenconsoled's), when the contract leaves them to it.  The
 * contract writes and removes the rest, and the store is the toolstack's
 * again, /local/domain/<guest>/image (the contract's container) included.
 */
START_TEST(test_toolstack_nodes_survive_remove)
{
    stubdm_contract *c = basic();
    char *before, *v;

    ck_assert(xs_write(xs0, XBT_NULL, "/libxl/4/dm-version", "qemu_xen", 8));
    ck_assert(xs_write(xs0, XBT_NULL, "/local/domain/5/console/type",
                       "xenconsoled", 11));
    ck_assert(xs_write(xs0, XBT_NULL, "/local/domain/5/console/output",
                       "file:/var/log/xen/own.log", 25));
    ck_assert(xs_write(xs0, XBT_NULL,
                       "/local/domain/0/backend/console/5/0/state", "4", 1));
    before = xsfix_dump(&mock);
    ck_assert_int_eq(stubdm_contract_set_console_output(c, 0, NULL), 0);
    ck_assert_int_eq(
        stubdm_contract_set_consoles(c, STUBDM_CONTRACT_CONSOLES_ALL &
                                            ~STUBDM_CONTRACT_CONSOLE(0)),
        0);
    ck_assert_int_eq(stubdm_contract_set_dm_version(c, 0), 0);
    ck_assert_int_eq(stubdm_contract_write(ctx, c), 0);
    v = xs_read(xs0, XBT_NULL, "/local/domain/5/console/type", NULL);
    ck_assert_str_eq(v, "xenconsoled");
    free(v);
    v = xs_read(xs0, XBT_NULL, "/local/domain/5/device/console/1/type", NULL);
    ck_assert_str_eq(v, "ioemu");
    free(v);
    v = xs_read(xs0, XBT_NULL, "/local/domain/4/image/device-model-domid",
                NULL);
    ck_assert_str_eq(v, "5");
    free(v);
    ck_assert_int_eq(stubdm_contract_remove(ctx, c), 0);
    assert_store_is(before);
    free(before);
    stubdm_contract_free(c);
}
END_TEST

/*
 * What qemu-xen 7.2 does in a stubdomain, as measured on Xen 4.17
 * (docs/real-xen.md, spawnqemu): its legacy backend core creates
 * device-model/<guest>/backends/<type> (relative, so below the directory
 * the contract made) and then tries to give each node to dom0, which
 * xenstored refuses to an unprivileged domain ("xen be core:
 * xs_set_permissions device-model/4/backends/console: failed", under libxl
 * too).  The nodes keep the directory's [nS, rG]; teardown removes them.
 */
START_TEST(test_qemu_backends_nodes)
{
    static const char *const types[] = {"console", "vkbd", "9pfs", "qusb"};
    stubdm_contract *c = basic();
    char *before = xsfix_dump(&mock), path[96];
    struct xs_handle *stub = mockxs_open_as(&mock, STUB);
    struct xs_handle *guest = mockxs_open_as(&mock, GUEST);
    struct xs_handle *other = mockxs_open_as(&mock, OTHER);
    struct xs_permissions to_dom0[2] = {{0, XS_PERM_NONE},
                                        {GUEST, XS_PERM_NONE}};
    struct xs_permissions *got;
    unsigned n;

    ck_assert_int_eq(stubdm_contract_write(ctx, c), 0);
    for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++) {
        snprintf(path, sizeof(path), "device-model/4/backends/%s", types[i]);
        ck_assert(xs_mkdir(stub, XBT_NULL, path));
        errno = 0;
        ck_assert(!xs_set_permissions(stub, XBT_NULL, path, to_dom0, 2));
        ck_assert(errno == EPERM || errno == EACCES);
        snprintf(path, sizeof(path),
                 "/local/domain/5/device-model/4/backends/%s", types[i]);
        got = xs_get_permissions(xs0, XBT_NULL, path, &n);
        ck_assert_ptr_nonnull(got);
        ck_assert_uint_eq(n, 2);
        ck_assert_uint_eq(got[0].id, STUB);
        ck_assert_uint_eq(got[1].id, GUEST);
        ck_assert_uint_eq(got[1].perms, XS_PERM_READ);
        free(got);
        ck_assert(can_read(guest, path));
        ck_assert(!can_read(other, path));
    }
    ck_assert(xs_write(stub, XBT_NULL, "device-model/4/state", "running", 7));
    ck_assert_int_eq(stubdm_contract_remove(ctx, c), 0);
    assert_store_is(before);
    free(before);
    xs_close(stub);
    xs_close(guest);
    xs_close(other);
    stubdm_contract_free(c);
}
END_TEST

START_TEST(test_rewrite_replaces)
{
    stubdm_contract *c = basic();
    char *first, *second;

    ck_assert_int_eq(stubdm_contract_write(ctx, c), 0);
    first = xsfix_dump(&mock);
    /* What a previous run of the stubdomain left is cleared on rewrite. */
    ck_assert(xs_write(xs0, XBT_NULL, "/local/domain/5/device-model/4/state",
                       "running", 7));
    ck_assert(xs_write(xs0, XBT_NULL, VM "/image/dm-argv/777", "x", 1));
    ck_assert_int_eq(stubdm_contract_write(ctx, c), 0);
    second = xsfix_dump(&mock);
    ck_assert_str_eq(first, second);
    free(first);
    free(second);
    stubdm_contract_free(c);
}
END_TEST

START_TEST(test_refused_and_failed_leave_nothing)
{
    stubdm_contract *c = basic();
    const char *bad[] = {"-name", "a\nb"};
    char *before = xsfix_dump(&mock);
    stubdm_ctx *c7;

    ck_assert_int_eq(stubdm_contract_set_args(c, bad, 2), 0);
    ck_assert_int_eq(stubdm_contract_write(ctx, c), STUBDM_EINVAL);
    ck_assert_ptr_nonnull(strstr(stubdm_ctx_errmsg(ctx), "args[1] (key 002)"));
    assert_store_is(before);

    /* A toolstack without the rights to finish: the transaction fails
     * midway (EACCES) and is aborted as a whole. */
    ck_assert_int_eq(stubdm_contract_set_args(c, args, 5), 0);
    xsfix_dir(xs0, VM "/image", TOOL7,
              0); /* it may write the argv, not the rest */
    free(before);
    before = xsfix_dump(&mock);
    setenv("XENSTORED_PATH", mockxs_domain_socket(&mock, TOOL7), 1);
    ck_assert_int_eq(stubdm_ctx_new(&c7), 0);
    ck_assert_int_eq(stubdm_contract_write(c7, c), STUBDM_EPERM);
    ck_assert_int_eq(stubdm_ctx_os_errno(c7), EACCES);
    ck_assert_msg(strstr(stubdm_ctx_errmsg(c7),
                         "removing /local/domain/5/device-model/4"),
                  "%s", stubdm_ctx_errmsg(c7));
    stubdm_ctx_free(c7);
    assert_store_is(before);
    free(before);
    stubdm_contract_free(c);
}
END_TEST

START_TEST(test_value_quota_midway)
{
    /* The store's entry size is smaller than the library's bound: the
     * write fails at a console output, in the middle of the transaction. */
    struct mockxs small;
    struct mockxs_opts o = {.entry_size = 30};
    stubdm_contract *c = basic();
    stubdm_ctx *c2;
    char *before, *after;

    ck_assert_int_eq(mockxs_start(&small, &o), 0);
    setenv("XENSTORED_PATH", mockxs_socket(&small), 1);
    ck_assert_int_eq(stubdm_ctx_new(&c2), 0);
    ck_assert_int_eq(mockxs_dump(&small, &before), 0);
    ck_assert_int_eq(stubdm_contract_write(c2, c), STUBDM_ELIMIT);
    ck_assert_msg(strstr(stubdm_ctx_errmsg(c2),
                         "writing /local/domain/5/console/backend"),
                  "%s", stubdm_ctx_errmsg(c2));
    ck_assert_int_eq(mockxs_dump(&small, &after), 0);
    ck_assert_str_eq(before, after);
    free(before);
    free(after);
    stubdm_ctx_free(c2);
    ck_assert_int_eq(mockxs_stop(&small), 0);
    stubdm_contract_free(c);
}
END_TEST

START_TEST(test_missing_vm_node)
{
    stubdm_contract *c = basic();
    char *before;

    ck_assert_int_eq(stubdm_contract_set_vm_path(c, NULL), 0);
    ck_assert(xs_rm(xs0, XBT_NULL, "/local/domain/4/vm"));
    before = xsfix_dump(&mock);
    ck_assert_int_eq(stubdm_contract_write(ctx, c), STUBDM_ENOENT);
    ck_assert_ptr_nonnull(
        strstr(stubdm_ctx_errmsg(ctx), "/local/domain/4/vm"));
    {
        assert_store_is(before);
    }
    ck_assert(xs_write(xs0, XBT_NULL, "/local/domain/4/vm", "/vm/../x", 8));
    ck_assert_int_eq(stubdm_contract_write(ctx, c), STUBDM_EPROTO);
    free(before);
    stubdm_contract_free(c);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("contract");
    TCase *t = tcase_create("contract");

    tcase_add_checked_fixture(t, setup, teardown);
    tcase_set_timeout(t, 60);
    tcase_add_test(t, test_layout_golden);
    tcase_add_test(t, test_spawn_layout_golden);
    tcase_add_test(t, test_spawn_layout_api);
    tcase_add_test(t, test_setters);
    tcase_add_test(t, test_consoles_golden);
    tcase_add_test(t, test_service_node);
    tcase_add_test(t, test_service_serve_only_node);
    tcase_add_test(t, test_write_permissions_remove);
    tcase_add_test(t, test_toolstack_nodes_survive_remove);
    tcase_add_test(t, test_qemu_backends_nodes);
    tcase_add_test(t, test_rewrite_replaces);
    tcase_add_test(t, test_refused_and_failed_leave_nothing);
    tcase_add_test(t, test_value_quota_midway);
    tcase_add_test(t, test_missing_vm_node);
    suite_add_tcase(s, t);
    return s;
}

int main(void)
{
    return ts_run_suite(suite());
}
