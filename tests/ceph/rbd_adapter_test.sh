#!/bin/bash
# evac's Ceph RBD adapter on two real Ceph clusters (tests/ceph/ceph-lab.sh):
# the conformance kit's whole sequence on rbd images mirrored between
# them, then the adapter against a cluster that died, which must fail
# within its time limit rather than hang.
#
# usage: rbd_adapter_test.sh BUILD_DIR
# EVAC_CEPH_LAB=DIR uses a lab already up there (it is left running);
# otherwise the test brings one up in a folder of its own and takes it down.
set -euo pipefail
BUILD=$(cd "$1" && pwd)
HERE=$(cd "$(dirname "$0")" && pwd)
EVAC="${BUILD}/src/cli/evac"
ADAPTER="${BUILD}/src/replication/rbd/evac-rbd-adapter"
WORK=$(mktemp -d /var/tmp/evac-rbd-test.XXXXXX)
LAB="${EVAC_CEPH_LAB:-}"
OWN_LAB=0
fail() { echo "FAIL: $*" >&2; exit 1; }
cleanup() {
  if [ "${OWN_LAB}" = 1 ]; then bash "${HERE}/ceph-lab.sh" purge "${LAB}" >/dev/null 2>&1 || true; fi
  rm -rf "${WORK}"
}
trap cleanup EXIT
if [ -z "${LAB}" ]; then
  LAB="${WORK}/lab"
  OWN_LAB=1
  bash "${HERE}/ceph-lab.sh" up "${LAB}"
fi
# shellcheck disable=SC1091
source "${LAB}/env.sh"
# shellcheck source=lib.sh
source "${HERE}/lib.sh"

# Two images of a VM, mirrored in snapshot mode, their first sync done.
tag="kit$$"
for d in vda vdb; do
  cl_rbd a create --size 64M "vms/${tag}-${d}"
  cl_rbd a mirror image enable "vms/${tag}-${d}" snapshot >/dev/null
done
for d in vda vdb; do
  for _ in $(seq 1 120); do
    cl_snaps b "vms/${tag}-${d}" 2>/dev/null | grep -q "mirror non-primary .* True" && break
    sleep 1
  done
  cl_snaps b "vms/${tag}-${d}" | grep -q "mirror non-primary .* True" || fail "the first sync of ${tag}-${d} never completed"
done

for s in a b; do
  cat > "${WORK}/site-${s}.yaml" <<YAML
site: kit-${s}
state_dir: ${WORK}/state-${s}
replication_adapters:
  - kind: rbd
    command: [${ADAPTER}]
    timeout: 120s
    settings:
      conf: ${LAB}/site-${s}/ceph.conf
      user: evac
      keyring: ${LAB}/site-${s}/ceph.client.evac.keyring
      timeout_seconds: 10
YAML
done
cat > "${WORK}/kit.yaml" <<YAML
kind: rbd
work_dir: ${WORK}/kit
protected: {site: kit-a, evacd_config: ${WORK}/site-a.yaml, rbd_options: "conf=${LAB}/site-a/ceph.conf:id=admin"}
recovery: {site: kit-b, evacd_config: ${WORK}/site-b.yaml, rbd_options: "conf=${LAB}/site-b/ceph.conf:id=admin"}
disks:
  - {target: vda, source: {type: network, protocol: rbd, name: vms/${tag}-vda}}
  - {target: vdb, source: {type: network, protocol: rbd, name: vms/${tag}-vdb}}
YAML
"${EVAC}" adapter test --config "${WORK}/kit.yaml" | tee "${WORK}/kit.out"
grep -q "^PASSED: 11 passed, 0 failed, 1 unsupported" "${WORK}/kit.out" || fail "the rbd adapter did not pass the kit"
grep -q "^UNSUPPORTED  verify" "${WORK}/kit.out" || fail "verify should be the only unsupported check"

# The recovery cluster dies: an operation fails within the adapter's
# time limit (10 s), saying the cluster is unavailable.
if [ "${OWN_LAB}" = 1 ]; then
  bash "${HERE}/ceph-lab.sh" stop-site "${LAB}" site-b -9
  request="{\"protocol\":1,\"operation\":\"list_pits\",\"kind\":\"rbd\",\"site\":{\"name\":\"kit-b\",\"state_dir\":\"${WORK}/state-b/adapters/rbd\"},\"settings\":{\"conf\":\"${LAB}/site-b/ceph.conf\",\"user\":\"evac\",\"keyring\":\"${LAB}/site-b/ceph.client.evac.keyring\",\"timeout_seconds\":5},\"request\":{\"group\":\"g\"}}"
  start=$(date +%s)
  answer=$(echo "${request}" | timeout 120 "${ADAPTER}")
  took=$(($(date +%s) - start))
  echo "adapter against a dead cluster answered in ${took} s: ${answer}"
  echo "${answer}" | grep -q '"code":"unavailable"' || fail "a dead cluster should be unavailable: ${answer}"
  [ "${took}" -lt 60 ] || fail "the adapter took ${took} s against a dead cluster: its calls are not bounded"
fi
echo "PASS: rbd adapter"
