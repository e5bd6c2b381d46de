#!/bin/bash
# Benchmark of the built-in replicator's scan mode (stopped VMs), side by side
# with its peers on the same data in the same run, over loopback:
#   (a) first sync of a SIZE image: evac (two evacd's, mutual TLS) vs nbdcopy
#       from a qemu-nbd export to a local file, dd's sequential read, and
#       the transport floor: the same bytes over one TLS 1.3 connection on
#       loopback and nothing else (bench/tls_loopback.cc);
#   (c) after 1% of the disk was rewritten in random 64 KiB blocks: evac's
#       cycle (a new complete PIT at the recovery site) vs
#       rsync --inplace --no-whole-file --ignore-times to rsyncd on 127.0.0.1.
# evac's CPU is both evacd's own; the qemu-nbd processes they start (which
# read the source and write the replica) are shown on a line of their own.
# (b), change tracking on a running guest vs virtnbdbackup, is
# bench/replication_running.sh; bench/replication.sh runs all three.
#
# usage: bench/replication_scan.sh [SIZE_GIB]   (default 4; needs a built tree, root,
#        rsync and libnbd-bin: apt-get install rsync libnbd-bin)
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bin="${EVAC_BUILD_DIR:-${repo}/build/default}/src"
bench_bin="${EVAC_BUILD_DIR:-${repo}/build/default}/bench"
size_gib="${1:-4}"
root="/var/tmp/evac-bench-$$"
export EVAC_CONFIG="${root}/cli.yaml"
for tool in rsync nbdcopy qemu-nbd qemu-io qemu-img python3; do
  command -v "${tool}" >/dev/null || { echo "bench: ${tool} missing (apt-get install rsync libnbd-bin qemu-utils)" >&2; exit 1; }
done
[[ -x "${bin}/daemon/evacd" && -x "${bench_bin}/tls_loopback" ]] || { echo "bench: build first (make build)" >&2; exit 1; }

pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "${p}" 2>/dev/null || true; done
  wait 2>/dev/null || true
  [[ -n "${EVAC_BENCH_KEEP:-}" ]] || rm -rf "${root}"
}
trap cleanup EXIT
mkdir -p "${root}"/{a/images,b/replicas,nbdcopy,rsync-dst}

# children_cpu_of PID: the same for its reaped children (evacd's qemu-nbd processes).
children_cpu_of() { awk -v hz="$(getconf CLK_TCK)" '{print ($16 + $17) / hz}' "/proc/$1/stat"; }

image="${root}/a/images/bench01.qcow2"
echo "== preparing a ${size_gib} GiB qcow2 image of random data"
# Random data, written in 64 MiB pieces so memory stays small.
bench_random_file "${root}/seed.raw" "${size_gib}"
qemu-img convert -O qcow2 "${root}/seed.raw" "${image}"
rm -f "${root}/seed.raw"
sync

# Two sites on libvirt's test driver: the benchmark VM is shut off, its disk the image above.
uuid=00000000-0000-4000-8000-0000000000be
cat >"${root}/a.xml" <<XML
<node>
  <domain type='test' xmlns:test='http://libvirt.org/schemas/domain/test/1.0'>
    <name>bench01</name><uuid>${uuid}</uuid><memory>1048576</memory><vcpu>1</vcpu>
    <os><type>hvm</type></os>
    <devices><disk type='file' device='disk'><driver name='qemu' type='qcow2'/><source file='${image}'/><target dev='vda' bus='virtio'/></disk></devices>
    <test:runstate>5</test:runstate>
  </domain>
  <pool type='dir'><name>images</name><uuid>00000000-0000-4000-8000-0000000000a1</uuid><target><path>${root}/a/images</path></target></pool>
</node>
XML
cat >"${root}/b.xml" <<XML
<node>
  <pool type='dir'><name>replicas</name><uuid>00000000-0000-4000-8000-0000000000b1</uuid><target><path>${root}/b/replicas</path></target></pool>
</node>
XML
bench_start_sites "test://${root}/a.xml" "test://${root}/b.xml" bench01
evac() { "${bin}/cli/evac" --context a "$@"; }
qemu_nbd_cpu() { python3 -c "print(f'{$(children_cpu_of "${pids[0]}") + $(children_cpu_of "${pids[1]}"):.3f}')"; }

