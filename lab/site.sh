#!/bin/bash
# One independent libvirt "site" on this machine: its own libvirtd and
# virtlogd in a private mount namespace whose /run/libvirt, /var/lib/libvirt,
# /var/log/libvirt, /var/cache/libvirt and /etc/libvirt are folders under
# ROOT/NAME. Several sites run side by side without seeing each other's
# domains, which is what a protected site and a recovery site need.
#
# usage: lab/site.sh up|down|crash|status NAME [--root DIR] [--netns NS]
#   up      start the site (no-op when it is up); prints its URI on stdout
#   down    destroy its running domains, stop its daemons, leave no process
#   crash   a power loss: kill -9 every process of the site at once (libvirtd,
#           virtlogd, the guests' QEMU); its definitions stay, and `up`
#           brings it back with every domain shut off
#   status  prints "up URI" (exit 0) or "down URI" (exit 3)
#   --root  where sites keep their state (default /var/tmp/evac-lab)
#   --netns run the site's daemons (and so its guests' taps) inside the
#           existing network namespace NS (up only)
# URI: qemu+unix:///system?socket=ROOT/NAME/run/libvirt-sock
set -euo pipefail

lab_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "${lab_dir}/lib.sh"

usage() {
  echo "usage: lab/site.sh up|down|crash|status NAME [--root DIR] [--netns NS]" >&2
  exit 2
}

