#!/bin/bash
# The replication benchmark of issue 7, all three comparisons in one run:
#   (a) first sync of a SIZE GiB image vs nbdcopy (and dd's sequential read)
#   (c) a scan cycle of a stopped VM after 1% random 64 KiB rewrites vs rsync
#       (both in bench/replication_scan.sh, on the same image)
#   (b) a cycle of a running guest that rewrote 1% itself vs virtnbdbackup -l inc
#       and rsync (bench/replication_running.sh, on two twin guests)
# usage: bench/replication.sh [SIZE_GIB]   (default 4; root, a built tree,
#        apt-get install rsync libnbd-bin virtnbdbackup)
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
size="${1:-4}"
echo "##### (a) and (c): bench/replication_scan.sh ${size}"
"${here}/replication_scan.sh" "${size}"
echo
echo "##### (b): bench/replication_running.sh ${size}"
"${here}/replication_running.sh" "${size}"
