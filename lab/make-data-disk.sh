#!/bin/bash
# Make an empty ext4 data disk for the lab guest, as a qcow2 image.
#
# usage: lab/make-data-disk.sh [--force] PATH.qcow2 [SIZE]
#   SIZE as truncate(1) takes it, default 256M. Refuses to replace an existing
#   file unless --force is given (the file may hold a guest's data).
set -euo pipefail

lab_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "${lab_dir}/lib.sh"

usage() {
  echo "usage: lab/make-data-disk.sh [--force] PATH.qcow2 [SIZE]   (SIZE default 256M)" >&2
  exit 2
}

force=0
if [[ "${1:-}" == --force ]]; then
  force=1
  shift
fi
[[ $# -ge 1 && $# -le 2 && "$1" != -* ]] || usage
target="$1"
size="${2:-256M}"

lab_need_tool truncate coreutils
lab_need_tool mkfs.ext4 e2fsprogs
lab_need_tool qemu-img qemu-utils

if [[ -e "${target}" && "${force}" -ne 1 ]]; then
  lab_die "${target} exists; pass --force to replace it"
fi
target_dir="$(dirname "${target}")"
mkdir -p "${target_dir}"

t_start="$(lab_now_ms)"
raw="$(mktemp "${target_dir}/.data-disk.XXXXXX.raw")"
trap 'rm -f "${raw}" "${raw}.qcow2"' EXIT
truncate -s "${size}" "${raw}"
# Initialise inode tables and journal now: with lazy init the guest's kernel
# would write them in the background after the first mount, and those writes
# would look like guest changes to change tracking and replication.
mkfs.ext4 -q -F -L evac-data -E lazy_itable_init=0,lazy_journal_init=0 "${raw}"
qemu-img convert -f raw -O qcow2 "${raw}" "${raw}.qcow2"
mv -f "${raw}.qcow2" "${target}"
lab_say "data disk ${target} (${size}, ext4, qcow2) made in $(lab_secs_since "${t_start}") s"
