#!/usr/bin/env bash
# run-in-vm.sh CMD [ARGS...] -- runs CMD as root inside a throw-away qemu guest that
# boots Debian's stock kernel (linux-image-amd64: ESP, AH, XFRM as modules) on the
# host's own root filesystem: "/" is shared read-only over virtio-9p with a tmpfs
# overlay on top, so host-built binaries and installed packages (strongSwan) run
# unchanged against the guest's kernel. Used by tests/tests/kernel_vm.rs to prove the
# kernel XFRM datapath on machines whose kernel has no ESP.
#
# CMD's stdout/stderr come back on ours; its exit status becomes ours, except
#   124  the guest did not finish within VM_TIMEOUT seconds
#   125  the VM could not be set up or did not boot (a "run-in-vm: " line says why)
#
# Environment: VM_MODULES (loaded with one modprobe -a before CMD), VM_TIMEOUT
# (default 600), VM_MEM (MiB, default 768), VM_ENV (names of variables to pass on),
# VM_CACHE (initramfs cache, default /var/tmp/postern-vm).
# TCG only: the nested KVM of these machines cannot boot a stock kernel.
# Needs: qemu-system-x86, linux-image-amd64, busybox-static, cpio, kmod (install-deps.sh).
set -euo pipefail

die() { echo "run-in-vm: $*" >&2; exit 125; }
[[ $# -ge 1 ]] || die "usage: run-in-vm.sh CMD [ARGS...]"
[[ $(id -u) -eq 0 ]] || die "must run as root (qemu shares the whole root filesystem)"
QEMU=$(command -v qemu-system-x86_64) || die "qemu-system-x86_64 missing (install-deps.sh)"
BUSYBOX=/bin/busybox
[[ -x $BUSYBOX ]] || die "$BUSYBOX missing (busybox-static)"
command -v cpio >/dev/null || die "cpio missing"

KERNEL=
for k in $(ls -1 /boot/vmlinuz-* 2>/dev/null | sort -V -r); do
    v=${k#/boot/vmlinuz-}
    if modprobe -S "$v" --show-depends esp4 >/dev/null 2>&1; then KERNEL=$k; KVER=$v; break; fi
done
[[ -n $KERNEL ]] || die "no /boot/vmlinuz-* with an esp4 module (linux-image-amd64)"

TIMEOUT=${VM_TIMEOUT:-600}
MEM=${VM_MEM:-768}
CACHE=${VM_CACHE:-/var/tmp/postern-vm}
BOOT_MODS="virtio_pci 9pnet_virtio 9p overlay virtio_rng"

# Stage 1, busybox as PID 1: the host root (9p) under a tmpfs overlay, then stage 2.
read -r -d '' STAGE1 <<'EOF' || true
#!/bin/busybox sh
/bin/busybox mkdir -p /proc /sys /dev /bin
/bin/busybox --install -s /bin
export PATH=/bin
mount -t devtmpfs devtmpfs /dev
exec 0</dev/console 1>/dev/console 2>&1
mount -t proc proc /proc
mount -t sysfs sysfs /sys
fail() { echo "VM-STAGE1-FAILED: $*"; echo o > /proc/sysrq-trigger; sleep 5; }
while read -r m; do insmod "/mods/$m" || fail "insmod $m"; done < /mods/order
mkdir -p /lower /rw /newroot
mount -t 9p -o trans=virtio,version=9p2000.L,ro,cache=loose,msize=512000 hostroot /lower || fail "9p root"
mount -t tmpfs -o mode=0755 vm-rw /rw || fail "tmpfs"
mkdir -p /rw/upper /rw/work
mount -t overlay -o lowerdir=/lower,upperdir=/rw/upper,workdir=/rw/work vm-root /newroot || fail "overlay"
mount -t tmpfs -o mode=0755,nosuid,nodev tmpfs /newroot/run || fail "tmpfs /run"
mkdir -p /newroot/run/vm-io
mount -t 9p -o trans=virtio,version=9p2000.L,cache=none,msize=512000 vmio /newroot/run/vm-io || fail "9p io"
mount --move /dev /newroot/dev
mount --move /proc /newroot/proc
mount --move /sys /newroot/sys
cd /newroot
mkdir -p dev/pts dev/shm run/netns run/lock
mount -t devpts -o newinstance,ptmxmode=666 devpts dev/pts
mount -t tmpfs -o mode=1777 shm dev/shm
ln -sfn /proc/self/fd dev/fd
# As udev makes them: nft -j -f /dev/stdin (the kill switch) reads through this.
ln -sfn /proc/self/fd/0 dev/stdin
ln -sfn /proc/self/fd/1 dev/stdout
ln -sfn /proc/self/fd/2 dev/stderr
chmod 1777 tmp 2>/dev/null
hostname postern-vm
ip link set lo up
echo VM-STAGE1-DONE
exec switch_root /newroot /bin/bash /run/vm-io/stage2.sh
fail switch_root
EOF

key=$( { echo "$KERNEL $BOOT_MODS"; stat -c '%s %Y' "$KERNEL" $BUSYBOX; echo "$STAGE1"; } | sha256sum | cut -c1-16)
INITRD=$CACHE/initramfs-$KVER-$key.cpio
if [[ ! -f $INITRD ]]; then
    mkdir -p "$CACHE"
    tmp=$(mktemp -d "$CACHE/.build.XXXXXX")
    root=$tmp/root
    mkdir -p "$root"/{bin,dev,proc,sys,mods}
    cp $BUSYBOX "$root/bin/busybox"
    printf '%s\n' "$STAGE1" > "$root/init"
    chmod 755 "$root/init"
    : > "$root/mods/order"
    for m in $BOOT_MODS; do
        modprobe -S "$KVER" --show-depends "$m" | while read -r cmd f _; do
            [[ $cmd == insmod ]] || continue
            base=$(basename "$f"); base=${base%.xz}; base=${base%.zst}
            grep -qxF "$base" "$root/mods/order" && continue
            case $f in
                *.xz) xz -dc "$f" > "$root/mods/$base" ;;
                *.zst) zstd -dqc "$f" > "$root/mods/$base" ;;
                *) cp "$f" "$root/mods/$base" ;;
            esac
            echo "$base" >> "$root/mods/order"
        done
    done
    (cd "$root" && find . | LC_ALL=C sort | cpio -o -H newc --quiet -R 0:0) > "$tmp/initramfs.cpio"
    mv "$tmp/initramfs.cpio" "$INITRD"
    rm -rf "$tmp"
