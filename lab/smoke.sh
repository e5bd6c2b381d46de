#!/bin/bash
# End-to-end check of the lab: build the guest, bring up site "smoke", boot
# VM smoke01 on a fresh data disk, run a command in it through the guest
# agent, check the write reached the disk image, then tear everything down.
#
# usage: lab/smoke.sh
#   EVAC_LAB_ROOT=DIR  where sites and the guest live (default /var/tmp/evac-lab)
# Exit 0 on success. On failure it prints the guest's serial log and the
# site's libvirtd log before bringing the site down.
set -euo pipefail

lab_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "${lab_dir}/lib.sh"

[[ $# -eq 0 ]] || { echo "usage: lab/smoke.sh   (EVAC_LAB_ROOT=DIR, default /var/tmp/evac-lab)" >&2; exit 2; }

lab_root="${EVAC_LAB_ROOT:-/var/tmp/evac-lab}"
site=smoke
vm=smoke01
guest_dir="${lab_root}/guest"
site_dir="${lab_root}/${site}"
disk="${site_dir}/images/${vm}.qcow2"
serial_log="${site_dir}/images/${vm}.serial.log"
uri=""
phase="start"

lab_need_root
lab_need_tool debugfs e2fsprogs
lab_need_tool qemu-img qemu-utils

on_exit() {
  local rc=$?
  trap - EXIT
  if [[ ${rc} -ne 0 ]]; then
    lab_say "FAILED in phase '${phase}' (exit ${rc})"
    lab_tail_file "guest serial log" "${serial_log}" 60
    lab_tail_file "libvirtd log of site ${site}" "${site_dir}/log/libvirtd.log" 40
    lab_tail_file "QEMU log of ${vm}" "${site_dir}/log/qemu/${vm}.log" 20
  fi
  if [[ "${phase}" != "done" ]]; then
    "${lab_dir}/site.sh" down "${site}" --root "${lab_root}" || rc=1
  fi
  rm -f "${disk%.qcow2}.check.raw"
  if [[ ${rc} -eq 0 ]]; then
    lab_say "OK: all phases passed in $(lab_secs_since "${t_all}") s"
  fi
  exit "${rc}"
}
t_all="$(lab_now_ms)"
trap on_exit EXIT

phase="build guest"
t="$(lab_now_ms)"
"${lab_dir}/build-guest.sh" "${guest_dir}"
lab_timing "phase: ${phase}" "$t"

phase="site up"
t="$(lab_now_ms)"
uri="$("${lab_dir}/site.sh" up "${site}" --root "${lab_root}")"
lab_say "site URI: ${uri}"
lab_timing "phase: ${phase}" "$t"

# A run that died half-way may have left the VM running on this site.
if virsh -q -c "${uri}" domstate "${vm}" 2>/dev/null | grep -qE '^(running|paused)'; then
  lab_say "destroying ${vm} left over from an earlier run"
  virsh -q -c "${uri}" destroy "${vm}" >/dev/null
fi

phase="data disk + define"
t="$(lab_now_ms)"
"${lab_dir}/make-data-disk.sh" --force "${disk}" 256M
"${lab_dir}/vm.sh" define "${uri}" "${vm}" "${guest_dir}" "${disk}"
lab_timing "phase: ${phase}" "$t"

phase="start VM"
t_boot="$(lab_now_ms)"
virsh -q -c "${uri}" start "${vm}" >/dev/null
lab_timing "phase: ${phase} (virsh start)" "${t_boot}"

phase="wait for guest agent"
"${lab_dir}/vm.sh" wait-agent "${uri}" "${vm}" 120
lab_timing "boot to agent answering" "${t_boot}"

phase="guest-exec through the agent"
t="$(lab_now_ms)"
mounts="$("${lab_dir}/vm.sh" exec "${uri}" "${vm}" -- /bin/cat /proc/mounts)"
grep -q '^/dev/vda /data ext4 ' <<< "${mounts}" ||
  lab_die "the guest has no ext4 /dev/vda on /data; its mounts: ${mounts}"
out="$("${lab_dir}/vm.sh" exec "${uri}" "${vm}" -- /bin/sh -c 'echo hi > /data/x; sync; cat /data/x')"
[[ "${out}" == hi ]] || lab_die "guest-exec printed '${out}', expected 'hi'"
lab_say "guest-exec output: ${out}"
lab_timing "phase: ${phase}" "$t"

phase="destroy VM"
t="$(lab_now_ms)"
virsh -q -c "${uri}" destroy "${vm}" >/dev/null
virsh -q -c "${uri}" undefine "${vm}" >/dev/null
lab_timing "phase: ${phase}" "$t"

# The write was synced before the VM was pulled: it must be in the image.
phase="check disk image"
t="$(lab_now_ms)"
qemu-img convert -f qcow2 -O raw "${disk}" "${disk%.qcow2}.check.raw"
on_disk="$(debugfs -R 'cat /x' "${disk%.qcow2}.check.raw" 2>/dev/null)"
[[ "${on_disk}" == hi ]] || lab_die "/x in the disk image holds '${on_disk}', expected 'hi'"
lab_timing "phase: ${phase}" "$t"

phase="site down"
t="$(lab_now_ms)"
"${lab_dir}/site.sh" down "${site}" --root "${lab_root}"
lab_timing "phase: ${phase}" "$t"
phase="done"
