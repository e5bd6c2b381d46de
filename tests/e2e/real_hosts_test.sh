#!/bin/bash
# docs/real-hosts.md tried as a new user would, without lab/: two hosts
# prepared only by that guide (each a network and mount namespace of its
# own standing in for a machine: its own /etc/libvirt as Debian installs
# it, /run, /var/lib/libvirt, /var/lib/evac and /srv), libvirtd started the
# way the guide says, Debian's stock qemu.conf and default NAT network, a
# VM on that network, evacd configured from docs/configuration.md. Then the
# whole chain through the public CLI: pair, map, protect the running VM,
# replicate it, plan check (ready for every run, its test network isolated
# as the guide makes it), a test recovery and its cleanup, and a disaster:
# host-a gone, failover at host-b, the VM up with the data it had.
#
# The VM is the lab's tiny guest (lab/build-guest.sh): a user brings their
# own; nothing else of lab/ is used.
#
# usage: real_hosts_test.sh BUILD_DIR   (ctest passes it)
set -uo pipefail

build_dir="$(cd "${1:?usage: real_hosts_test.sh BUILD_DIR}" && pwd)"
repo_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
evac_bin="${build_dir}/src/cli/evac"
evacd_bin="${build_dir}/src/daemon/evacd"
root="/var/tmp/evac-realhosts-$$"
tag="rh$(( $$ % 1000 ))"  # namespaces and links
export EVAC_CONFIG="${root}/cli.yaml"
PATH="${PATH}:/usr/sbin:/sbin"

# shellcheck source=check.sh
source "${repo_dir}/tests/e2e/check.sh"

# ---- two machines on one: what the guide's reader has as hosts ----------------
holder_of() { cat "${root}/$1/holder.pid"; }
# on HOST CMD...: runs CMD on that host (its network and file system view).
on() {
  local host="$1"
  shift
  nsenter -t "$(holder_of "${host}")" -m -n -- "$@"
}
host_addr() { [[ "$1" == a ]] && echo 10.97.0.1 || echo 10.97.0.2; }

host_up() {  # a|b
  local h="$1" d="${root}/$1"
  mkdir -p "${d}"/{lib,log,cache,etc,evac,etc-evac,srv}
  # A freshly installed host's /etc/libvirt: what libvirt-daemon-system put
  # there (qemu.conf untouched, the default network defined).
  cp -a /etc/libvirt/. "${d}/etc/"
  ip netns add "${tag}-$1"
  ip -n "${tag}-$1" link set lo up
  # shellcheck disable=SC2016  # expanded by the holder's shell
  ip netns exec "${tag}-$1" unshare -m --propagation private -- sh -c '
    d="$1"
    mount -t tmpfs -o mode=0755 host-run /run && mkdir -p /run/libvirt /run/lock &&
    mount --bind "$d/lib" /var/lib/libvirt &&
    mount --bind "$d/log" /var/log/libvirt && mount --bind "$d/cache" /var/cache/libvirt &&
    mount --bind "$d/etc" /etc/libvirt && mkdir -p /var/lib/evac /etc/evac &&
    mount --bind "$d/evac" /var/lib/evac && mount --bind "$d/etc-evac" /etc/evac && mount --bind "$d/srv" /srv || exit 1
    echo $$ > "$d/holder.pid"
    exec sleep infinity' host-holder "${d}" </dev/null >"${d}/holder.log" 2>&1 &
  for _ in $(seq 50); do [[ -s "${d}/holder.pid" ]] && break; sleep 0.1; done
}

