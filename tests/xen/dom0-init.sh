#!/bin/sh
# PID 1 of the nested dom0 (packed as /init by build-images.sh).
# Mounts, loads the Xen and 9p modules, mounts the host share on /mnt/host,
# starts Debian's Xen daemons (oxenstored, xenconsoled with guest console
# logs), runs /mnt/host/payload, copies logs to /mnt/host/out and powers off.
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin:/usr/lib/xen-4.17/bin
export HOME=/root TERM=dumb LANG=C.UTF-8
mount -t proc proc /proc; mount -t sysfs sysfs /sys; mount -t devtmpfs devtmpfs /dev
# The initramfs root is a tmpfs capped at half the RAM: with ~300 MB of
# rootfs in 1 GB it is full, and oxenstored dies at start with
# 'Fatal exception: Sys_error("No space left on device")' (xenstored.ml:417)
# while /etc/init.d/xen waits on its socket.  Lift the cap.
mount -o remount,size=90% /
mkdir -p /dev/pts /dev/shm /run /tmp /mnt/host
mount -t devpts devpts /dev/pts; mount -t tmpfs tmpfs /dev/shm
# What udev/systemd make on a real dom0 and devtmpfs does not: Xen's
# hotplug scripts need them (locking.sh's claim_lock stats /dev/stdin and
# loops for ever when that fails: block add and remove hung).
ln -sf /proc/self/fd /dev/fd; ln -sf /proc/self/fd/0 /dev/stdin
ln -sf /proc/self/fd/1 /dev/stdout; ln -sf /proc/self/fd/2 /dev/stderr
mount -t tmpfs -o mode=755 tmpfs /run; mount -t tmpfs tmpfs /tmp
mkdir -p /run/lock /run/xen /var/log/xen/console /var/lib/xen
hostname dom0; ip link set lo up
# no udev: virtio_pci by hand, or 9p finds no channel
for m in xenfs xen-evtchn xen-gntdev xen-gntalloc xen-privcmd virtio_pci 9pnet_virtio 9p loop; do
    modprobe "$m" || echo "xt-init: modprobe $m failed"
done
mountpoint -q /proc/xen || mount -t xenfs xenfs /proc/xen
mount -t 9p -o trans=virtio,version=9p2000.L,msize=262144 xtshare /mnt/host || echo "xt-init: no 9p share"
mkdir -p /mnt/host/out
# Section libxl counts the xenstore requests of each start in oxenstored's
# access log: every request logged (reads and transactions are not by
# default), in files too big to rotate during a run.
if grep -qw libxl /mnt/host/tests 2>/dev/null; then
    cat >> /etc/xen/oxenstored.conf <<'OXC'
access-log-read-ops = true
access-log-transactions-ops = true
access-log-special-ops = true
access-log-nb-lines = 1000000
access-log-nb-chars = 120
OXC
fi
# Debian's init script starts oxenstored, xen-init-dom0 and xenconsoled
# (guest consoles logged).  Bounded, with diagnostics if it hangs.
XENCONSOLED_ARGS="--log=guest --log-dir=/var/log/xen/console" timeout 60 /etc/init.d/xen start
xrc=$?
if [ $xrc != 0 ]; then
    echo "xt-init: /etc/init.d/xen start failed ($xrc)"
    ps -ef | grep -v '\[' ; ls -la /run/xenstored /var/run/xenstored /dev/xen
    tail -n 30 /var/log/xen/*.log 2>/dev/null; dmesg | tail -n 20
    echo "xt-init: oxenstored in the foreground for 10 s:"
    timeout 10 /usr/lib/xen-4.17/bin/oxenstored --no-fork --pid-file /tmp/ox.pid 2>&1 | tail -n 20
    echo "xt-init: oxenstored exit $?; falling back to the C xenstored"
    XENSTORED=/usr/lib/xen-4.17/bin/xenstored XENCONSOLED_ARGS="--log=guest --log-dir=/var/log/xen/console" \
        timeout 60 /etc/init.d/xen start; echo "xt-init: C xenstored start: $?"
fi
echo "XT-DOM0-READY $(cut -d' ' -f1 /proc/uptime)"
if [ -x /mnt/host/payload ]; then
    cd /mnt/host
    ( ./payload 2>&1; echo $? > /tmp/rc ) | tee /mnt/host/out/payload.log
    rc=$(cat /tmp/rc 2>/dev/null || echo 255)
    xl dmesg > /mnt/host/out/xl-dmesg.log 2>&1
    cp -r /var/log/xen /mnt/host/out/xen-logs 2>/dev/null
    echo "$rc" > /mnt/host/out/rc
    echo "XT-PAYLOAD-RC=$rc"
    cd /
fi
sync; umount /mnt/host 2>/dev/null
busybox poweroff -f; sleep 5; busybox reboot -f
