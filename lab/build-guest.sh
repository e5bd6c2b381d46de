#!/bin/bash
# Build the tiny lab guest from Debian packages: the host's Debian kernel and
# an initramfs with busybox-static, qemu-guest-agent and a few virtio/ext4
# modules. The guest mounts its data disk (/dev/vda, ext4) on /data, runs the
# guest agent, and serves a write/read CGI whose acknowledged writes are on disk.
#
# usage: lab/build-guest.sh OUTDIR
#   OUTDIR/vmlinuz, OUTDIR/initrd.img, OUTDIR/kernel-version
#   Rebuilds only when an input changed or an output is missing.
#   EVAC_GUEST_KVER=VERSION picks a kernel from /boot (default: newest with modules).
set -euo pipefail

lab_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "${lab_dir}/lib.sh"

usage() {
  echo "usage: lab/build-guest.sh OUTDIR   (EVAC_GUEST_KVER=VERSION picks a /boot kernel)" >&2
  exit 2
}

[[ $# -eq 1 && "$1" != -* ]] || usage
outdir="$1"

lab_need_root
lab_need_tool busybox busybox-static
lab_need_tool cpio cpio
lab_need_tool gzip gzip
lab_need_tool modprobe kmod
lab_need_tool ldd libc-bin
lab_need_tool sha256sum coreutils
[[ -x /usr/sbin/qemu-ga ]] ||
  lab_die "/usr/sbin/qemu-ga not found: install the Debian package 'qemu-guest-agent' (apt-get install qemu-guest-agent)"

busybox_bin="$(readlink -f "$(command -v busybox)")"
# A dynamically linked busybox (package 'busybox') would need its libraries too.
if ldd "${busybox_bin}" >/dev/null 2>&1; then
  lab_die "${busybox_bin} is dynamically linked: install the Debian package 'busybox-static' (apt-get install busybox-static)"
fi

# Modules the guest needs, in load order. crc32c-intel is dropped from their
# dependencies: it does not load under TCG, and ext4 works with crc32c_generic.
guest_modules=(virtio_pci virtio_blk virtio_net virtio_console crc32c_generic ext4)

pick_kernel() {
  local v best=""
  if [[ -n "${EVAC_GUEST_KVER:-}" ]]; then
    best="${EVAC_GUEST_KVER}"
  else
    for v in /boot/vmlinuz-*; do
      [[ -e "$v" ]] || continue
      v="${v#/boot/vmlinuz-}"
      [[ -d "/lib/modules/$v" ]] || continue
      if [[ -z "${best}" ]] || [[ "$(printf '%s\n%s\n' "${best}" "$v" | sort -V | tail -n 1)" == "$v" ]]; then
        best="$v"
      fi
    done
  fi
  [[ -n "${best}" && -r "/boot/vmlinuz-${best}" && -d "/lib/modules/${best}" ]] ||
    lab_die "no usable kernel in /boot with modules in /lib/modules: install the Debian package 'linux-image-amd64' (apt-get install linux-image-amd64)"
  printf '%s\n' "${best}"
}

# Fills modules[] with the module files for the guest, dependencies first, each once.
resolve_modules() {
  local m line path deps
  local -A seen=()
  modules=()
  for m in "${guest_modules[@]}"; do
    deps="$(modprobe -S "${kver}" --show-depends "$m" 2>&1)" ||
      lab_die "kernel ${kver} has no module '$m': ${deps}"
    while read -r line; do
      case "${line}" in
        insmod\ *) ;;
        *) continue ;;   # "builtin NAME": nothing to load
      esac
      path="${line#insmod }"
      path="${path%% *}"
      case "${path##*/}" in
        crc32c-intel.ko*|crc32c_intel.ko*) continue ;;
      esac
      [[ -n "${seen[${path}]:-}" ]] && continue
      seen["${path}"]=1
      modules+=("${path}")
    done <<< "${deps}"
  done
}

