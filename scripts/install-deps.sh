#!/usr/bin/env bash
# Installs everything evac needs to build, test and run its demo, from
# Debian 12 packages only. Safe to run again: apt skips what is installed.
set -euo pipefail

packages=(
  # build
  cmake ninja-build g++ pkg-config
  libgtest-dev libgmock-dev
  # fuzzing: clang's libFuzzer (the fuzz preset)
  clang libclang-rt-14-dev
  # libraries evac links
  libvirt-dev libsqlite3-dev nlohmann-json3-dev libyaml-cpp-dev libcli11-dev libspdlog-dev libfmt-dev
  libcpp-httplib-dev libssl-dev libcurl4-openssl-dev libpugixml-dev libnbd-dev libzstd-dev libxxhash-dev
  # real sites: libvirtd + QEMU (TCG), and the tiny guest built from Debian packages
  # libvirt-daemon-system: the daemons' configuration as Debian ships it (qemu.conf: QEMU as
  # libvirt-qemu, dynamic ownership, DAC labels) and the libvirt-qemu user; iptables and
  # dnsmasq-base: what libvirt's own networks (isolated test networks among them) need to start
  libvirt-daemon libvirt-daemon-system libvirt-daemon-driver-qemu libvirt-clients qemu-system-x86 qemu-utils
  iptables dnsmasq-base
  linux-image-amd64 busybox-static qemu-guest-agent e2fsprogs cpio kmod iproute2 procps util-linux
  openssl curl
  # tests: the fake copy adapter (tests/adapters/) is a Python program
  python3
  # the Ceph RBD adapter links librbd/librados; its tests run two Ceph clusters (tests/ceph/ceph-lab.sh),
  # and QEMU/libvirt open rbd disks through qemu-block-extra and libvirt's rbd storage driver
  librbd-dev librados-dev libradospp-dev
  ceph-mon ceph-mgr ceph-osd rbd-mirror ceph-common uuid-runtime qemu-block-extra libvirt-daemon-driver-storage-rbd
)
# Multi-lane SHA-256 for block hashes; packaged for amd64 only (elsewhere
# evac hashes with OpenSSL).
if [ "$(dpkg --print-architecture)" = amd64 ]; then packages+=(libipsec-mb-dev); fi

if [ "$(id -u)" -ne 0 ]; then
  echo "install-deps: run as root (it installs Debian packages)" >&2
  exit 1
fi

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "install-deps: all ${#packages[@]} packages present"
  exit 0
fi
echo "install-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -q
apt-get install -y -q --no-install-recommends "${missing[@]}"
