#!/bin/bash
# Benchmark (b) of the built-in replicator: change tracking on a RUNNING
# guest, side by side with its peers on the same changes in the same run:
#   evac's cycle (pause, checkpoint + pull-mode backup, resume; read only the
#   dirty blocks over NBD; ship them over mutual TLS; a new complete PIT at
#   the recovery site)
#   vs virtnbdbackup -l inc of a twin guest that received the same writes
#      (virtnbdbackup refuses a domain with checkpoints it did not make, so
#      it cannot share evac's guest; it only writes a local file)
#   vs rsync --inplace --no-whole-file --ignore-times of the guest's image
#      file to rsyncd on 127.0.0.1 (the destination holds the previous state).
# Each guest has a second disk of SIZE GiB of random data; the guest itself
# rewrites 1% of it in random 64 KiB blocks (dd to /dev/vdb) before the
# measured cycle.
#
# usage: bench/replication_running.sh [SIZE_GIB]   (default 4; root, a built
#        tree, and: apt-get install rsync virtnbdbackup)
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bin="${EVAC_BUILD_DIR:-${repo}/build/default}/src"
size_gib="${1:-4}"
root="/var/tmp/evac-bench-run-$$"
export EVAC_CONFIG="${root}/cli.yaml"
for tool in rsync virtnbdbackup qemu-img virsh python3; do
  command -v "${tool}" >/dev/null || { echo "bench: ${tool} missing (apt-get install rsync virtnbdbackup)" >&2; exit 1; }
done
[[ -x "${bin}/daemon/evacd" ]] || { echo "bench: build first (make build)" >&2; exit 1; }

pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "${p}" 2>/dev/null || true; done
  wait 2>/dev/null || true
  "${repo}/lab/site.sh" down bencha --root "${root}/sites" >/dev/null 2>&1 || true
  [[ -n "${EVAC_BENCH_KEEP:-}" ]] || rm -rf "${root}"
}
trap cleanup EXIT
mkdir -p "${root}"/{a/images,b/replicas,vnb,rsync-dst}


echo "== preparing two guests, each with a ${size_gib} GiB disk of random data"
guest_dir="${EVAC_GUEST_DIR:-/var/tmp/evac-lab/guest}"
"${repo}/lab/build-guest.sh" "${guest_dir}" >/dev/null
uri="$("${repo}/lab/site.sh" up bencha --root "${root}/sites")"
virsh -q -c "${uri}" pool-define-as images dir --target "${root}/a/images" >/dev/null
virsh -q -c "${uri}" pool-start images >/dev/null
bench_random_file "${root}/seed.raw" "${size_gib}"
for vm in evac01 twin01; do
  "${repo}/lab/make-data-disk.sh" "${root}/a/images/${vm}.qcow2" 64M >/dev/null
  qemu-img convert -O qcow2 "${root}/seed.raw" "${root}/a/images/${vm}-vdb.qcow2"
  "${repo}/lab/vm.sh" define "${uri}" "${vm}" "${guest_dir}" "${root}/a/images/${vm}.qcow2" >/dev/null
  virsh -q -c "${uri}" attach-disk "${vm}" "${root}/a/images/${vm}-vdb.qcow2" vdb --driver qemu --subdriver qcow2 \
    --targetbus virtio --config >/dev/null
  virsh -q -c "${uri}" start "${vm}" >/dev/null
done
rm -f "${root}/seed.raw"
for vm in evac01 twin01; do "${repo}/lab/vm.sh" wait-agent "${uri}" "${vm}" 180 >/dev/null; done

# Site a runs evacd on the real libvirtd; site b receives into a folder
# (libvirt's test driver is enough for a recovery site that only stores).
cat >"${root}/b.xml" <<XML
<node>
  <pool type='dir'><name>replicas</name><uuid>00000000-0000-4000-8000-0000000000b1</uuid><target><path>${root}/b/replicas</path></target></pool>
