#include "pcifix.h"

#include <check.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

void pcifix_file(const char *root, const char *rel, const char *text)
{
    char path[256];
    FILE *f;

    snprintf(path, sizeof(path), "%s/%s", root, rel);
    f = fopen(path, "w");
    ck_assert_msg(f != NULL, "%s: %s", path, strerror(errno));
    fputs(text, f);
    fclose(f);
}

void pcifix_dir(const char *root, const char *rel)
{
    char path[256];

    snprintf(path, sizeof(path), "%s/%s", root, rel);
    ck_assert_msg(mkdir(path, 0755) == 0 || errno == EEXIST, "%s", path);
}

void pcifix_tree(char *root)
{
    ck_assert_ptr_nonnull(mkdtemp(root));
    pcifix_dir(root, "bus");
    pcifix_dir(root, "bus/pci");
    pcifix_dir(root, "bus/pci/drivers");
    pcifix_dir(root, "bus/pci/drivers/pciback");
    pcifix_dir(root, "bus/pci/devices");
}

unsigned pcifix_read_u(struct xs_handle *xs, const char *path)
{
    unsigned len, v = 99;
    char *s = xs_read(xs, XBT_NULL, path, &len);

    if (s)
        v = (unsigned)atoi(s);
    free(s);
    return v;
}