host_kill() {  # a|b: the machine loses power
  # Everything of the host shares its network namespace (QEMU runs in a
  # mount namespace of its own, as libvirt's default qemu.conf says).
  local pid ns pids=()
  [[ -s "${root}/$1/holder.pid" ]] || return 0
  ns="$(readlink "/proc/$(holder_of "$1")/ns/net" 2>/dev/null)" || return 0
  for pid in /proc/[0-9]*; do
    [[ "$(readlink "${pid}/ns/net" 2>/dev/null)" == "${ns}" ]] && pids+=("${pid#/proc/}")
  done
  [[ ${#pids[@]} -eq 0 ]] || kill -KILL "${pids[@]}" 2>/dev/null
  sleep 0.5
}

finish() {
  for h in a b; do
    if [[ -s "${root}/${h}/holder.pid" ]] && kill -0 "$(holder_of "${h}")" 2>/dev/null; then
      for dom in $(on "${h}" virsh -q list --name 2>/dev/null); do on "${h}" virsh -q destroy "${dom}" >/dev/null 2>&1; done
      for net in $(on "${h}" virsh -q net-list --name 2>/dev/null); do on "${h}" virsh -q net-destroy "${net}" >/dev/null 2>&1; done
    fi
    host_kill "${h}"
    ip netns del "${tag}-${h}" 2>/dev/null
  done
  if [[ ${failed} -gt 0 ]]; then
    echo "--- kept: ${root} (evacd logs in ${root}/{a,b}/evacd.log)"
    tail -n 15 "${root}/a/evacd.log" "${root}/b/evacd.log" 2>/dev/null
  else
    chattr -R -f -i "${root}" 2>/dev/null
    rm -rf "${root}"
  fi
}
trap finish EXIT

mkdir -p "${root}"
"${repo_dir}/lab/build-guest.sh" "${root}/guest" >/dev/null 2>&1 || { echo "FAILED: building the guest"; exit 1; }
host_up a
host_up b
ip link add "${tag}-ab" netns "${tag}-a" type veth peer name "${tag}-ba" netns "${tag}-b"
on a ip addr add 10.97.0.1/24 dev "${tag}-ab"; on a ip link set "${tag}-ab" up
on b ip addr add 10.97.0.2/24 dev "${tag}-ba"; on b ip link set "${tag}-ba" up

# ---- the guide, step by step ---------------------------------------------------
# 1. Packages are the install script's; libvirtd started as the distribution does.
for h in a b; do
  on "${h}" virtlogd -d
  on "${h}" libvirtd -d
done
for h in a b; do
  for _ in $(seq 150); do on "${h}" virsh -q -c qemu:///system version >/dev/null 2>&1 && break; sleep 0.2; done
done
answers() { on a virsh -q version >/dev/null && on b virsh -q version >/dev/null; }
check "libvirtd answers on qemu:///system at both hosts" answers
check "qemu.conf is Debian's, untouched" bash -c "! grep -Eq '^[[:space:]]*(user|group|dynamic_ownership|security_driver)[[:space:]]*=' '${root}/a/etc/qemu.conf'"
# 4. The production network: Debian defines libvirt's 'default' NAT network
#    but does not start it; the guide starts it at both hosts.
for h in a b; do on "${h}" virsh -q net-start default >/dev/null && on "${h}" virsh -q net-autostart default >/dev/null; done
active() { [[ "$(on "$1" virsh -q net-info "$2")" =~ Active:\ +yes ]]; }  # no grep -q: with pipefail, virsh's SIGPIPE would fail it
check "Debian's default network starts at both hosts (NAT: dnsmasq and iptables from the install script)" active a default
check "  (and at host-b)" active b default

# 3. Storage pools.
on a mkdir -p /srv/images
on a virsh -q pool-define-as images dir --target /srv/images >/dev/null && on a virsh -q pool-start images >/dev/null
on b mkdir -p /srv/replicas
on b virsh -q pool-define-as replicas dir --target /srv/replicas >/dev/null && on b virsh -q pool-start replicas >/dev/null

# 4. The recovery host's isolated test network, as the guide writes it.
cat >"${root}/test-isolated.xml" <<'EOF'
<network><name>test-isolated</name><bridge name='virbr-test'/></network>
EOF
on b virsh -q net-define "${root}/test-isolated.xml" >/dev/null && on b virsh -q net-start test-isolated >/dev/null
check "the isolated test network starts (iptables from the install script)" active b test-isolated

# A VM the user already runs at host-a: on the default network, its disk in the pool.
qemu-img create -q -f qcow2 "${root}/a/srv/images/app1.qcow2" 64M
truncate -s 64M "${root}/app1.raw" && mkfs.ext4 -q -F -E lazy_itable_init=0,lazy_journal_init=0 "${root}/app1.raw" &&
  qemu-img convert -O qcow2 "${root}/app1.raw" "${root}/a/srv/images/app1.qcow2" && rm -f "${root}/app1.raw"
# It boots a kernel of its own, kept at the same path on both hosts (plan
# check would name it missing at the recovery host otherwise).
for h in a b; do mkdir -p "${root}/${h}/srv/boot" && cp "${root}/guest/vmlinuz" "${root}/guest/initrd.img" "${root}/${h}/srv/boot/"; done
cat >"${root}/app1.xml" <<EOF
<domain type='qemu'>
  <name>app1</name>
  <memory unit='MiB'>256</memory>
  <vcpu>1</vcpu>
  <os>
    <type arch='x86_64' machine='pc'>hvm</type>
    <kernel>/srv/boot/vmlinuz</kernel>
    <initrd>/srv/boot/initrd.img</initrd>
    <cmdline>console=ttyS0 evac.hostname=app1 evac.ip=192.168.122.10/24</cmdline>
  </os>
  <devices>
    <emulator>$(command -v qemu-system-x86_64)</emulator>
    <disk type='file' device='disk'>
      <driver name='qemu' type='qcow2' cache='none'/>
      <source file='/srv/images/app1.qcow2'/>
      <target dev='vda' bus='virtio'/>
    </disk>
    <interface type='network'><source network='default'/><model type='virtio'/></interface>
    <serial type='pty'/>
    <channel type='unix'><target type='virtio' name='org.qemu.guest_agent.0'/></channel>
  </devices>
</domain>
EOF
on a virsh -q define "${root}/app1.xml" >/dev/null && on a virsh -q start app1 >/dev/null
agent_ok() { on "$1" virsh -q qemu-agent-command "$2" '{"execute":"guest-ping"}' --timeout 2 >/dev/null 2>&1; }
wait_agent() { for _ in $(seq 120); do agent_ok "$1" "$2" && return 0; sleep 1; done; return 1; }
up_as_libvirt_qemu() { wait_agent a app1 && pgrep -u libvirt-qemu -f 'guest=app1' >/dev/null; }
check "app1 runs at host-a as libvirt-qemu and answers its agent" up_as_libvirt_qemu
# guest_run HOST VM SHELL-COMMAND: its output, through the agent.
guest_run() {
  local reply pid
  reply="$(on "$1" virsh -q qemu-agent-command "$2" "$(python3 -c 'import json,sys; print(json.dumps({"execute":"guest-exec","arguments":{"path":"/bin/sh","arg":["-c",sys.argv[1]],"capture-output":True}}))' "$3")")" || return 1
  pid="$(python3 -c 'import json,sys; print(json.load(sys.stdin)["return"]["pid"])' <<<"${reply}")"
  for _ in $(seq 50); do
    reply="$(on "$1" virsh -q qemu-agent-command "$2" "{\"execute\":\"guest-exec-status\",\"arguments\":{\"pid\":${pid}}}")" || return 1
    if python3 -c 'import json,sys; sys.exit(0 if json.load(sys.stdin)["return"]["exited"] else 1)' <<<"${reply}"; then
      python3 -c 'import base64,json,sys; r=json.load(sys.stdin)["return"]; sys.stdout.write(base64.b64decode(r.get("out-data","")).decode()); sys.exit(r.get("exitcode",1))' <<<"${reply}"
      return
    fi
    sleep 0.2
  done
  return 1
}

# 2 and 5. evacd per docs/configuration.md, as root on each host.
for h in a b; do
  cat >"${root}/${h}/etc-evac/evacd.yaml" <<EOF
site: site-${h}
listen: $(host_addr "${h}"):8441
state_dir: /var/lib/evac/site-${h}
heartbeat_interval: 2s
replication: {schedules: false}
compute_providers:
  - {name: kvm-${h}, uri: "qemu:///system"}
EOF
  on "${h}" setsid "${evacd_bin}" --config /etc/evac/evacd.yaml </dev/null >"${root}/${h}/evacd.log" 2>&1 &
done
for h in a b; do for _ in $(seq 100); do [[ -s "${root}/${h}/evac/site-${h}/pin" ]] && break; sleep 0.1; done; done
check "state_dir is 0711 with its database and token private" \
  bash -c "[[ \$(stat -c %a '${root}/a/evac/site-a') == 711 && \$(stat -c %a '${root}/a/evac/site-a/evac.db') == 600 && \$(stat -c %a '${root}/a/evac/site-a/admin.token') == 600 ]]"
# The operator's CLI, from host-a's network.
evac() { on a "${evac_bin}" "$@"; }
for h in a b; do
  evac context add "site-${h}" --url "https://$(host_addr "${h}"):8441" --token-file "${root}/${h}/evac/site-${h}/admin.token" \
    --pin-file "${root}/${h}/evac/site-${h}/pin" >/dev/null
done
evac context use site-a >/dev/null
for _ in $(seq 50); do evac --context site-b site status >/dev/null 2>&1 && break; sleep 0.2; done

token="$(evac --context site-b -o json site pairing-token | python3 -c 'import json,sys; print(json.load(sys.stdin)["token"])')"
check "the sites pair" evac site pair "${token}"
nets="$(evac --context site-b -o json inventory networks)"
check "host-b's inventory judges test-isolated isolated by what is there" \
  python3 -c 'import json,sys; n={x["name"]: x for x in json.loads(sys.argv[1])}; t=n["test-isolated"]; sys.exit(0 if t["isolated"] and "no forward mode" in t["isolation"] and not n["default"]["isolated"] else 1)' "${nets}"
check "map compute" evac mapping create compute kvm-a kvm-b
check "map the default network, tested on test-isolated" evac mapping create network default default --test-network test-isolated
check "map storage" evac mapping create storage images replicas
check "app1 is protected (its placeholder at host-b)" evac group create shop --vm app1 --rpo 15m
guest_run a app1 'echo before-the-disaster > /data/marker && sync' >/dev/null
out="$(evac group sync shop 2>&1)"; rc=$?
check "the running VM replicates on stock libvirt (QEMU as libvirt-qemu): ${out}" test "${rc}" = 0
pits="$(evac -o json group pits shop)"
check "group pits gives the PIT's instant to the millisecond and its age, what a recovery to it would lose now" \
  python3 -c 'import json,sys; p=json.loads(sys.argv[1])[-1]; sys.exit(0 if p["created_at_ms"] // 1000 == p["created_at"] and 0 <= p["age_seconds"] < 600 else 1)' "${pits}"
check "its backup export folder is gone, the folder QEMU used handed to libvirt-qemu while it ran" \
  bash -c "[[ -z \$(ls -A '${root}/a/evac/site-a/backup' | grep -v '[.]cycle[.]json\$') ]]"

cat >"${root}/shop-dr.yaml" <<'EOF'
kind: RecoveryPlan
name: shop-dr
groups: [shop]
vms:
  - {vm: app1, priority: 1, wait_for_guest: 2m}
EOF
check "the plan is applied at host-b" evac --context site-b apply -f "${root}/shop-dr.yaml"
# 7. Check it.
out="$(evac --context site-b plan check shop-dr 2>&1)"; rc=$?
echo "${out}" | sed 's/^/  | /'
check "plan check: every run that applies is ready (exit ${rc})" test "${rc}" = 0
check "plan check: the test network is isolated, no warning about it" \
  bash -c '[[ "$1" == *"isolated test network '"'"'test-isolated'"'"' are ready (no forward mode"* && "$1" != *"can reach other networks"* ]]' _ "${out}"
check "plan check: host-a probed a backup of app1 and kept nothing" bash -c '[[ "$1" == *"can replicate every VM of group '"'"'shop'"'"' now (1 probed"* ]]' _ "${out}"

out="$(evac --context site-b plan test shop-dr --follow 2>&1)"; rc=$?
check "a test recovery at host-b succeeds" test "${rc}" = 0
nics() { on "$1" virsh -q domiflist "$2" | awk 'NF { print $2 " " $3 }' | paste -sd,; }
check "the test VM runs on the test network only" test "$(nics b app1-test)" = "network test-isolated"
check "and has the data of its point in time" test "$(guest_run b app1-test 'cat /data/marker')" = "before-the-disaster"
evac --context site-b plan cleanup shop-dr --follow >/dev/null
check "the cleanup removes it" bash -c "! nsenter -t $(holder_of b) -m -n -- virsh -q dominfo app1-test >/dev/null 2>&1"

# A disaster: host-a loses power; the operator fails over at host-b.
host_kill a
evac() { on b "${evac_bin}" "$@"; }  # the operator now works from host-b's network
out="$(evac --context site-b plan failover shop-dr --confirm shop-dr --follow 2>&1)"; rc=$?
check "failover at host-b with host-a gone succeeds" test "${rc}" = 0
check "app1 runs at host-b on its mapped network" test "$(on b virsh -q domstate app1 | head -1)/$(nics b app1)" = "running/network default"
wait_agent b app1
check "with the data it had at the last point in time" test "$(guest_run b app1 'cat /data/marker')" = "before-the-disaster"
report="$(evac --context site-b -o json run list | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["id"])')"
rpo="$(evac --context site-b -o json run report "${report}" --format json | python3 -c 'import json,sys; g=json.load(sys.stdin)["rpo"][0]; print(g.get("loss_window_seconds"), g["text"])')"
echo "failover RPO: ${rpo}"
check "the failover report gives the loss window to the millisecond" bash -c '[[ "$1" =~ ^[0-9.]+\ at\ most\ [0-9]+\.[0-9]{3}\ s ]]' _ "${rpo}"

echo "${passed} passed, ${failed} failed"
[[ ${failed} -eq 0 ]]
