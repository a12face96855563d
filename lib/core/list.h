/*
 * Intrusive doubly linked list (circular, with a sentinel head).
 */
#ifndef STUBDM_CORE_LIST_H
#define STUBDM_CORE_LIST_H

#include "core/base.h"
#include <stdbool.h>

struct stubdm__list {
    struct stubdm__list *prev, *next;
};

static inline void stubdm__list_init(struct stubdm__list *l)
{
    l->prev = l->next = l;
}

static inline bool stubdm__list_empty(const struct stubdm__list *l)
{
    return l->next == l;
}

/* A node unlinked with list_del is self-linked, so deleting twice is safe. */
static inline void stubdm__list_del(struct stubdm__list *n)
{
    n->prev->next = n->next;
    n->next->prev = n->prev;
    n->prev = n->next = n;
}

static inline void stubdm__list_add_tail(struct stubdm__list *head,
                                         struct stubdm__list *n)
{
    n->prev = head->prev;
    n->next = head;
    head->prev->next = n;
    head->prev = n;
}

#endif /* STUBDM_CORE_LIST_H */
