#!/bin/bash
# The Ceph RBD adapter's cycle side by side with the built-in replicator's
# and rsync's, on the same change of the same data, in one run (issue 28):
#   - a SIZE GiB disk of random data for each engine: a qcow2 file (builtin)
#     and an rbd image mirrored between two real Ceph clusters (tests/ceph/
#     ceph-lab.sh), each the disk of a stopped VM; each engine's two halves
#     run in one process (bench/adapter_cycle_bench.cc: evac's cycle code,
#     without the HTTPS hop between two evacd's, which a group of rbd disks
#     cannot have yet: their storage mapping is the part of issue 28 still
#     to do);
#   - 1% of each rewritten in random 64 KiB blocks (the same blocks, the
#     same bytes, written with qemu-io), then one cycle of each engine
#     (snapshot taken -> PIT complete at the recovery site) and rsync
#     --inplace of the file to rsyncd on loopback;
#   - the RPO the rbd adapter achieves under a steady write load: a writer
#     rewrites a random 64 KiB block every 50 ms while cycles run back to
#     back for DURATION s; the RPO achieved is the longest time a write
#     waited to be in a complete PIT (a cycle's end minus the previous
#     PIT's instant). The built-in replicator reads a disk being written
#     only through a running guest's change tracking: its RPO under load is
#     bench/replication_running.sh's, on real guests.
# The writes come from qemu-io on the host, not from a guest: a guest on
# an rbd disk needs the recovery of rbd disks through plans, which is not
# done yet.
#
# usage: bench/replication_rbd.sh [SIZE_GIB] [DURATION_S]   (default 4 and 60;
#        root, a built tree, rsync; EVAC_CEPH_LAB=DIR uses a lab already up)
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bin="${EVAC_BUILD_DIR:-${repo}/build/default}/src"
size_gib="${1:-4}"
duration="${2:-60}"
root="/var/tmp/evac-bench-rbd-$$"
export EVAC_CONFIG="${root}/cli.yaml"
for tool in rsync qemu-io qemu-img python3 rbd; do
  command -v "${tool}" >/dev/null || { echo "bench: ${tool} missing" >&2; exit 1; }
done
cycle_bench="${EVAC_BUILD_DIR:-${repo}/build/default}/bench/adapter_cycle_bench"
[[ -x "${cycle_bench}" && -x "${bin}/replication/rbd/evac-rbd-adapter" ]] || { echo "bench: build first (make build)" >&2; exit 1; }

pids=()
lab="${EVAC_CEPH_LAB:-}"
own_lab=0
cleanup() {
  for p in "${pids[@]}"; do kill "${p}" 2>/dev/null || true; done
  wait 2>/dev/null || true
  [[ ${own_lab} == 1 ]] && bash "${repo}/tests/ceph/ceph-lab.sh" purge "${lab}" >/dev/null 2>&1
  [[ -n "${EVAC_BENCH_KEEP:-}" ]] || rm -rf "${root}"
}
trap cleanup EXIT
mkdir -p "${root}"/{a/images,b/replicas,rsync-dst}
if [[ -z "${lab}" ]]; then
  lab="${root}/lab"
  own_lab=1
  echo "== two Ceph clusters (tests/ceph/ceph-lab.sh up)"
  CEPH_LAB_OSD_SIZE=$((size_gib * 3 + 4))G bash "${repo}/tests/ceph/ceph-lab.sh" up "${lab}"
fi
# shellcheck disable=SC1091
source "${lab}/env.sh"
# shellcheck source=../tests/ceph/lib.sh
source "${repo}/tests/ceph/lib.sh"
rbd_image="vms/bench$$"
qemu_rbd="rbd:${rbd_image}:conf=${CEPH_A}:id=admin"

echo "== ${size_gib} GiB of random data: a qcow2 file and the rbd image ${rbd_image}"
image="${root}/a/images/bench01.qcow2"
bench_random_file "${root}/seed.raw" "${size_gib}"
qemu-img convert -O qcow2 "${root}/seed.raw" "${image}"
# Not bounded like the lab's calls: importing GiBs takes longer than one command's limit.
rbd -c "${CEPH_A}" import --no-progress "${root}/seed.raw" "${rbd_image}" >/dev/null
rm -f "${root}/seed.raw"
t0="$(now)"
cl_rbd a mirror image enable "${rbd_image}" snapshot >/dev/null
until cl_snaps b "${rbd_image}" 2>/dev/null | grep -q "mirror non-primary .* True"; do sleep 1; done
mirror_first="$(python3 -c "print(f'{$(now) - ${t0}:.1f}')")"
echo "rbd-mirror's first sync of ${size_gib} GiB: ${mirror_first} s"

