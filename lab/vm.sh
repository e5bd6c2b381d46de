#!/bin/bash
# Lab VMs on a site made by lab/site.sh (or any libvirt URI).
#
# usage:
#   lab/vm.sh define SITE_URI NAME GUEST_DIR DATA_DISK [--ip ADDR/PREFIX] [--gw ADDR]
#                    [--bridge BR | --network NET | --direct DEV]... [--mem MiB]
#       writes NAME.xml next to DATA_DISK and defines it (persistent, not started);
#       one NIC per --bridge (a host bridge), --network (a libvirt network)
#       or --direct (macvtap on a host device, mode bridge), in that order:
#       the first is the guest's eth0, which --ip configures;
#       the guest's vmlinuz and initrd.img are copied next to the disk as
#       NAME.vmlinuz and NAME.initrd.img, the serial console is logged to
#       NAME.serial.log there. Redefining an existing NAME replaces its
#       definition and keeps its UUID (it takes effect at the next start).
#   lab/vm.sh wait-agent SITE_URI NAME [TIMEOUT]
#       waits (default 120 s) until the guest agent answers guest-ping.
#   lab/vm.sh exec SITE_URI NAME [--timeout S] -- PROGRAM [ARG...]
#       runs PROGRAM in the guest through the agent (guest-exec), prints its
#       stdout (stderr to stderr) and exits with its exit code.
#   lab/vm.sh stop SITE_URI NAME...
#       shuts the guests down through their agents; destroys any still
#       running after 30 s.
set -euo pipefail

lab_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "${lab_dir}/lib.sh"

usage() {
  cat >&2 <<'EOF'
usage: lab/vm.sh define SITE_URI NAME GUEST_DIR DATA_DISK [--ip ADDR/PREFIX] [--gw ADDR]
                        [--bridge BR | --network NET | --direct DEV]... [--mem MiB]
       lab/vm.sh wait-agent SITE_URI NAME [TIMEOUT]
       lab/vm.sh exec SITE_URI NAME [--timeout S] -- PROGRAM [ARG...]
       lab/vm.sh stop SITE_URI NAME...
EOF
  exit 2
}

lab_need_tool virsh libvirt-clients

# agent SITE_URI NAME JSON [TIMEOUT]: one guest agent command; prints the reply.
agent() {
  virsh -q -c "$1" qemu-agent-command "$2" "$3" --timeout "${4:-5}"
}

# nic_xml TYPE SOURCE_ATTRIBUTES: one virtio <interface>.
nic_xml() {
  printf "    <interface type='%s'>\n      <source %s/>\n      <model type='virtio'/>\n    </interface>\n" "$1" "$2"
}

