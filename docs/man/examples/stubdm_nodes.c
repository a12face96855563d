/* stubdm_nodes(3): print the nodes a contract would write. */
#include <libstubdm.h>
#include <stdio.h>

void print_nodes(const stubdm_nodes *nodes)
{
    for (size_t i = 0; i < stubdm_nodes_count(nodes); i++) {
        const char *perms = stubdm_nodes_perms(nodes, i);

        printf("%s = \"%s\"%s%s\n", stubdm_nodes_path(nodes, i),
               stubdm_nodes_value(nodes, i, NULL), perms ? "  " : "",
               perms ? perms : "");
    }
}
