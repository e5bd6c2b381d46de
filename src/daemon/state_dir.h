// The site's state folder: private to evacd, but for the one folder QEMU
// must reach.
#pragma once

#include <string>

#include "core/status.h"

namespace evac {

// Creates state_dir, closed (0700) while the start creates its files, and
// any missing folder above it passable but not readable by others (0711, so
// QEMU still reaches the backup folder below), whatever the umask. A
// state_dir that exists is closed too; folders above it that exist are the
// operator's and left alone.
Status make_state_dir(const std::string& state_dir);

// Makes state_dir passable but not readable by others (0711) so that QEMU
// reaches `qemu_folder` in it (where running VMs' backup exports are made:
// QEMU, as libvirt's unprivileged user on distribution defaults, opens its
// scratch files and creates its export socket in a per-VM folder there; the
// replicator sets that folder's modes), and everything else in it private: each other
// entry loses every group and other permission (files and folders alike,
// all the way down), so the database, the admin token, the TLS key and the
// PIT index stay evacd's own. Run at every start, after the start has
// created its files: a folder an older evacd left open is closed again.
Status keep_state_dir_private(const std::string& state_dir, const std::string& qemu_folder);

}  // namespace evac
