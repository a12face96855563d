/*
 * Printing node lists (what the library would write to xenstore) as text
 * or JSON, shared by `layout` and `dm-argv encode`.
 */
#include "ctl.h"

#include <string.h>

/* Values may hold any byte: print them the way xenstore-ls does. */
static void print_escaped(FILE *f, const char *v, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)v[i];
        if (c == '\\' || c == '"')
            fprintf(f, "\\%c", c);
        else if (c >= 0x20 && c < 0x7f)
            fputc(c, f);
        else
            fprintf(f, "\\x%02x", c);
    }
}

void ctl_print_nodes(const struct ctl_global *g, const char *command,
                     const stubdm_nodes *nodes)
{
    size_t n = stubdm_nodes_count(nodes);

    if (g->json) {
        printf("{\"ok\":true,\"command\":");
        ctl_json_string(stdout, command);
        printf(",\"nodes\":[");
        for (size_t i = 0; i < n; i++) {
            size_t len;
            const char *v = stubdm_nodes_value(nodes, i, &len);
            const char *p = stubdm_nodes_perms(nodes, i);
            printf("%s{\"path\":", i ? "," : "");
            ctl_json_string(stdout, stubdm_nodes_path(nodes, i));
            printf(",\"value\":");
            ctl_json_string_n(stdout, v, len);
            printf(",\"perms\":");
            if (p)
                ctl_json_string(stdout, p);
            else
                printf("null");
            printf("}");
        }
        printf("]}\n");
        return;
    }
    for (size_t i = 0; i < n; i++) {
        size_t len;
        const char *v = stubdm_nodes_value(nodes, i, &len);
        const char *p = stubdm_nodes_perms(nodes, i);
        printf("%s = \"", stubdm_nodes_path(nodes, i));
        print_escaped(stdout, v, len);
        printf("\"  (%s)\n", p ? p : "inherited");
    }
}

bool ctl_parse_encoding(const char *s, stubdm_argv_encoding *out)
{
    if (!strcmp(s, "directory") || !strcmp(s, "dm-argv"))
        *out = STUBDM_ARGV_DIRECTORY;
    else if (!strcmp(s, "minios") || !strcmp(s, "dmargs"))
        *out = STUBDM_ARGV_MINIOS_DMARGS;
    else if (!strcmp(s, "esc") || !strcmp(s, "qubes-esc"))
        *out = STUBDM_ARGV_ESC_STRING;
    else
        return false;
    return true;
}