# Libraries qemu-ga loads, the dynamic loader included.
agent_libs() {
  ldd /usr/sbin/qemu-ga | awk '
    $2 == "=>" && $3 ~ /^\// { print $3; next }
    $1 ~ /^\// { print $1 }'
}

kver="$(pick_kernel)"
resolve_modules
mapfile -t libs < <(agent_libs)
[[ ${#modules[@]} -gt 0 ]] || lab_die "no modules resolved for kernel ${kver}"
[[ ${#libs[@]} -gt 0 ]] || lab_die "ldd found no libraries for /usr/sbin/qemu-ga"

# Everything the image is made of; a change in any of these rebuilds it.
input_manifest() {
  local f
  printf 'script %s\n' "$(sha256sum < "${BASH_SOURCE[0]}")"
  printf 'kver %s\n' "${kver}"
  for f in "/boot/vmlinuz-${kver}" "${busybox_bin}" /usr/sbin/qemu-ga "${libs[@]}" "${modules[@]}"; do
    printf 'file %s %s\n' "$f" "$(stat -L -c '%s %Y' "$f")"
  done
}

mkdir -p "${outdir}"
outdir="$(cd "${outdir}" && pwd)"
stamp="${outdir}/.build-stamp"
want_stamp="$(input_manifest | sha256sum | cut -d' ' -f1)"

if [[ -s "${outdir}/vmlinuz" && -s "${outdir}/initrd.img" && -f "${stamp}" &&
      "$(cat "${stamp}")" == "${want_stamp}" ]]; then
  lab_say "guest in ${outdir} is up to date (kernel ${kver})"
  exit 0
fi

t_all="$(lab_now_ms)"
work="$(mktemp -d "${TMPDIR:-/var/tmp}/evac-guest-build.XXXXXX")"
trap 'rm -rf "${work}"' EXIT
root="${work}/root"
lab_say "building guest for kernel ${kver} in ${work}"

# --- file system skeleton and busybox ---------------------------------------
t_step="$(lab_now_ms)"
mkdir -p "${root}"/{bin,sbin,usr/bin,usr/sbin,etc,proc,sys,dev,run,tmp,data,root,var,www/cgi-bin,lib64}
ln -s ../run "${root}/var/run"
ln -s ../tmp "${root}/var/tmp"
chmod 1777 "${root}/tmp"
cp "${busybox_bin}" "${root}/bin/busybox"
while read -r applet; do
  [[ -n "${applet}" && "${applet}" != bin/busybox ]] || continue
  [[ -e "${root}/${applet}" || -L "${root}/${applet}" ]] && continue
  mkdir -p "${root}/$(dirname "${applet}")"
  ln -s /bin/busybox "${root}/${applet}"
done < <("${busybox_bin}" --list-full)
# The kernel runs /init; busybox picks its applet from the name.
ln -s /bin/busybox "${root}/init"
# The console must exist before devtmpfs is mounted, or init has no stdio.
mknod -m 600 "${root}/dev/console" c 5 1
mknod -m 666 "${root}/dev/null" c 1 3
lab_timing "busybox tree" "${t_step}"

# --- guest agent and its libraries --------------------------------------------
t_step="$(lab_now_ms)"
cp /usr/sbin/qemu-ga "${root}/usr/sbin/qemu-ga"
for lib in "${libs[@]}"; do
  mkdir -p "${root}$(dirname "${lib}")"
  cp -L "${lib}" "${root}${lib}"
done
lab_timing "qemu-ga + ${#libs[@]} libraries" "${t_step}"

# --- kernel modules ------------------------------------------------------------
t_step="$(lab_now_ms)"
: > "${root}/etc/modules.order"
for ko in "${modules[@]}"; do
  dest="${root}${ko}"
  mkdir -p "$(dirname "${dest}")"
  case "${ko}" in
    *.ko) cp "${ko}" "${dest}" ;;
    *.ko.xz) lab_need_tool xz xz-utils; dest="${dest%.xz}"; xz -dc "${ko}" > "${dest}" ;;
    *.ko.zst) lab_need_tool zstd zstd; dest="${dest%.zst}"; zstd -qdc "${ko}" > "${dest}" ;;
    *.ko.gz) dest="${dest%.gz}"; gzip -dc "${ko}" > "${dest}" ;;
    *) lab_die "unexpected module file ${ko}" ;;
  esac
  printf '%s\n' "${dest#"${root}"}" >> "${root}/etc/modules.order"
done
lab_timing "${#modules[@]} kernel modules" "${t_step}"

# --- configuration and services -----------------------------------------------
cat > "${root}/etc/inittab" <<'EOF'
::sysinit:/etc/rc
ttyS0::respawn:-/bin/sh
::ctrlaltdel:/sbin/reboot
::shutdown:/bin/sync
::shutdown:/bin/umount -r /data
EOF

cat > "${root}/etc/passwd" <<'EOF'
root:x:0:0:root:/root:/bin/sh
EOF
cat > "${root}/etc/group" <<'EOF'
root:x:0:
EOF
printf 'evac-guest\n' > "${root}/etc/hostname"

cat > "${root}/etc/rc" <<'EOF'
#!/bin/sh
# Boot script of the evac lab guest (run once by init as sysinit).
PATH=/sbin:/bin:/usr/sbin:/usr/bin
export PATH

say() { echo "evac-rc: $*" > /dev/console; }

mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null || true
mkdir -p /dev/pts /dev/virtio-ports
mount -t devpts devpts /dev/pts
mount -t tmpfs -o mode=0755 tmpfs /run
mount -t tmpfs -o mode=1777 tmpfs /tmp

while read -r ko; do
  insmod "$ko" || say "insmod $ko failed"
done < /etc/modules.order

ip_addr=""; gateway=""; host=""
for arg in $(cat /proc/cmdline); do
  case "$arg" in
    evac.ip=*) ip_addr="${arg#evac.ip=}" ;;
    evac.gw=*) gateway="${arg#evac.gw=}" ;;
    evac.hostname=*) host="${arg#evac.hostname=}" ;;
  esac
