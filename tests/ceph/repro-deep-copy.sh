#!/bin/bash
# Does a full copy of an image with snapshot-mirroring history keep its data?
# On Ceph 16.2.15 (Debian 12) it does not: `rbd deep cp` of such an image, and
# rbd-mirror's resync (the same deep copy), give images whose older data reads
# as zeros (FINDINGS.md, e). An image never mirror-enabled copies correctly.
#
# usage: repro-deep-copy.sh DIR [RUNS]   (DIR: a lab up with ceph-lab.sh; RUNS default 3)
# Creates vms/dcrepro-* at site-a and removes them again. Exit 1 if any copy differs.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=/dev/null
source "${1:?usage: repro-deep-copy.sh DIR [RUNS]}/env.sh"
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "${here}/lib.sh"
runs="${2:-3}"

# one IMG MIRROR: a 64 MiB image, 32 MiB written, then 4 cycles of 1 MiB of
# random 4 KiB writes + a user snapshot (+ a mirror snapshot when MIRROR=yes);
# then `rbd deep cp` and compare the head and every snapshot by md5.
one() {
  local img="$1" mirror="$2" i s bad=0
  cl_rbd a create --size 64M "vms/${img}"
  [[ "${mirror}" == yes ]] && cl_rbd a mirror image enable "vms/${img}" snapshot >/dev/null
  qemu-io -f raw -c 'write -P 0xab 0 32M' "$(cl_qemu_uri a "vms/${img}")" >/dev/null
  [[ "${mirror}" == yes ]] && cl_rbd a mirror image snapshot "vms/${img}" >/dev/null
  for i in 1 2 3 4; do
    cl_rbd a bench --io-type write --io-size 4K --io-total 1M --io-pattern rand "vms/${img}" >/dev/null 2>&1
    cl_rbd a snap create "vms/${img}@s${i}" 2>/dev/null
    [[ "${mirror}" == yes ]] && cl_rbd a mirror image snapshot "vms/${img}" >/dev/null
  done
  cl_rbd a deep cp --no-progress "vms/${img}" "vms/${img}-copy"
  for s in "" @s1 @s2 @s3 @s4; do
    [[ "$(cl_md5 a "vms/${img}${s}")" == "$(cl_md5 a "vms/${img}-copy${s}")" ]] || bad=$((bad + 1))
  done
  echo "${img} (mirror-enabled: ${mirror}): ${bad} of 5 (head + 4 snapshots) differ after rbd deep cp"
  for i in "${img}-copy" "${img}"; do
    [[ "${mirror}" == yes && "${i}" == "${img}" ]] && cl_rbd a mirror image disable --force "vms/${i}" >/dev/null
    cl_rbd a snap purge --no-progress "vms/${i}" >/dev/null 2>&1
    cl_rbd a rm --no-progress "vms/${i}" >/dev/null 2>&1
  done
  [[ "${bad}" == 0 ]]
}

rc=0
for ((r = 1; r <= runs; r++)); do
  one "dcrepro-plain-${r}" no || rc=1
  one "dcrepro-mirror-${r}" yes || rc=1
done
exit "${rc}"