for site in a b; do
  cat >"${root}/${site}.yaml" <<YAML
site: bench-${site}
state_dir: ${root}/state
replication_adapters:
  - kind: rbd
    command: [${bin}/replication/rbd/evac-rbd-adapter]
    settings: {conf: ${lab}/site-${site}/ceph.conf, user: evac, keyring: ${lab}/site-${site}/ceph.client.evac.keyring}
YAML
done
# (arrays, not functions: timed runs its command through /usr/bin/time)
cycle_builtin=("${cycle_bench}" --kind builtin --disk "file:${image}:qcow2" --storage-b "${root}/b/replicas" --state "${root}/state-builtin")
cycle_rbd=("${cycle_bench}" --kind rbd --config-a "${root}/a.yaml" --config-b "${root}/b.yaml" --disk "network:rbd:${rbd_image}" --state "${root}/state-rbd")
echo "== first cycles"
timed first_builtin "${cycle_builtin[@]}"
timed first_rbd "${cycle_rbd[@]}"
echo "builtin first sync ${first_builtin_wall} s; rbd adapter's first PIT ${first_rbd_wall} s (after rbd-mirror's ${mirror_first} s)"

echo "== 1% rewritten in random 64 KiB blocks, the same in both"
size_bytes=$((size_gib << 30))
blocks=$((size_bytes / 100 / 65536))
bench_rewrite_plan "${size_bytes}" "${blocks}" "${root}" >"${root}/writes.txt"
apply_writes() {  # FORMAT IMAGE
  while mapfile -t -n 200 chunk && [[ ${#chunk[@]} -gt 0 ]]; do
    cmd=(qemu-io -f "$1")
    for c in "${chunk[@]}"; do cmd+=(-c "${c}"); done
    "${cmd[@]}" "$2" >/dev/null
  done <"${root}/writes.txt"
}
cp --sparse=always "${image}" "${root}/before.qcow2"
apply_writes qcow2 "${image}"
apply_writes raw "${qemu_rbd}"
changed=$((blocks * 65536))
# rsync's destination starts as the image before the change (what a replica holds).
cp --sparse=always "${root}/before.qcow2" "${root}/rsync-dst/bench01.qcow2"
port=$((30000 + $$ % 20000))
bench_start_rsyncd
timed builtin "${cycle_builtin[@]}"
timed rbd "${cycle_rbd[@]}"
timed rsync rsync --inplace --no-whole-file --ignore-times --stats "${image}" "rsync://127.0.0.1:${rport}/dst/bench01.qcow2"
pit_bytes() { awk '/^cycle/ {print $5}' "${root}/$1.out" | tail -1; }
rsync_bytes="$(awk -F': ' '/Total bytes sent/ {gsub(/,/, "", $2); print $2}' "${root}/rsync.out")"
printf '%-44s %9s %14s\n' "" "wall s" "bytes sent"
printf '%-44s %9s %14s\n' "changed bytes" "-" "${changed}"
printf '%-44s %9s %14s\n' "rsync --inplace (rsyncd, loopback)" "${rsync_wall}" "${rsync_bytes}"
printf '%-44s %9s %14s\n' "evac builtin cycle (-> PIT at site b)" "${builtin_wall}" "$(pit_bytes builtin)"
printf '%-44s %9s %14s\n' "evac rbd adapter cycle (-> PIT at cluster b)" "${rbd_wall}" "$(pit_bytes rbd)"
echo "rbd adapter vs builtin: $(ratio "${rbd_wall}" "${builtin_wall}")x; rbd adapter vs rsync: $(ratio "${rbd_wall}" "${rsync_wall}")x"

# A writer rewrites a random 64 KiB block of the rbd image every 50 ms
# while the rbd adapter's cycles run back to back for ${duration} s.
echo "== RPO under a steady write load, ${duration} s"
python3 - "${size_bytes}" "${duration}" "${qemu_rbd}" "${root}/rand0.bin" <<'PY' &
import random, subprocess, sys, time
size, duration, target, src = int(sys.argv[1]), float(sys.argv[2]), sys.argv[3], sys.argv[4]
end = time.time() + duration + 5
p = subprocess.Popen(["qemu-io", "-f", "raw", target], stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
while time.time() < end:
    p.stdin.write(f"write -s {src} {random.randrange(size // 65536) * 65536} 65536\n")
    p.stdin.flush()
    time.sleep(0.05)
p.stdin.write("quit\n")
p.stdin.close()
p.wait()
PY
writer=$!
"${cycle_rbd[@]}" --steady "${duration}" | tee "${root}/steady.out" | tail -3
wait "${writer}" || true