vm_define() {
  [[ $# -ge 4 ]] || usage
  local site_uri="$1" name="$2" guest_dir="$3" disk="$4"
  shift 4
  local ip="" gw="" mem=256 nic=""
  while [[ $# -gt 0 ]]; do
    case "$1" in
      --ip) [[ $# -ge 2 ]] || usage; ip="$2"; shift 2 ;;
      --gw) [[ $# -ge 2 ]] || usage; gw="$2"; shift 2 ;;
      --bridge) [[ $# -ge 2 ]] || usage; nic+="$(nic_xml bridge "bridge='$(lab_xml_escape "$2")'")"$'\n'; shift 2 ;;
      --network) [[ $# -ge 2 ]] || usage; nic+="$(nic_xml network "network='$(lab_xml_escape "$2")'")"$'\n'; shift 2 ;;
      --direct) [[ $# -ge 2 ]] || usage; nic+="$(nic_xml direct "dev='$(lab_xml_escape "$2")' mode='bridge'")"$'\n'; shift 2 ;;
      --mem) [[ $# -ge 2 ]] || usage; mem="$2"; shift 2 ;;
      *) usage ;;
    esac
  done
  lab_check_name "${name}"
  lab_need_tool qemu-img qemu-utils
  [[ "${mem}" =~ ^[0-9]+$ && "${mem}" -ge 64 ]] || lab_die "--mem wants MiB, at least 64 (got '${mem}')"
  if [[ -n "${ip}" ]]; then
    [[ "${ip}" =~ ^[0-9]{1,3}(\.[0-9]{1,3}){3}/[0-9]{1,2}$ ]] || lab_die "--ip wants ADDR/PREFIX, e.g. 10.77.0.11/24 (got '${ip}')"
    [[ -n "${nic}" ]] || lab_die "--ip needs a NIC: add --bridge BR, --network NET or --direct DEV"
  fi
  if [[ -n "${gw}" ]]; then
    [[ "${gw}" =~ ^[0-9]{1,3}(\.[0-9]{1,3}){3}$ ]] || lab_die "--gw wants an IPv4 address (got '${gw}')"
    [[ -n "${ip}" ]] || lab_die "--gw needs --ip"
  fi
  [[ -s "${guest_dir}/vmlinuz" && -s "${guest_dir}/initrd.img" ]] ||
    lab_die "${guest_dir} has no vmlinuz/initrd.img: run lab/build-guest.sh ${guest_dir}"
  [[ -f "${disk}" ]] || lab_die "data disk ${disk} not found: make one with lab/make-data-disk.sh"
  qemu-img info -U --output=json "${disk}" | grep -q '"format": "qcow2"' ||
    lab_die "${disk} is not a qcow2 image"

  local dir
  dir="$(cd "$(dirname "${disk}")" && pwd)"
  disk="${dir}/$(basename "${disk}")"
  local kernel="${dir}/${name}.vmlinuz" initrd="${dir}/${name}.initrd.img"
  local serial_log="${dir}/${name}.serial.log" xml="${dir}/${name}.xml"
  # The VM keeps its own copy, so rebuilding the guest never changes what a
  # defined VM boots, and the VM's files travel together.
  copy_if_changed "${guest_dir}/vmlinuz" "${kernel}"
  copy_if_changed "${guest_dir}/initrd.img" "${initrd}"

  local cmdline="console=ttyS0 printk.time=1 evac.hostname=${name}"
  [[ -z "${ip}" ]] || cmdline+=" evac.ip=${ip}"
  [[ -z "${gw}" ]] || cmdline+=" evac.gw=${gw}"

  # Redefining keeps the domain's UUID; libvirt refuses a new UUID for a known name.
  local uuid_xml="" uuid
  if uuid="$(virsh -q -c "${site_uri}" domuuid "${name}" 2>/dev/null)" && [[ -n "${uuid}" ]]; then
    uuid_xml="
  <uuid>${uuid}</uuid>"
  fi

  local emulator
  emulator="$(command -v qemu-system-x86_64)" ||
    lab_die "'qemu-system-x86_64' not found: install the Debian package 'qemu-system-x86' (apt-get install qemu-system-x86)"

  # TCG ('qemu'): KVM fails on this lab's hosts ("failed to set MSR 0x10a").
  cat > "${xml}.tmp" <<EOF
<domain type='qemu'>
  <name>$(lab_xml_escape "${name}")</name>${uuid_xml}
  <title>evac lab guest</title>
  <memory unit='MiB'>${mem}</memory>
  <currentMemory unit='MiB'>${mem}</currentMemory>
  <vcpu placement='static'>1</vcpu>
  <os>
    <type arch='x86_64' machine='pc'>hvm</type>
    <kernel>$(lab_xml_escape "${kernel}")</kernel>
    <initrd>$(lab_xml_escape "${initrd}")</initrd>
    <cmdline>$(lab_xml_escape "${cmdline}")</cmdline>
  </os>
  <features>
    <acpi/>
    <apic/>
  </features>
  <clock offset='utc'/>
  <on_poweroff>destroy</on_poweroff>
  <on_reboot>restart</on_reboot>
  <on_crash>destroy</on_crash>
  <devices>
    <emulator>$(lab_xml_escape "${emulator}")</emulator>
    <disk type='file' device='disk'>
      <driver name='qemu' type='qcow2' cache='none' io='native' discard='unmap'/>
      <source file='$(lab_xml_escape "${disk}")'/>
      <target dev='vda' bus='virtio'/>
    </disk>
${nic}    <serial type='pty'>
      <log file='$(lab_xml_escape "${serial_log}")' append='off'/>
      <target port='0'/>
    </serial>
    <console type='pty'>
      <target type='serial' port='0'/>
    </console>
    <channel type='unix'>
      <target type='virtio' name='org.qemu.guest_agent.0'/>
    </channel>
    <memballoon model='virtio'/>
  </devices>
</domain>
EOF
  mv -f "${xml}.tmp" "${xml}"
  virsh -q -c "${site_uri}" define "${xml}" >/dev/null ||
    lab_die "virsh define ${xml} failed on ${site_uri}"
  lab_say "defined ${name} on ${site_uri} (${xml})"
}

copy_if_changed() {
  if ! cmp -s "$1" "$2"; then
    cp "$1" "$2.tmp"
    mv -f "$2.tmp" "$2"
  fi
}

vm_wait_agent() {
  [[ $# -ge 2 && $# -le 3 ]] || usage
  local site_uri="$1" name="$2" timeout_s="${3:-120}"
  [[ "${timeout_s}" =~ ^[0-9]+$ ]] || lab_die "TIMEOUT wants seconds (got '${timeout_s}')"
  local t_start deadline state reply
  t_start="$(lab_now_ms)"
  deadline=$(( $(date +%s) + timeout_s ))
  while :; do
    if reply="$(agent "${site_uri}" "${name}" '{"execute":"guest-ping"}' 2 2>&1)"; then
      lab_say "guest agent of ${name} answers (after $(lab_secs_since "${t_start}") s of waiting)"
      return 0
    fi
    state="$(virsh -q -c "${site_uri}" domstate "${name}" 2>&1)" ||
      lab_die "cannot read the state of ${name}: ${state}"
    case "${state}" in
      running|paused|"in shutdown") ;;
      *) lab_die "${name} is ${state}; its guest agent will not answer" ;;
    esac
    if [[ $(date +%s) -ge ${deadline} ]]; then
      lab_die "guest agent of ${name} did not answer within ${timeout_s} s (last: ${reply})"
    fi
    sleep 0.5
  done
}

# json_field REPLY KEY: the value of a string, number or boolean field
# (agent replies are one line of JSON, and the fields read here are flat).
json_field() {
  local v
  v="$(printf '%s' "$1" | sed -n "s/.*\"$2\": *\\(\"[^\"]*\"\\|[-0-9a-z]*\\).*/\\1/p")"
  v="${v#\"}"
  printf '%s' "${v%\"}"
}

vm_exec() {
  [[ $# -ge 2 ]] || usage
  local site_uri="$1" name="$2"
  shift 2
  local timeout_s=60
  while [[ $# -gt 0 ]]; do
    case "$1" in
      --timeout) [[ $# -ge 2 ]] || usage; timeout_s="$2"; shift 2 ;;
      --) shift; break ;;
      *) usage ;;
    esac
  done
  [[ $# -ge 1 ]] || usage
  lab_need_tool base64 coreutils

  local request arg args="" reply pid deadline exited out err code
  for arg in "${@:2}"; do
    args+="${args:+,}$(lab_json_string "${arg}")"
  done
  request="{\"execute\":\"guest-exec\",\"arguments\":{\"path\":$(lab_json_string "$1"),\"arg\":[${args}],\"capture-output\":true}}"
  reply="$(agent "${site_uri}" "${name}" "${request}" 10)" ||
    lab_die "guest-exec in ${name} failed: ${reply:-no reply}"
  pid="$(json_field "${reply}" pid)"
  [[ "${pid}" =~ ^[0-9]+$ ]] || lab_die "unexpected guest-exec reply: ${reply}"

  deadline=$(( $(date +%s) + timeout_s ))
  while :; do
    reply="$(agent "${site_uri}" "${name}" "{\"execute\":\"guest-exec-status\",\"arguments\":{\"pid\":${pid}}}" 10)" ||
      lab_die "guest-exec-status in ${name} failed: ${reply:-no reply}"
    exited="$(json_field "${reply}" exited)"
    [[ "${exited}" == true ]] && break
    [[ $(date +%s) -lt ${deadline} ]] ||
      lab_die "guest command (pid ${pid}) still running after ${timeout_s} s"
    sleep 0.2
  done
  out="$(json_field "${reply}" out-data)"
  err="$(json_field "${reply}" err-data)"
  code="$(json_field "${reply}" exitcode)"
  [[ -z "${out}" ]] || printf '%s' "${out}" | base64 -d
  [[ -z "${err}" ]] || printf '%s' "${err}" | base64 -d >&2
  if [[ -z "${code}" ]]; then
    lab_say "guest command ended without an exit code (killed by signal $(json_field "${reply}" signal))"
    return 128
  fi
  return "${code}"
}

# Shuts guests down through their agents (the filesystems are unmounted
# cleanly), waits up to 30 s for all of them, then destroys what still runs.
vm_stop() {
  [[ $# -ge 2 ]] || usage
  local site_uri="$1"
  shift
  local name
  for name in "$@"; do virsh -q -c "${site_uri}" shutdown "${name}" --mode agent >/dev/null 2>&1 || true; done
  local deadline=$(( $(lab_now_ms) + 30000 )) running
  while (( $(lab_now_ms) < deadline )); do
    running=0
    for name in "$@"; do
      [[ "$(virsh -q -c "${site_uri}" domstate "${name}" 2>/dev/null)" == "shut off" ]] || running=1
    done
    (( running )) || return 0
    sleep 0.2
  done
  for name in "$@"; do virsh -q -c "${site_uri}" destroy "${name}" >/dev/null 2>&1 || true; done
  lab_say "some of $* did not shut down within 30 s and were destroyed"
}

[[ $# -ge 1 ]] || usage
cmd="$1"
shift
case "${cmd}" in
  define) vm_define "$@" ;;
  wait-agent) vm_wait_agent "$@" ;;
  exec) vm_exec "$@" ;;
  stop) vm_stop "$@" ;;
  *) usage ;;
esac
