#!/usr/bin/env bash
# A real virtual machine end to end: Debian's kernel under QEMU (TCG), a small
# Debian root filesystem with Python and this project's wheel, the link over a
# virtio-serial port, kicks and pings both ways, checked by causality.
#
#   scripts/qemu-e2e.sh OUTDIR
#
# Leaves OUTDIR/host.pftrace, OUTDIR/guest.pftrace, OUTDIR/combined.pftrace,
# OUTDIR/causality.json (the probes' margins), OUTDIR/console.log (the guest's
# console) and OUTDIR/host-agent.log. Exit 0 only when every kick and ping is
# causal in the combined trace and it passes `vperfetto.inspect --check`.
#
# Needs (Debian): qemu-system-x86 mmdebstrap busybox-static cpio kmod, and the
# apt sources for `apt-get download` of the kernel. The host side runs with
# $PYTHON (default python3), which must have vperfetto installed; the guest's
# wheel is built from this checkout with it (Python 3.11, as Debian 12's).
#
# Cache (outside the repository): ${VPERFETTO_QEMU_CACHE:-~/.cache/vperfetto-qemu}:
# the kernel, the initramfs, the base root filesystem (mmdebstrap, ~1 min),
# the wheel (by the checkout's content) and the disk image.
#
# Settings: VPERFETTO_E2E_SECONDS (workload length, default 60),
# VPERFETTO_E2E_PROBES (kicks, and pings, default 60), VPERFETTO_E2E_RESYNC
# (seconds between sync bursts, default 5), VPERFETTO_E2E_TIMEOUT (QEMU's
# limit in seconds, default 900), VPERFETTO_E2E_VMM (connect: QEMU's chardev is
# the server and the agent runs --connect-vmm, the default; listen: the agent
# listens, --serial, and QEMU connects with reconnect=1).
set -euo pipefail

die() { echo "qemu-e2e: $*" >&2; exit 2; }
say() { echo "qemu-e2e: $*" >&2; }

