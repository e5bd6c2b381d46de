# Shared by the replication benchmarks: two evacd's on loopback, paired and
# mapped, protecting one VM as group "bench". Source it, then call
#   bench_start_sites PROVIDER_URI_A PROVIDER_URI_B VM
# with ${root}, ${bin} and the array ${pids} set by the caller.

bench_start_sites() {
  local uri_a="$1" uri_b="$2" vm="$3" site p provider_uri token
  port=$((30000 + $$ % 20000))
  for site in a b; do
    p=$([[ ${site} == a ]] && echo "${port}" || echo $((port + 1)))
    provider_uri=$([[ ${site} == a ]] && echo "${uri_a}" || echo "${uri_b}")
    cat >"${root}/${site}.yaml" <<YAML
site: bench-${site}
listen: 127.0.0.1:${p}
state_dir: ${root}/${site}/state
log: {format: json, level: info}
replication: {schedules: false}
compute_providers: [{name: kvm-${site}, uri: "${provider_uri}"}]
YAML
    # A benchmark may add to each site's configuration (an external adapter, say).
    if declare -F bench_site_config >/dev/null; then bench_site_config "${site}" >>"${root}/${site}.yaml"; fi
    "${bin}/daemon/evacd" --config "${root}/${site}.yaml" 2>"${root}/${site}.log" &
    pids+=($!)
    for _ in $(seq 100); do
      [[ -s "${root}/${site}/state/pin" ]] && curl -sk "https://127.0.0.1:${p}/api/v1/health" >/dev/null && break
      sleep 0.1
    done
    "${bin}/cli/evac" context add "${site}" --url "https://127.0.0.1:${p}" --token-file "${root}/${site}/state/admin.token" \
      --pin-file "${root}/${site}/state/pin" >/dev/null
  done
  token="$("${bin}/cli/evac" --context b -o json site pairing-token | python3 -c 'import json,sys; print(json.load(sys.stdin)["token"])')"
  "${bin}/cli/evac" --context a site pair "${token}" >/dev/null
  "${bin}/cli/evac" --context a mapping create compute kvm-a kvm-b >/dev/null
  "${bin}/cli/evac" --context a mapping create storage images replicas >/dev/null
  "${bin}/cli/evac" --context a group create bench --vm "${vm}" --keep-pits 4 >/dev/null
}

# rsyncd on 127.0.0.1:${rport} (port + 2) serving ${root}/rsync-dst as module "dst".
bench_start_rsyncd() {
  cat >"${root}/rsyncd.conf" <<CONF
use chroot = no
[dst]
path = ${root}/rsync-dst
read only = no
uid = root
gid = root
CONF
  rport=$((port + 2))
  rsync --daemon --config="${root}/rsyncd.conf" --address=127.0.0.1 --port="${rport}" --no-detach \
    --log-file="${root}/rsyncd.log" &
  pids+=($!)
  for _ in $(seq 50); do (exec 3<>"/dev/tcp/127.0.0.1/${rport}") 2>/dev/null && break; sleep 0.1; done
}

now() { date +%s.%N; }
# timed PREFIX CMD...: runs CMD, its output in ${root}/PREFIX.out; sets
# ${PREFIX}_wall and ${PREFIX}_cpu (CMD and its children), in seconds.
timed() {
  local prefix="$1" t0 t1 rc=0
  shift
  t0="$(now)"
  /usr/bin/time -f "%U %S" -o "${root}/time.out" "$@" >"${root}/${prefix}.out" 2>&1 || rc=$?
  t1="$(now)"
  if [[ ${rc} -ne 0 ]]; then
    # Say what failed before the caller's `set -e` ends the run (its output
    # file goes with ${root} when the benchmark cleans up).
    echo "bench: '$*' failed (exit ${rc}); its output:" >&2
    grep -v '^Command exited with non-zero status' "${root}/${prefix}.out" >&2 || true
    return "${rc}"
  fi
  printf -v "${prefix}_wall" '%s' "$(python3 -c "print(f'{${t1} - ${t0}:.3f}')")"
  printf -v "${prefix}_cpu" '%s' "$(awk '{printf "%.3f", $1 + $2}' "${root}/time.out")"
}

# CPU seconds (user + system) a process has used so far.
cpu_of() { awk -v hz="$(getconf CLK_TCK)" '{print ($14 + $15) / hz}' "/proc/$1/stat"; }
# Both evacd's CPU seconds so far.
evacd_cpu() { python3 -c "print(f'{$(cpu_of "${pids[0]}") + $(cpu_of "${pids[1]}"):.3f}')"; }
ratio() { python3 -c "import sys; print(f'{float(sys.argv[1])/float(sys.argv[2]):.2f}')" "$1" "$2"; }

# bench_random_file PATH GIB: GIB GiB of random (incompressible, as a
# guest's) data, written in 64 MiB pieces so memory stays small.
bench_random_file() {
  python3 - "$1" "$2" <<'PY'
import os, sys
path, gib = sys.argv[1], int(sys.argv[2])
with open(path, "wb") as f:
    for _ in range(gib * 16):
        f.write(os.urandom(64 << 20))
PY
}

# bench_rewrite_plan SIZE_BYTES BLOCKS DIR: qemu-io commands, one a line,
# rewriting BLOCKS random 64 KiB blocks (the same ones for a given size:
# seeded) with random data from 16 files it writes in DIR.
bench_rewrite_plan() {
  python3 - "$1" "$2" "$3" <<'PY'
import os, random, sys
size, n, root = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
for i in range(16):
    with open(f"{root}/rand{i}.bin", "wb") as f:
        f.write(os.urandom(65536))
random.seed(7)
for k, off in enumerate(random.sample(range(size // 65536), n)):
    print(f"write -s {root}/rand{k % 16}.bin {off * 65536} 65536")
PY
}
