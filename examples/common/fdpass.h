/*
 * One file descriptor passed with a message (SCM_RIGHTS), for the example
 * programs that pass one: stubdmd (its control socket's replies, the fd
 * store of systemd's notify socket), stubdm-ctl (its requests to
 * stubdmd) and the simulated stubdomain (QEMU's add-fd).
 */
#ifndef STUBDM_EXAMPLES_FDPASS_H
#define STUBDM_EXAMPLES_FDPASS_H

#include <string.h>
#include <sys/socket.h>

/* Room for one fd's control message, aligned as a cmsghdr. */
union fdpass_buf {
    struct cmsghdr h;
    char b[CMSG_SPACE(sizeof(int))];
};

/* Make fd travel with m: m's control data becomes buf, which must live
 * until m is sent. */
static inline void fdpass_attach(struct msghdr *m, union fdpass_buf *buf,
                                 int fd)
{
    memset(buf, 0, sizeof(*buf));
    m->msg_control = buf->b;
    m->msg_controllen = sizeof(buf->b);
    buf->h.cmsg_level = SOL_SOCKET;
    buf->h.cmsg_type = SCM_RIGHTS;
    buf->h.cmsg_len = CMSG_LEN(sizeof(int));
    memcpy(CMSG_DATA(&buf->h), &fd, sizeof(int));
}

#endif
