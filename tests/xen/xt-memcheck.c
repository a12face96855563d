/*
 * xt-memcheck MB SECONDS: a memory corruption detector for the nested test
 * host (docs/real-xen.md, "Memory corruption on the nested host").  Fills
 * MB megabytes of its own anonymous memory with a pattern derived from each
 * word's offset, then re-reads all of it every half second for SECONDS,
 * (or until SIGTERM) reporting every changed 64-bit word once ("XT-MEMCHECK
 * offset ... page
 * ... expected ... got ...", at most 64 lines) and a summary.  Nothing but
 * this process ever writes that memory, so any change is corruption from
 * outside the process (hypervisor, emulator, kernel or another domain).
 * Exit status: 0 clean, 1 corrupted, 2 setup failed.
 */
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

static volatile sig_atomic_t stop;
static void on_term(int sig)
{
    (void)sig;
    stop = 1;
}

static uint64_t pattern(size_t i)
{
    return 0x5854000000000000ULL ^ (i * 0x9E3779B97F4A7C15ULL);
}

int main(int argc, char **argv)
{
    size_t mb = argc > 1 ? strtoul(argv[1], NULL, 10) : 128;
    long secs = argc > 2 ? strtol(argv[2], NULL, 10) : 60;
    size_t n = mb * 1024 * 1024 / 8, bad = 0, zero = 0, pages = 0,
           lastpage = (size_t)-1;
    uint64_t *m = mmap(NULL, n * 8, PROT_READ | PROT_WRITE,
                       MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
    time_t end = time(NULL) + secs;
    int rounds = 0;

    if (m == MAP_FAILED) {
        perror("xt-memcheck: mmap");
        return 2;
    }
    signal(SIGTERM, on_term);
    mlock(m, n * 8);
    for (size_t i = 0; i < n; i++)
        m[i] = pattern(i);
    printf("XT-MEMCHECK start: %zu MB, %ld s\n", mb, secs);
    fflush(stdout);
    while (!stop && time(NULL) < end) {
        for (size_t i = 0; i < n; i++) {
            uint64_t v = m[i], e = pattern(i);
            if (v == e)
                continue;
            if (bad < 64)
                printf("XT-MEMCHECK round %d offset 0x%zx page %zu +0x%zx: "
                       "expected 0x%016llx got 0x%016llx\n",
                       rounds, i * 8, i * 8 / 4096, i * 8 % 4096,
                       (unsigned long long)e, (unsigned long long)v);
            bad++;
            zero += v == 0;
            if (i * 8 / 4096 != lastpage) {
                pages++;
                lastpage = i * 8 / 4096;
            }
            m[i] = e;
        }
        fflush(stdout);
        rounds++;
        usleep(500000);
    }
    printf("XT-MEMCHECK end: %d rounds, %zu corrupted words (%zu zero) in %zu "
           "page runs\n",
           rounds, bad, zero, pages);
    return bad ? 1 : 0;
}
