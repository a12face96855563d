/*
 * Parse throughput of qmp_wire on a ~200 KB query-qmp-schema-like reply:
 * an array of small objects with string members, as QEMU sends it.
 * Each feeding pattern is timed over several rounds of n parses; prints
 * the best and the median round in MB/s and the ratio of the median to the
 * 200 MB/s target; asserts nothing.
 *
 *   bench_qmp_parse [n [rounds]]     (defaults: 200 parses, 7 rounds)
 */
#include "core/mem.h"
#include "qmp/wire.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define TARGET_MB_S 200.0

static void add(struct stubdm__buf *b, const char *s)
{
    if (stubdm__buf_append(b, s, strlen(s)) != 0) {
        fprintf(stderr, "out of memory\n");
        exit(1);
    }
}

/* Schema entries in the shapes query-qmp-schema uses: commands, events,
 * objects with members, enums, arrays and builtins. */
static void make_schema(struct stubdm__buf *b, size_t target)
{
    static const char *const types[] = {"str", "int",    "bool",
                                        "any", "number", "null"};
    char item[1024];
    add(b, "{\"return\": [");
    for (unsigned i = 0; b->len < target; i++) {
        if (i)
            add(b, ", ");
        switch (i % 5) {
        case 0:
            snprintf(item, sizeof(item),
                     "{\"name\": \"query-thing-%u\", \"ret-type\": \"%u\", "
                     "\"meta-type\": \"command\", \"arg-type\": \"%u\"}",
                     i, i + 1, i + 2);
            break;
        case 1:
            snprintf(item, sizeof(item),
                     "{\"name\": \"%u\", \"members\": [{\"name\": \"id\", "
                     "\"type\": \"%s\"}, {\"name\": \"node-name\", "
                     "\"default\": null, \"type\": \"str\"}, {\"name\": "
                     "\"size\", \"type\": \"int\"}], \"meta-type\": "
                     "\"object\"}",
                     i, types[i % 6]);
            break;
        case 2:
            snprintf(item, sizeof(item),
                     "{\"name\": \"%u\", \"meta-type\": \"enum\", \"values\": "
                     "[\"none\", \"read-only\", \"read-write\", \"auto\"], "
                     "\"members\": [{\"name\": \"none\"}, {\"name\": "
                     "\"read-only\"}, {\"name\": \"read-write\"}, {\"name\": "
                     "\"auto\"}]}",
                     i);
            break;
        case 3:
            snprintf(item, sizeof(item),
                     "{\"name\": \"DEVICE_DELETED_%u\", \"meta-type\": "
                     "\"event\", \"arg-type\": \"%u\"}",
                     i, i);
            break;
        default:
            snprintf(item, sizeof(item),
                     "{\"name\": \"[%u]\", \"element-type\": \"%u\", "
                     "\"meta-type\": \"array\"}",
                     i, i - 1);
            break;
        }
        add(b, item);
    }
    add(b, "], \"id\": 1234}\r\n");
}

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Parse 'text' n times, fed in chunks of 'chunk' bytes; returns seconds. */
static double parse_n(const struct stubdm__buf *text, int n, size_t chunk)
{
    struct stubdm__qmp_wire w;
    if (stubdm__qmp_wire_init(&w, NULL, false) != 0)
        exit(1);
    double t0 = now();
    for (int i = 0; i < n; i++) {
        size_t off = 0;
        while (off < text->len) {
            size_t len = text->len - off < chunk ? text->len - off : chunk;
            size_t used;
            if (stubdm__qmp_wire_feed(&w, text->data + off, len, &used)) {
                fprintf(stderr, "parse failed: %s\n",
                        stubdm__qmp_wire_errmsg(&w));
                exit(1);
            }
            off += used;
            struct stubdm__qmp_msg *m;
            while (stubdm__qmp_wire_next(&w, &m) == 0) {
                if (m->type != STUBDM__QMP_RETURN || m->id != 1234) {
                    fprintf(stderr, "unexpected message\n");
                    exit(1);
                }
                stubdm__qmp_msg_free(m);
            }
        }
    }
    double t = now() - t0;
    stubdm__qmp_wire_dispose(&w);
    return t;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

#define MAX_ROUNDS 99

int main(int argc, char **argv)
{
    int n = argc > 1 ? atoi(argv[1]) : 200;
    int rounds = argc > 2 ? atoi(argv[2]) : 7;
    if (n < 1)
        n = 1;
    if (rounds < 1)
        rounds = 1;
    if (rounds > MAX_ROUNDS)
        rounds = MAX_ROUNDS;
    struct stubdm__buf text;
    stubdm__buf_init(&text, 0);
    make_schema(&text, 200 * 1024);

    parse_n(&text, 20, text.len); /* warm up */
    static const size_t chunks[] = {(size_t)-1, 65536, 2048};
    static const char *const names[] = {"whole reply per feed", "64 KiB reads",
                                        "2 KiB reads (vchan ring)"};
    printf("query-qmp-schema-like reply: %zu bytes, %d rounds of %d parses\n",
           text.len, rounds, n);
    for (size_t i = 0; i < 3; i++) {
        double mbs[MAX_ROUNDS];
        for (int r = 0; r < rounds; r++)
            mbs[r] = (double)text.len * n / parse_n(&text, n, chunks[i]) / 1e6;
        qsort(mbs, (size_t)rounds, sizeof(mbs[0]), cmp_double);
        double best = mbs[rounds - 1], median = mbs[rounds / 2];
        printf("  %-26s best %7.1f MB/s  median %7.1f MB/s  %6.1f us/reply  "
               "%.2fx the %.0f MB/s target\n",
               names[i], best, median, (double)text.len / median,
               median / TARGET_MB_S, TARGET_MB_S);
    }
    stubdm__buf_dispose(&text);
    return 0;
}