[ $# -eq 1 ] || die "usage: scripts/qemu-e2e.sh OUTDIR"
REPO="$(cd "$(dirname "$0")/.." && pwd)"
OUT="$(mkdir -p "$1" && cd "$1" && pwd)"
CACHE="${VPERFETTO_QEMU_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/vperfetto-qemu}"
PY="${PYTHON:-python3}"
SECONDS_RUN="${VPERFETTO_E2E_SECONDS:-60}"
PROBES="${VPERFETTO_E2E_PROBES:-60}"
RESYNC="${VPERFETTO_E2E_RESYNC:-5}"
QEMU_TIMEOUT="${VPERFETTO_E2E_TIMEOUT:-900}"
VMM_MODE="${VPERFETTO_E2E_VMM:-connect}"
case "$VMM_MODE" in connect|listen) ;; *) die "VPERFETTO_E2E_VMM must be connect or listen";; esac
case "$CACHE" in "$REPO"|"$REPO"/*) die "the cache $CACHE must be outside the repository";; esac

missing=()
for tool in qemu-system-x86_64 mmdebstrap busybox cpio depmod mkfs.ext4 apt-get dpkg-deb; do
  command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
done
[ ${#missing[@]} -eq 0 ] || die "missing ${missing[*]}: apt-get install -y --no-install-recommends qemu-system-x86 mmdebstrap busybox-static cpio kmod"
! ldd "$(command -v busybox)" >/dev/null 2>&1 \
  || die "$(command -v busybox) is linked dynamically; the initramfs needs busybox-static"
"$PY" -c 'import sys, vperfetto; assert sys.version_info[:2] == (3, 11), sys.version' 2>/dev/null \
  || die "$PY must be Python 3.11 (the guest's, Debian 12) with vperfetto installed"
mkdir -p "$CACHE"
t_start=$(date +%s)

# --- the kernel: Debian's, uncompressed (TCG decompresses slowly), booted by PVH ---
KDIR="$CACHE/kernel"
if [ ! -f "$KDIR/.done" ]; then
  pkg="${VPERFETTO_QEMU_KERNEL_PKG:-$(apt-cache search --names-only '^linux-image-6\.1\.0-[0-9]+-amd64$' \
        | awk '{print $1}' | sort -V | tail -1)}"
  [ -n "$pkg" ] || die "no linux-image-6.1.0-*-amd64 known to apt (run apt-get update)"
  say "kernel: downloading $pkg"
  rm -rf "$KDIR" && mkdir -p "$KDIR/deb"
  (cd "$KDIR/deb" && chmod 777 . && apt-get download -q "$pkg" >/dev/null 2>&1) || die "apt-get download $pkg failed"
  dpkg-deb -x "$KDIR"/deb/*.deb "$KDIR/root"
  rm -rf "$KDIR/deb"
  kver=$(ls "$KDIR/root/lib/modules")
  depmod -b "$KDIR/root" "$kver"
  "$PY" - "$KDIR/root/boot/vmlinuz-$kver" "$KDIR/vmlinux" <<'EOF'
import lzma, sys
data = open(sys.argv[1], "rb").read()
at = data.find(b"\xfd7zXZ\x00")
if at < 0:
    sys.exit("no xz payload in the kernel image")
open(sys.argv[2], "wb").write(lzma.LZMADecompressor(format=lzma.FORMAT_XZ).decompress(data[at:]))
EOF
  echo "$kver" > "$KDIR/.done"
fi
kver=$(cat "$KDIR/.done")

# --- the initramfs: busybox, the virtio modules in dependency order, /init ------------
INIT_SRC=$(cat <<'EOF'
#!/bin/busybox sh
/bin/busybox --install -s /bin
mount -t proc proc /proc; mount -t sysfs sys /sys; mount -t devtmpfs dev /dev
for m in $(cat /modules.order); do insmod "/modules/$m" || echo "init: insmod $m failed"; done
mkdir -p /newroot
mount -t ext4 -o ro /dev/vda /newroot || { echo "init: cannot mount the root"; poweroff -f; }
for d in proc sys dev; do mount --move /$d /newroot/$d; done
mount -t tmpfs tmp /newroot/tmp
mkdir -p /newroot/dev/virtio-ports
for p in /newroot/sys/class/virtio-ports/*; do
  [ -e "$p/name" ] && ln -sf "../$(basename "$p")" "/newroot/dev/virtio-ports/$(cat "$p/name")"
done
args=$(cat /newroot/proc/cmdline)
echo "init: clocksource $(cat /newroot/sys/devices/system/clocksource/clocksource0/current_clocksource)"
chroot /newroot /usr/bin/env -i PATH=/usr/bin:/bin HOME=/tmp /usr/bin/python3 /opt/vperfetto-e2e/workload.py $args
echo "init: workload exited with $?"
sync
poweroff -f
echo o > /proc/sysrq-trigger
EOF
)
MODULES="virtio_pci virtio_blk virtio_console crc32c_generic ext4"
ikey=$(printf '%s\n%s\n%s\n' "$kver" "$MODULES" "$INIT_SRC" | sha256sum | cut -c1-16)
INITRD="$CACHE/initramfs-$ikey.cpio.gz"
if [ ! -f "$INITRD" ]; then
  say "initramfs: building"
  work=$(mktemp -d)
  mkdir -p "$work"/{bin,proc,sys,dev,modules}
  cp "$(command -v busybox)" "$work/bin/busybox"
  printf '%s\n' "$INIT_SRC" > "$work/init" && chmod +x "$work/init"
  "$PY" - "$KDIR/root/lib/modules/$kver" "$work" $MODULES <<'EOF'
import os, shutil, sys
base, work, wanted = sys.argv[1], sys.argv[2], sys.argv[3:]
deps = {}
for line in open(os.path.join(base, "modules.dep")):
    mod, _, rest = line.partition(":")
    deps[os.path.basename(mod)[:-3]] = (mod, [os.path.basename(d)[:-3] for d in rest.split()])
order = []
def add(m):
    if m in order:
        return
    if m not in deps:
        sys.exit(f"module {m} not found (built in?)")
    for d in reversed(deps[m][1]):   # modprobe's order: the last dependency first
        add(d)
    order.append(m)
for m in wanted:
    add(m)
for m in order:
    shutil.copy(os.path.join(base, deps[m][0]), os.path.join(work, "modules", m + ".ko"))
open(os.path.join(work, "modules.order"), "w").write("".join(m + ".ko\n" for m in order))
EOF
  (cd "$work" && find . | cpio -o -H newc --quiet | gzip -1) > "$INITRD.part" && mv "$INITRD.part" "$INITRD"
  rm -rf "$work"
fi

# --- the base root filesystem: Debian 12 minbase with Python and cffi's backend ------
ROOT="$CACHE/rootfs"
if [ ! -f "$ROOT.done" ]; then
  say "rootfs: mmdebstrap bookworm (about a minute)"
  t0=$(date +%s)
  rm -rf --one-file-system "$ROOT"   # never into what an interrupted mmdebstrap left mounted
  mmdebstrap --quiet --variant=minbase --include=python3,python3-cffi-backend bookworm "$ROOT" \
    || die "mmdebstrap failed"
  echo "$(( $(date +%s) - t0 )) s" > "$ROOT.done"
fi

# --- the wheel, built from this checkout (cached by its content) -----------------
src_key=$(cd "$REPO" && git ls-files -z --cached --others --exclude-standard \
          -- CMakeLists.txt pyproject.toml cpp perfetto-sdk python \
          | sort -z | xargs -0 sha256sum 2>/dev/null | sha256sum | cut -c1-16)
WHEELDIR="$CACHE/wheel-$src_key"
if ! ls "$WHEELDIR"/vperfetto-*.whl >/dev/null 2>&1; then
  say "wheel: building from $REPO"
  rm -rf "$CACHE"/wheel-* && mkdir -p "$WHEELDIR"
  nice "$PY" -m pip wheel --quiet --no-deps -w "$WHEELDIR" "$REPO" >"$WHEELDIR/build.log" 2>&1 \
    || { tail -20 "$WHEELDIR/build.log" >&2; rm -rf "$WHEELDIR"; die "building the wheel failed"; }
fi
WHEEL=$(ls "$WHEELDIR"/vperfetto-*.whl)

# --- the disk image: the base plus the wheel and the workload ------------------------
WORKLOAD="$REPO/scripts/qemu-guest-workload.py"
img_key=$( (echo "$src_key"; sha256sum "$WORKLOAD") | sha256sum | cut -c1-16)
IMG="$CACHE/rootfs-$img_key.img"
if [ ! -f "$IMG" ]; then
  say "image: the wheel and the workload into the root filesystem"
  site="$ROOT/usr/local/lib/python3.11/dist-packages"
  rm -rf "$site"/vperfetto "$site"/vperfetto-*.dist-info "$ROOT/opt/vperfetto-e2e"
  mkdir -p "$site" "$ROOT/opt/vperfetto-e2e"
  "$PY" -c 'import sys, zipfile; zipfile.ZipFile(sys.argv[1]).extractall(sys.argv[2])' "$WHEEL" "$site"
  cp "$WORKLOAD" "$ROOT/opt/vperfetto-e2e/workload.py"
  rm -f "$CACHE"/rootfs-*.img
  mkfs.ext4 -q -F -L vperfetto -d "$ROOT" "$IMG.part" 600M >/dev/null && mv "$IMG.part" "$IMG"
fi
t_built=$(date +%s)
say "built in $(( t_built - t_start )) s (rootfs: $(cat "$ROOT.done") when first made)"

# --- the run --------------------------------------------------------------------------
RUN=$(mktemp -d)
SOCK="$RUN/vperfetto.sock"
AGENT_DIR="$OUT/agent"
rm -rf "$AGENT_DIR" "$OUT"/{host,guest,combined}.pftrace "$OUT/causality.json"
agent_pid=""
qemu_pid=""
cleanup() {
  [ -n "$qemu_pid" ] && kill "$qemu_pid" 2>/dev/null || true
  [ -n "$agent_pid" ] && kill "$agent_pid" 2>/dev/null || true
  rm -rf "$RUN"
}
trap cleanup EXIT

if [ "$VMM_MODE" = connect ]; then
  agent_args=(--connect-vmm "unix:$SOCK")
  chardev="socket,id=vp,path=$SOCK,server=on,wait=off"
else
  agent_args=(--listen "unix:$SOCK" --serial)
  chardev="socket,id=vp,path=$SOCK,reconnect=1"
fi
"$PY" -m vperfetto host "${agent_args[@]}" --out-dir "$AGENT_DIR" --once >"$OUT/host-agent.log" 2>&1 &
agent_pid=$!
if [ "$VMM_MODE" = listen ]; then   # QEMU would connect before the agent listens (and retry)
  for _ in $(seq 300); do [ -S "$SOCK" ] && break; sleep 0.1; done
fi

say "booting the guest (${SECONDS_RUN} s workload, ${PROBES} kicks and pings; the agent: $VMM_MODE)"
timeout "$QEMU_TIMEOUT" qemu-system-x86_64 \
  -machine pc -accel tcg -m 512 -smp 1 -display none -no-reboot -nic none \
  -kernel "$KDIR/vmlinux" -initrd "$INITRD" \
  -append "console=ttyS0 quiet panic=-1 --seconds=$SECONDS_RUN --probes=$PROBES --resync=$RESYNC" \
  -drive "file=$IMG,if=virtio,format=raw,readonly=on" \
  -device virtio-serial-pci \
  -chardev "$chardev" \
  -device virtserialport,chardev=vp,name=vperfetto \
  -serial "file:$OUT/console.log" &
qemu_pid=$!
qemu_rc=0
wait "$qemu_pid" || qemu_rc=$?
qemu_pid=""
t_ran=$(date +%s)
[ "$qemu_rc" -eq 0 ] || { tail -30 "$OUT/console.log" >&2; die "QEMU exited with $qemu_rc (124: timed out after $QEMU_TIMEOUT s)"; }
for _ in $(seq 600); do kill -0 "$agent_pid" 2>/dev/null || break; sleep 0.1; done
if kill -0 "$agent_pid" 2>/dev/null; then
  kill "$agent_pid"
  tail -30 "$OUT/console.log" >&2
  die "the host agent had no finished guest after the VM stopped (see $OUT/host-agent.log)"
fi
wait "$agent_pid" || die "the host agent failed (see $OUT/host-agent.log)"
agent_pid=""
grep -q "init: workload exited with 0" "$OUT/console.log" \
  || { tail -30 "$OUT/console.log" >&2; die "the guest workload failed (see $OUT/console.log)"; }

host=$(ls "$AGENT_DIR"/host-*.pftrace | head -1)
cp "$host" "$OUT/host.pftrace"
cp "$AGENT_DIR/qemu-guest.guest.pftrace" "$OUT/guest.pftrace"
cp "$AGENT_DIR/qemu-guest.combined.pftrace" "$OUT/combined.pftrace"

# --- the checks --------------------------------------------------------------------
"$PY" -m vperfetto.inspect --check "$OUT/combined.pftrace" >"$OUT/inspect.txt" \
  || { cat "$OUT/inspect.txt" >&2; die "vperfetto.inspect --check found problems in combined.pftrace"; }
"$PY" -m vperfetto.probes "$OUT/combined.pftrace" --min "$PROBES" --json "$OUT/causality.json" \
  || die "causality check failed (see above)"
say "done in $(( $(date +%s) - t_start )) s: build $(( t_built - t_start )) s, VM run $(( t_ran - t_built )) s; $OUT"