</node>
XML
bench_start_sites "${uri}" "test://${root}/b.xml" evac01
evac() { "${bin}/cli/evac" --context a "$@"; }
# virtnbdbackup takes any "+transport" URI for a remote one that needs a
# password, so it runs inside the site's mount namespace, where the site's
# libvirtd answers at the standard qemu:///system socket.
vnb=(nsenter -t "$(cat "${root}/sites/bencha/state/holder.pid")" -m virtnbdbackup -U qemu:///system)
last_bytes() { evac -o json group pits bench | python3 -c 'import json,sys; print(json.load(sys.stdin)[-1]["bytes_sent"])'; }

echo "== first cycles (not the comparison): evac's full sync, virtnbdbackup's full backup"
cpu0="$(evacd_cpu)"
timed evac_full "${bin}/cli/evac" --context a group sync bench
evac_full_cpu="$(python3 -c "print(f'{$(evacd_cpu) - ${cpu0}:.3f}')")"
evac_full_bytes="$(last_bytes)"
timed vnb_full "${vnb[@]}" -d twin01 -l full -o "${root}/vnb"
# rsync's destination: the image as it is now, which is what evac's PIT holds.
cp --sparse=always "${root}/a/images/evac01-vdb.qcow2" "${root}/rsync-dst/evac01-vdb.qcow2"

size_bytes=$((size_gib << 30))
blocks=$((size_bytes / 100 / 65536))
echo "== each guest rewrites ${blocks} random 64 KiB blocks of its ${size_gib} GiB disk"
offsets="$(python3 -c "import random; random.seed(7); print(' '.join(map(str, random.sample(range(${size_bytes} // 65536), ${blocks}))))")"
for vm in evac01 twin01; do
  "${repo}/lab/vm.sh" exec "${uri}" "${vm}" --timeout 600 -- sh -c \
    "for o in ${offsets}; do dd if=/dev/urandom of=/dev/vdb bs=65536 count=1 seek=\$o conv=notrunc 2>/dev/null || exit 1; done; sync"
done
changed=$((blocks * 65536))

bench_start_rsyncd

echo "== (b) the incremental cycle after the guests' writes"
cpu0="$(evacd_cpu)"
timed evac_inc "${bin}/cli/evac" --context a group sync bench
evac_inc_cpu="$(python3 -c "print(f'{$(evacd_cpu) - ${cpu0}:.3f}')")"
evac_inc_bytes="$(last_bytes)"
timed vnb_inc "${vnb[@]}" -d twin01 -l inc -o "${root}/vnb"
vnb_bytes="$(du -cb "${root}"/vnb/*.inc.virtnbdbackup.1.data 2>/dev/null | tail -1 | cut -f1)"
timed rsync rsync --inplace --no-whole-file --ignore-times --stats "${root}/a/images/evac01-vdb.qcow2" \
  "rsync://127.0.0.1:${rport}/dst/evac01-vdb.qcow2"
rsync_bytes="$(awk -F': ' '/Total bytes sent/ {gsub(/,/, "", $2); print $2}' "${root}/rsync.out")"

printf '%-44s %9s %9s %14s\n' "" "wall s" "cpu s" "bytes"
printf '%-44s %9s %9s %14s\n' "evac first cycle, running guest (-> PIT)" "${evac_full_wall}" "${evac_full_cpu}" "${evac_full_bytes}"
printf '%-44s %9s %9s %14s\n' "virtnbdbackup -l full (local file)" "${vnb_full_wall}" "${vnb_full_cpu}" "-"
printf '%-44s %9s %9s %14s\n' "changed bytes (1%, by the guest)" "-" "-" "${changed}"
printf '%-44s %9s %9s %14s\n' "evac cycle (checkpoint -> PIT at site b)" "${evac_inc_wall}" "${evac_inc_cpu}" "${evac_inc_bytes}"
printf '%-44s %9s %9s %14s\n' "virtnbdbackup -l inc (local file, written)" "${vnb_inc_wall}" "${vnb_inc_cpu}" "${vnb_bytes:--}"
printf '%-44s %9s %9s %14s\n' "rsync --inplace (rsyncd, loopback, sent)" "${rsync_wall}" "${rsync_cpu}" "${rsync_bytes}"
echo "evac wall vs virtnbdbackup: $(ratio "${evac_inc_wall}" "${vnb_inc_wall}")x (target <= 1.0)"
echo "evac wall vs rsync: $(ratio "${evac_inc_wall}" "${rsync_wall}")x (target <= 0.2)"
echo "evac bytes vs changed bytes: $(ratio "${evac_inc_bytes}" "${changed}")x (target <= 1.05)"
echo "(evac CPU is both evacd's; the CLI only waits)"
