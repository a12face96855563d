/*
 * Printing node lists (what the library would write to xenstore) as text
 * or JSON, and the names of the encodings and console backends, shared by
 * `layout`, `dm-argv` and `spawn`.
 */
#include "ctl.h"

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

const struct ctl_choice ctl_encodings[] = {
    {"directory", STUBDM_DM_ARGV_DIRECTORY},
    {"dm-argv", STUBDM_DM_ARGV_DIRECTORY},
    {"minios", STUBDM_DM_ARGV_MINIOS_DMARGS},
    {"dmargs", STUBDM_DM_ARGV_MINIOS_DMARGS},
    {"esc", STUBDM_DM_ARGV_ESC_STRING},
    {"qubes-esc", STUBDM_DM_ARGV_ESC_STRING},
    {NULL, 0},
};

const struct ctl_choice ctl_console_backends[] = {
    {"ioemu", STUBDM_CONSOLE_BACKEND_IOEMU},
    {"xenconsoled", STUBDM_CONSOLE_BACKEND_XENCONSOLED},
    {"libstubdm", STUBDM_CONSOLE_BACKEND_LIBSTUBDM},
    {NULL, 0},
};