[[ $# -ge 2 ]] || usage
action="$1"
name="$2"
shift 2
root=/var/tmp/evac-lab
netns=""
while [[ $# -gt 0 ]]; do
  case "$1" in
    --root) [[ $# -ge 2 ]] || usage; root="$2"; shift 2 ;;
    --netns) [[ $# -ge 2 ]] || usage; netns="$2"; shift 2 ;;
    *) usage ;;
  esac
done
case "${action}" in up|down|crash|status) ;; *) usage ;; esac
lab_check_name "${name}"
[[ "${root}" == /* ]] || root="$(pwd)/${root}"

site_dir="${root}/${name}"
state_dir="${site_dir}/state"
sock="${site_dir}/run/libvirt-sock"
uri="qemu+unix:///system?socket=${sock}"
holder_pid_file="${state_dir}/holder.pid"
libvirtd_pid_file="${state_dir}/libvirtd.pid"
virtlogd_pid_file="${state_dir}/virtlogd.pid"
libvirtd_log="${site_dir}/log/libvirtd.log"
virtlogd_log="${site_dir}/log/virtlogd.log"
holder_log="${site_dir}/log/holder.log"
up_timeout=30

# A unix socket path has room for 107 bytes.
if [[ ${#sock} -gt 100 ]]; then
  lab_die "socket path ${sock} is too long for a unix socket; use a shorter --root"
fi

need_tools() {
  lab_need_root
  lab_need_tool virsh libvirt-clients
  lab_need_tool libvirtd libvirt-daemon
  lab_need_tool virtlogd libvirt-daemon
  lab_need_tool unshare util-linux
  lab_need_tool flock util-linux
  lab_need_tool setsid util-linux
  lab_need_tool timeout coreutils
  lab_need_tool groupadd passwd
  lab_need_tool useradd passwd
  [[ -f /usr/lib/x86_64-linux-gnu/libvirt/connection-driver/libvirt_driver_qemu.so ]] ||
    lab_die "libvirt's QEMU driver is missing: install the Debian package 'libvirt-daemon-driver-qemu' (apt-get install libvirt-daemon-driver-qemu)"
  lab_need_tool qemu-system-x86_64 qemu-system-x86
}

# What a machine without systemd lacks for libvirtd (the packages' maintainer
# scripts would make these through systemd-sysusers/tmpfiles). Idempotent.
ensure_prerequisites() {
  getent group kvm >/dev/null || groupadd -r kvm
  getent group libvirt-qemu >/dev/null || groupadd -r libvirt-qemu
  if ! getent passwd libvirt-qemu >/dev/null; then
    useradd -r -g libvirt-qemu -G kvm -d /var/lib/libvirt -s /usr/sbin/nologin \
      -c "Libvirt Qemu" libvirt-qemu
  fi
  # The bind mounts need their mount points in the host's tree.
  mkdir -p /var/log/libvirt /run/libvirt /var/lib/libvirt /var/cache/libvirt /etc/libvirt
}

virsh_ok() {
  [[ -S "${sock}" ]] && timeout 10 virsh -q -c "${uri}" version >/dev/null 2>&1
}

# A zombie counts as gone: it runs nothing, and its reaper (pid 1 here) may take a while.
pid_alive() {
  local stat
  [[ -n "$1" ]] && kill -0 "$1" 2>/dev/null || return 1
  stat="$(cat "/proc/$1/stat" 2>/dev/null)" || return 1
  stat="${stat##*) }"
  [[ "${stat:0:1}" != Z ]]
}

read_pid() {
  local pid=""
  if [[ -r "$1" ]]; then
    read -r pid < "$1" || true
  fi
  [[ "${pid}" =~ ^[0-9]+$ ]] && printf '%s\n' "${pid}"
  return 0
}

# Every process in this site's mount namespace (holder, daemons, QEMU), found
# by what /run/libvirt is for that process: this site's run folder. That keeps
# working when pid files are stale or were never written.
site_pids() {
  local want host_ns p pid ns got
  local -A ns_match=()
  [[ -d "${site_dir}/run" ]] || return 0
  want="$(stat -c '%d:%i' "${site_dir}/run")"
  host_ns="$(readlink /proc/self/ns/mnt)"
  for p in /proc/[0-9]*; do
    pid="${p#/proc/}"
    pid_alive "${pid}" || continue
    ns="$(readlink "$p/ns/mnt" 2>/dev/null)" || continue
    [[ "${ns}" == "${host_ns}" ]] && continue
    ns="${ns//[^0-9]/}"
    if [[ -z "${ns_match[${ns}]:-}" ]]; then
      got="$(stat -L -c '%d:%i' "$p/root/run/libvirt" 2>/dev/null)" || got=""
      if [[ "${got}" == "${want}" ]]; then ns_match["${ns}"]=yes; else ns_match["${ns}"]=no; fi
    fi
    [[ "${ns_match[${ns}]}" == yes ]] && printf '%s\n' "${pid}"
  done
  return 0
}

# wait_gone SECONDS PID...: true when all are gone in time.
wait_gone() {
  local deadline=$(( $(date +%s) + $1 ))
  shift
  local pid left
  while :; do
    left=0
    for pid in "$@"; do
      pid_alive "${pid}" && left=1
    done
    [[ ${left} -eq 0 ]] && return 0
    [[ $(date +%s) -ge ${deadline} ]] && return 1
    sleep 0.2
  done
}

# Writes the site's libvirt configuration: the host's /etc/libvirt settings
# copied once (the site's own domain definitions live there afterwards), then
# our settings. Only the daemons' *.conf files and nwfilter rules are copied:
# a host's own domains, networks, pools, autostart links and hook scripts
# under /etc/libvirt must not appear (and autostart) at every site.
prepare_config() {
  local etc="${site_dir}/etc" f
  if [[ ! -e "${etc}/.evac-site" ]]; then
    for f in /etc/libvirt/*.conf; do
      if [[ -f "$f" ]]; then
        cp -p "$f" "${etc}/"
      fi
    done
    if [[ -d /etc/libvirt/nwfilter ]]; then
      cp -a /etc/libvirt/nwfilter "${etc}/"
    fi
    touch "${etc}/.evac-site"
  fi
  # qemu.conf is the distribution's, as shipped (QEMU as libvirt-qemu,
  # dynamic ownership, the DAC security driver, cgroups): evac must work on
  # hosts as they come, so the lab loosens nothing. Copied at every start so
  # that a site made by an older lab loses its settings too.
  cp -p /etc/libvirt/qemu.conf "${etc}/qemu.conf"
  # Log to files in the site's log folder (a daemon started with -d has no stderr).
  set_conf "${etc}/libvirtd.conf" \
    'log_outputs = "3:file:/var/log/libvirt/libvirtd.log"'
  set_conf "${etc}/virtlogd.conf" \
    'log_outputs = "3:file:/var/log/libvirt/virtlogd.log"'
}

# libvirtd probes each QEMU binary's capabilities on its first start (about
# 8 s of TCG here) and caches the result. A new site starts from the cache of
# a site that already probed; libvirtd checks the cache against the QEMU and
# libvirt binaries and the host, and probes again when it is stale.
seed_qemu_caps() {
  local caps="${site_dir}/cache/qemu/capabilities" shared="${root}/.qemu-capabilities"
  if [[ -d "${shared}" ]] && ! compgen -G "${caps}/*.xml" >/dev/null; then
    mkdir -p "${caps}"
    cp -p "${shared}"/*.xml "${caps}/" 2>/dev/null || true
  fi
}

save_qemu_caps() {
  local caps="${site_dir}/cache/qemu/capabilities" shared="${root}/.qemu-capabilities"
  compgen -G "${caps}/*.xml" >/dev/null || return 0
  mkdir -p "${shared}"
  cp -p "${caps}"/*.xml "${shared}/" 2>/dev/null || true
}

# set_conf FILE 'key = value'...: comment out earlier settings of each key and
# append ours in a marked block, replacing the block of an earlier run.
set_conf() {
  local file="$1"
  shift
  local line key tmp
  tmp="$(mktemp "${file}.XXXXXX")"
  if [[ -f "${file}" ]]; then
    sed '/^# >>> evac lab site >>>$/,/^# <<< evac lab site <<<$/d' "${file}" > "${tmp}"
  fi
  for line in "$@"; do
    key="${line%% *}"
    sed -i "s/^[[:space:]]*${key}[[:space:]]*=/#&/" "${tmp}"
  done
  {
    echo '# >>> evac lab site >>>'
    printf '%s\n' "$@"
    echo '# <<< evac lab site <<<'
  } >> "${tmp}"
  chmod 644 "${tmp}"
  mv -f "${tmp}" "${file}"
}

# Runs as the namespace holder, in the new mount namespace. $1 = site folder.
# shellcheck disable=SC2016  # expanded by the inner shell
holder_script='
set -eu
d="$1"
echo $$ > "$d/state/holder.pid"
mount --bind "$d/run" /run/libvirt
mount --bind "$d/lib" /var/lib/libvirt
mount --bind "$d/log" /var/log/libvirt
mount --bind "$d/cache" /var/cache/libvirt
mount --bind "$d/etc" /etc/libvirt
virtlogd -d -p "$d/state/virtlogd.pid"
libvirtd -d -p "$d/state/libvirtd.pid"
exec sleep infinity
'

site_up() {
  local t_start pid holder_pid
  t_start="$(lab_now_ms)"
  if virsh_ok; then
    lab_say "site ${name} is already up"
    printf '%s\n' "${uri}"
    return 0
  fi
  if [[ -n "$(site_pids)" ]]; then
    lab_say "site ${name} is half up (processes without an answering libvirtd): cleaning up first"
    site_down
  fi

  mkdir -p "${site_dir}"/{run,lib,log,cache,etc} "${state_dir}"
  rm -f "${holder_pid_file}" "${libvirtd_pid_file}" "${virtlogd_pid_file}" "${sock}"
  # One start's logs per file, so a failure shows this start's messages only.
  local f
  for f in "${libvirtd_log}" "${virtlogd_log}" "${holder_log}"; do
    [[ ! -e "$f" ]] || mv -f "$f" "$f.prev"
  done
  prepare_config
  seed_qemu_caps

  local -a cmd=(unshare -m --propagation private -- /bin/sh -c "${holder_script}" evac-site-holder "${site_dir}")
  if [[ -n "${netns}" ]]; then
    lab_need_tool ip iproute2
    ip netns list | grep -qw -- "${netns}" || lab_die "network namespace '${netns}' does not exist"
    cmd=(ip netns exec "${netns}" "${cmd[@]}")
  fi
  # Its own session, stdin closed: the site outlives this shell and its Ctrl-C.
  printf '%s starting site %s\n' "$(date -Is)" "${name}" >> "${holder_log}"
  # fd 9 holds this script's lock and must not live on in the site's processes.
  setsid "${cmd[@]}" < /dev/null >> "${holder_log}" 2>&1 9>&- &

  local started deadline
  started="$(date +%s)"
  deadline=$(( started + up_timeout ))
  until virsh_ok; do
    holder_pid="$(read_pid "${holder_pid_file}")"
    if [[ -n "${holder_pid}" ]] && ! pid_alive "${holder_pid}"; then
      up_failed "the namespace holder exited (a bind mount or a daemon failed to start)"
    fi
    if [[ -z "${holder_pid}" && $(date +%s) -ge $(( started + 5 )) ]]; then
      up_failed "the namespace holder did not start"
    fi
    if [[ $(date +%s) -ge ${deadline} ]]; then
      up_failed "libvirtd did not answer on ${sock} within ${up_timeout} s"
    fi
    sleep 0.2
  done
  save_qemu_caps
  pid="$(read_pid "${libvirtd_pid_file}")"
  lab_say "site ${name} up (libvirtd pid ${pid:-?}, holder pid $(read_pid "${holder_pid_file}"))"
  lab_timing "site ${name} up" "${t_start}"
  printf '%s\n' "${uri}"
}

up_failed() {
  lab_say "error: site ${name} failed to come up: $1"
  lab_tail_file "libvirtd log" "${libvirtd_log}" 30
  lab_tail_file "virtlogd log" "${virtlogd_log}" 10
  lab_tail_file "namespace holder output" "${holder_log}" 20
  lab_say "stopping what did start"
  site_down || true
  exit 1
}

site_down() {
  local dom libvirtd_pid
  local -a pids=() left=() domains=()
  if virsh_ok; then
    mapfile -t domains < <(timeout 20 virsh -q -c "${uri}" list --name 2>/dev/null | sed '/^$/d')
    for dom in "${domains[@]}"; do
      lab_say "destroying domain ${dom} of site ${name}"
      timeout 30 virsh -q -c "${uri}" destroy "${dom}" >/dev/null 2>&1 ||
        lab_say "warning: could not destroy ${dom}; its QEMU is killed below"
    done
  fi

  mapfile -t pids < <(site_pids)
  # libvirtd first, so it does not restart or reconnect to anything we stop.
  libvirtd_pid="$(read_pid "${libvirtd_pid_file}")"
  if [[ -n "${libvirtd_pid}" ]] && printf '%s\n' "${pids[@]}" | grep -qx -- "${libvirtd_pid}"; then
    kill -TERM "${libvirtd_pid}" 2>/dev/null || true
    wait_gone 15 "${libvirtd_pid}" || kill -KILL "${libvirtd_pid}" 2>/dev/null || true
  fi

  mapfile -t pids < <(site_pids)
  if [[ ${#pids[@]} -gt 0 ]]; then
    kill -TERM "${pids[@]}" 2>/dev/null || true
    if ! wait_gone 10 "${pids[@]}"; then
      mapfile -t left < <(site_pids)
      if [[ ${#left[@]} -gt 0 ]]; then
        lab_say "killing what ignored SIGTERM: ${left[*]}"
        kill -KILL "${left[@]}" 2>/dev/null || true
        wait_gone 10 "${left[@]}" || true
      fi
    fi
  fi

  mapfile -t left < <(site_pids)
  if [[ ${#left[@]} -gt 0 ]]; then
    lab_die "site ${name}: processes still running after down: ${left[*]}"
  fi
  rm -f "${holder_pid_file}" "${libvirtd_pid_file}" "${virtlogd_pid_file}"
  lab_say "site ${name} down"
}

site_crash() {
  local -a pids=() left=()
  mapfile -t pids < <(site_pids)
  if [[ ${#pids[@]} -gt 0 ]]; then
    kill -KILL "${pids[@]}" 2>/dev/null || true
    wait_gone 10 "${pids[@]}" || true
  fi
  mapfile -t left < <(site_pids)
  [[ ${#left[@]} -eq 0 ]] || lab_die "site ${name}: processes still running after kill -9: ${left[*]}"
  rm -f "${holder_pid_file}" "${libvirtd_pid_file}" "${virtlogd_pid_file}"
  lab_say "site ${name} crashed (${#pids[@]} processes killed)"
}

site_status() {
  if virsh_ok; then
    printf 'up %s\n' "${uri}"
    return 0
  fi
  printf 'down %s\n' "${uri}"
  local -a pids=()
  mapfile -t pids < <(site_pids)
  if [[ ${#pids[@]} -gt 0 ]]; then
    lab_say "site ${name} has ${#pids[@]} processes but no answering libvirtd (pids ${pids[*]}); run: lab/site.sh down ${name}"
  fi
  return 3
}

need_tools
if [[ "${action}" == status ]]; then
  rc=0
  site_status || rc=$?
  exit "${rc}"
fi

if [[ "${action}" == down || "${action}" == crash ]] && [[ ! -d "${site_dir}" ]]; then
  lab_say "site ${name} is down (it was never set up under ${root})"
  exit 0
fi
[[ "${action}" != up ]] || ensure_prerequisites
mkdir -p "${site_dir}"
# One up/down of a site at a time.
exec 9>"${site_dir}/.lock"
flock -w 120 9 || lab_die "another lab/site.sh is working on site ${name}"
case "${action}" in
  up) site_up ;;
  down) site_down ;;
  crash) site_crash ;;
  *) usage ;;
esac