echo "== (a) first sync of ${size_gib} GiB"
timed dd dd if="${image}" of=/dev/null bs=4M iflag=direct
qemu-nbd -r -f qcow2 --socket="${root}/nbdcopy/sock" "${image}" &
nbd_pid=$!
for _ in $(seq 50); do [[ -S "${root}/nbdcopy/sock" ]] && break; sleep 0.1; done
timed nbdcopy nbdcopy "nbd+unix:///?socket=${root}/nbdcopy/sock" "${root}/nbdcopy/out.raw"
kill "${nbd_pid}" 2>/dev/null || true; wait "${nbd_pid}" 2>/dev/null || true
rm -f "${root}/nbdcopy/out.raw"
# The floor under any replicator that encrypts between the sites: the same
# bytes over one TLS 1.3 connection on loopback, nothing else done to them.
timed tls "${bench_bin}/tls_loopback" "${image}" "${root}/a/state/tls/cert.pem" "${root}/a/state/tls/key.pem"
read -r _ _ _ tls_suite <"${root}/tls.out"
cpu0="$(evacd_cpu)"
sender0="$(cpu_of "${pids[0]}")"
nbd0="$(qemu_nbd_cpu)"
timed evac "${bin}/cli/evac" --context a group sync bench
evac_cpu="$(python3 -c "print(f'{$(evacd_cpu) - ${cpu0}:.3f}')")"
# Each site's share: between real sites each has CPUs of its own.
sender_cpu="$(python3 -c "print(f'{$(cpu_of "${pids[0]}") - ${sender0}:.3f}')")"
receiver_cpu="$(python3 -c "print(f'{${evac_cpu} - ${sender_cpu}:.3f}')")"
evac_nbd_cpu="$(python3 -c "print(f'{$(qemu_nbd_cpu) - ${nbd0}:.3f}')")"
first_bytes="$(evac -o json group pits bench | python3 -c 'import json,sys; print(json.load(sys.stdin)[-1]["bytes_sent"])')"
size_bytes=$((size_gib << 30))
printf '%-34s %9s %9s %14s\n' "" "wall s" "cpu s" "bytes sent"
printf '%-34s %9s %9s %14s\n' "dd sequential read (O_DIRECT)" "${dd_wall}" "-" "-"
printf '%-34s %9s %9s %14s\n' "nbdcopy NBD -> local raw file" "${nbdcopy_wall}" "${nbdcopy_cpu}" "-"
printf '%-34s %9s %9s %14s\n' "TLS 1.3 on loopback, bytes only" "${tls_wall}" "${tls_cpu}" "-"
printf '%-34s %9s %9s %14s\n' "evac first sync (-> PIT at site b)" "${evac_wall}" "${evac_cpu}" "${first_bytes}"
printf '%-34s %9s %9s %14s\n' "  of which site a (sends)" "-" "${sender_cpu}" "-"
printf '%-34s %9s %9s %14s\n' "  of which site b (receives)" "-" "${receiver_cpu}" "-"
printf '%-34s %9s %9s %14s\n' "  + its qemu-nbd processes" "-" "${evac_nbd_cpu}" "-"
echo "evac throughput vs nbdcopy: $(ratio "${nbdcopy_wall}" "${evac_wall}")x (target >= 0.9)"
echo "TLS alone (${tls_suite}) vs nbdcopy: $(ratio "${nbdcopy_wall}" "${tls_wall}")x; evac vs TLS alone: $(ratio "${tls_wall}" "${evac_wall}")x"

[[ -n "${EVAC_BENCH_ONLY_A:-}" ]] && exit 0
echo "== (c) 1% rewritten in random 64 KiB blocks, VM stopped (evac scan mode)"
blocks=$(( size_bytes / 100 / 65536 ))
# Random (incompressible) contents, as a guest's data would be: 16 source
# files of 64 KiB that qemu-io copies in with "write -s".
bench_rewrite_plan "${size_bytes}" "${blocks}" "${root}" >"${root}/writes.txt"
# qemu-io takes many -c; feed them 200 at a time to stay under the argument limit.
while mapfile -t -n 200 chunk && [[ ${#chunk[@]} -gt 0 ]]; do
  cmd=(qemu-io -f qcow2)
  for c in "${chunk[@]}"; do cmd+=(-c "${c}"); done
  "${cmd[@]}" "${image}" >/dev/null
done <"${root}/writes.txt"
changed=$((blocks * 65536))
# rsync's destination starts as the previous state of the image (what a replica holds).
cp --sparse=always "$(evac -o json group pits bench | python3 -c 'import json,sys; print(json.load(sys.stdin)[-1]["disks"][0]["path"])')" "${root}/rsync-dst/prev.qcow2"
qemu-img convert -O qcow2 "${root}/rsync-dst/prev.qcow2" "${root}/rsync-dst/bench01.qcow2"  # standalone copy
bench_start_rsyncd
cpu0="$(evacd_cpu)"
nbd0="$(qemu_nbd_cpu)"
timed evac_inc "${bin}/cli/evac" --context a group sync bench
evac_inc_cpu="$(python3 -c "print(f'{$(evacd_cpu) - ${cpu0}:.3f}')")"
evac_inc_nbd_cpu="$(python3 -c "print(f'{$(qemu_nbd_cpu) - ${nbd0}:.3f}')")"
inc_bytes="$(evac -o json group pits bench | python3 -c 'import json,sys; print(json.load(sys.stdin)[-1]["bytes_sent"])')"
timed rsync rsync --inplace --no-whole-file --ignore-times --stats "${image}" "rsync://127.0.0.1:${rport}/dst/bench01.qcow2"
rsync_bytes="$(awk -F': ' '/Total bytes sent/ {gsub(/,/, "", $2); print $2}' "${root}/rsync.out")"
printf '%-34s %9s %9s %14s\n' "" "wall s" "cpu s" "bytes sent"
printf '%-34s %9s %9s %14s\n' "changed bytes" "-" "-" "${changed}"
printf '%-34s %9s %9s %14s\n' "rsync --inplace (rsyncd, loopback)" "${rsync_wall}" "${rsync_cpu}" "${rsync_bytes}"
printf '%-34s %9s %9s %14s\n' "evac scan cycle (-> new PIT)" "${evac_inc_wall}" "${evac_inc_cpu}" "${inc_bytes}"
printf '%-34s %9s %9s %14s\n' "  + its qemu-nbd processes" "-" "${evac_inc_nbd_cpu}" "-"
echo "evac wall vs rsync: $(ratio "${evac_inc_wall}" "${rsync_wall}")x (target <= 0.5)"
echo "evac bytes vs changed bytes: $(ratio "${inc_bytes}" "${changed}")x (target <= 1.05)"