fi

RUN=$(mktemp -d "${TMPDIR:-/tmp}/postern-vm.XXXXXX")
IO=$RUN/io
mkdir -p "$IO"
QPID=
cleanup() {
    local rc=$?
    [[ -n $QPID ]] && kill "$QPID" 2>/dev/null
    [[ -n ${VM_CONSOLE:-} && -f $RUN/console.log ]] && cp "$RUN/console.log" "$VM_CONSOLE"
    rm -rf "$RUN"
    exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

{
    echo '#!/bin/bash'
    for v in ${VM_ENV:-}; do [[ -v $v ]] && printf 'export %s=%q\n' "$v" "${!v}"; done
    printf 'cd %q 2>/dev/null || cd /\n' "$PWD"
    printf 'exec'
    for a in "$@"; do printf ' %q' "$a"; done
    echo
} > "$IO/cmd.sh"
cat > "$IO/stage2.sh" <<'EOF'
#!/bin/bash
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LANG=C.UTF-8
IO=/run/vm-io
rc=0
if [[ -s $IO/modules ]]; then
    read -r mods < $IO/modules
    modprobe -a $mods 2>> $IO/stderr || { echo "run-in-vm: modprobe -a $mods failed" >> $IO/stderr; rc=125; }
fi
if [[ $rc == 0 ]]; then
    /bin/bash $IO/cmd.sh < /dev/null > $IO/stdout 2>> $IO/stderr
    rc=$?
fi
echo $rc > $IO/rc
echo o > /proc/sysrq-trigger
sleep 5
EOF
chmod +x "$IO/stage2.sh" "$IO/cmd.sh"
echo "${VM_MODULES:-}" > "$IO/modules"
: > "$IO/stdout"
: > "$IO/stderr"

timeout -k 5 "$TIMEOUT" "$QEMU" -accel tcg,thread=multi,tb-size=256 -cpu max -m "$MEM" -smp 2 \
    -machine pc -nodefaults -no-user-config -display none -monitor none -no-reboot \
    -serial "file:$RUN/console.log" \
    -kernel "$KERNEL" -initrd "$INITRD" -append "console=ttyS0 quiet panic=-1 rdinit=/init" \
    -virtfs "local,path=/,mount_tag=hostroot,security_model=none,readonly=on,multidevs=remap" \
    -virtfs "local,path=$IO,mount_tag=vmio,security_model=none,multidevs=remap" \
    -device virtio-rng-pci -nic none > "$RUN/qemu.out" 2>&1 &
QPID=$!
tail -s 0.2 -n +1 -f --pid=$QPID "$IO/stdout" &
tail -s 0.2 -n +1 -f --pid=$QPID "$IO/stderr" >&2 &
set +e
wait $QPID
qrc=$?
set -e
QPID=
sleep 0.3
if [[ -f $IO/rc ]]; then
    exit "$(cat "$IO/rc")"
fi
if ! grep -q VM-STAGE1-DONE "$RUN/console.log"; then
    echo "run-in-vm: the guest did not boot; console:" >&2
    tail -20 "$RUN/console.log" >&2
    cat "$RUN/qemu.out" >&2
    exit 125
fi
[[ $qrc == 124 || $qrc == 137 ]] && { echo "run-in-vm: timed out after ${TIMEOUT}s" >&2; exit 124; }
echo "run-in-vm: the guest ended without a result (qemu status $qrc)" >&2
exit 125