done
[ -n "$host" ] || host="$(cat /etc/hostname)"
hostname "$host"

ip link set lo up
if [ -n "$ip_addr" ]; then
  n=0
  while [ ! -e /sys/class/net/eth0 ] && [ "$n" -lt 50 ]; do usleep 100000; n=$((n + 1)); done
  if [ -e /sys/class/net/eth0 ]; then
    ip link set eth0 up
    ip addr add "$ip_addr" dev eth0 || say "cannot add $ip_addr to eth0"
    if [ -n "$gateway" ]; then
      ip route add default via "$gateway" || say "cannot add default route via $gateway"
    fi
  else
    say "evac.ip=$ip_addr given but there is no eth0"
  fi
fi

# The data disk: wait up to 10 s for it to appear.
n=0
while [ ! -b /dev/vda ] && [ "$n" -lt 100 ]; do usleep 100000; n=$((n + 1)); done
if [ -b /dev/vda ]; then
  mount -t ext4 /dev/vda /data || say "cannot mount /dev/vda on /data"
else
  say "no /dev/vda after 10 s; /data is not a disk"
fi

# No udev here: find the agent's virtio port by its name and link it.
agent_port=""
n=0
while [ -z "$agent_port" ] && [ "$n" -lt 50 ]; do
  for p in /sys/class/virtio-ports/*; do
    [ -r "$p/name" ] || continue
    if [ "$(cat "$p/name")" = org.qemu.guest_agent.0 ]; then
      agent_port="/dev/${p##*/}"
    fi
  done
  [ -n "$agent_port" ] || { usleep 100000; n=$((n + 1)); }
done
if [ -n "$agent_port" ]; then
  ln -sf "$agent_port" /dev/virtio-ports/org.qemu.guest_agent.0
  qemu-ga -d -m virtio-serial -p /dev/virtio-ports/org.qemu.guest_agent.0 ||
    say "qemu-ga failed to start"
