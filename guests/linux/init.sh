#!/bin/busybox sh
# /init of Rivet's busybox initramfs (packed by `cargo xtask guest linux`).
# The end-to-end tests wait for the "guest: init ready" line: keep its format.
export PATH=/bin:/sbin:/usr/bin:/usr/sbin
/bin/busybox --install -s
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null
mount -t tmpfs tmpfs /tmp
echo "guest: init ready, $(nproc) cpu(s), $(uname -r)"
exec setsid cttyhack sh