else
  say "no org.qemu.guest_agent.0 port: the guest agent is not running"
fi

httpd -p 80 -h /www || say "httpd failed to start"
say "ready: host $host ip ${ip_addr:-none} uptime $(cut -d' ' -f1 /proc/uptime) s"
EOF
chmod 755 "${root}/etc/rc"

# qemu-ga's guest-shutdown execs /sbin/shutdown -h -P|-H|-r +0 MESSAGE.
cat > "${root}/sbin/shutdown" <<'EOF'
#!/bin/sh
action=poweroff
for arg in "$@"; do
  case "$arg" in
    -r) action=reboot ;;
    -H) action=halt ;;
    -P) action=poweroff ;;
  esac
done
exec "/sbin/$action"
EOF
chmod 755 "${root}/sbin/shutdown"

printf 'evac lab guest\n' > "${root}/www/index.html"

# Appends "<n> <unix time> <query>" to /data/log.txt, syncs, answers n:
# a write that was answered is on the disk.
cat > "${root}/www/cgi-bin/write" <<'EOF'
#!/bin/sh
log=/data/log.txt
lock=/run/evac-write.lock
n=0
until mkdir "$lock" 2>/dev/null; do
  usleep 10000
  n=$((n + 1))
  # A writer killed while holding the lock leaves it behind: break it after 5 s.
  [ "$n" -lt 500 ] || { rmdir "$lock" 2>/dev/null; n=0; }
done
trap 'rmdir "$lock"' EXIT
if ! grep -q ' /data ' /proc/mounts; then
  printf 'Status: 503 Service Unavailable\r\nContent-Type: text/plain\r\n\r\nno data disk\n'
  exit 0
fi
last=0
if [ -s "$log" ]; then
  # A crash can leave a torn last line; end it before appending.
  [ -z "$(tail -c 1 "$log")" ] || echo >> "$log"
  last="$(tail -n 1 "$log" | cut -d' ' -f1)"
  case "$last" in ''|*[!0-9]*) last="$(wc -l < "$log")" ;; esac
fi
n=$((last + 1))
echo "$n $(date +%s) ${QUERY_STRING:-}" >> "$log"
sync
printf 'Content-Type: text/plain\r\n\r\n%s\n' "$n"
EOF
cat > "${root}/www/cgi-bin/read" <<'EOF'
#!/bin/sh
log=/data/log.txt
last=0
if [ -s "$log" ]; then
  last="$(tail -n 1 "$log" | cut -d' ' -f1)"
  case "$last" in ''|*[!0-9]*) last=0 ;; esac
fi
printf 'Content-Type: text/plain\r\n\r\n%s\n' "$last"
EOF
chmod 755 "${root}/www/cgi-bin/write" "${root}/www/cgi-bin/read"

# --- pack ------------------------------------------------------------------------
t_step="$(lab_now_ms)"
(cd "${root}" && find . | LC_ALL=C sort | cpio -o -H newc -R 0:0 --quiet | gzip -9 -n) \
  > "${work}/initrd.img"
lab_timing "pack initramfs" "${t_step}"

cp "/boot/vmlinuz-${kver}" "${work}/vmlinuz"
# Replace the outputs only once both are complete.
rm -f "${stamp}"
mv -f "${work}/vmlinuz" "${outdir}/vmlinuz"
mv -f "${work}/initrd.img" "${outdir}/initrd.img"
printf '%s\n' "${kver}" > "${outdir}/kernel-version"
printf '%s\n' "${want_stamp}" > "${stamp}"

lab_say "guest built: ${outdir}/vmlinuz ($(stat -c %s "${outdir}/vmlinuz") bytes), ${outdir}/initrd.img ($(stat -c %s "${outdir}/initrd.img") bytes)"
lab_timing "guest build total" "${t_all}"
