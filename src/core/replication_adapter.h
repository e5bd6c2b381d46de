// The replication adapter interface: evac's door to a storage replication
// engine (SRM calls these SRAs). An engine plugs in by implementing it; the
// built-in host-based replicator (replication/builtin/) is one. No backend
// header is included here, so the core never depends on an engine.
//
// Each site makes one adapter per engine kind it was built with (through
// the ReplicationRegistry, core/replication_registry.h) and keeps it for its
// lifetime; ReplicationService reaches engines only through this interface.
// Operations split by role: the protected site syncs (sync_now, talking to
// the same engine at the recovery site through a ReplicationPeerLink), the
// recovery site keeps points in time and turns them into test copies or
// live disks, so everything a recovery needs works with the protected site
// gone. An operation an engine cannot do returns StatusCode::kUnsupported,
// and capabilities() says so up front so the plan engine can plan around it
// honestly.
//
// Thread safety: one adapter serves every group of its site at once: cycles
// of different groups, a recovery-site call and a peer route may run
// concurrently. An engine serialises what must not overlap (per group).
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/model.h"
#include "core/status.h"

namespace evac {

struct ReplicationCapabilities {
  bool points_in_time = false;         // retains several consistent instances
  bool test_copies = false;            // writable copy of a PIT without stopping replication
  bool reverse = false;                // replicate back after a failover (reprotect)
  bool change_tracking = false;        // ships only blocks changed since the last cycle
  bool cross_vm_consistency = false;   // one instant across all VMs of a group
  bool app_quiesce = false;            // freezes guest filesystems for a cycle
  bool read_only_source = false;       // prepare_failover makes the source read-only
};

// One disk of a protected VM as the engine sees it.
struct ReplicatedDevice {
  std::string vm_uuid;
  std::string vm_name;
  std::string disk;         // guest target, e.g. "vda"
  DiskSource source;        // at the protected site (never sent to the recovery site)
  std::string format;       // "qcow2", "raw", ...
  std::string replica_dir;  // folder at the recovery site (from the storage mapping)
  std::uint64_t size_bytes = 0;
  // File name, in replica_dir, of a copy of the disk that may already be at
  // the recovery site (where the placeholder expects the disk): the first
  // cycle starts from it and ships only the blocks that differ.
  std::string seed;
  std::string key() const { return vm_uuid + "/" + disk; }
};
// The longest ReplicatedDevice::key() a site accepts from its peer.
inline constexpr std::size_t kMaxDeviceKeyLength = 1024;
// The largest disk evac replicates: 64 TiB, as large as a virtual disk of
// vSphere (62 TiB) or Hyper-V (64 TiB) gets. A recovery site keeps a hash
// of every 64 KiB block of each disk of a cycle in memory (1/2048 of its
// size: 32 GiB at this bound), so a size a paired site names is checked
// against it before anything is allocated or created for that disk.
inline constexpr std::uint64_t kMaxDiskBytes = std::uint64_t{64} << 40;
// kInvalidArgument, naming the disk, when `size_bytes` is beyond kMaxDiskBytes.
inline Status check_disk_size(const std::string& disk, std::uint64_t size_bytes) {
  if (size_bytes <= kMaxDiskBytes) return Status::ok();
  return invalid_argument("disk " + disk + " is " + std::to_string(size_bytes) +
                              " bytes, more than the 64 TiB (" + std::to_string(kMaxDiskBytes) + " bytes) evac replicates",
                          "keep each replicated disk at most 64 TiB: spread larger data over several disks of the VM");
}

// Which PITs a recovery site keeps: the newest `keep_last`, plus the newest
// PIT of each of the last `keep_hourly` clock hours (UTC) and of each of the
// last `keep_daily` days that have one (restic's keep-hourly/keep-daily), so
// a long history costs a few PITs. Everything else is merged away.
struct RetentionPolicy {
  int keep_last = 24;
  int keep_hourly = 0;
  int keep_daily = 0;
};
// The bounds of each count, wherever a policy comes from (an operator, or a
// paired site's commit): keep_last from 1, the others from 0.
inline constexpr int kMaxKeptPits = 1000;

// What the engine is asked to replicate: a protection group's disks.
struct ReplicationGroupSpec {
  std::string group;
  std::string protected_site;
  std::string recovery_site;
  std::vector<VmInfo> vms;  // with their disks at the protected site
  std::map<std::string, std::string> replica_dirs;  // source storage pool -> folder at the recovery site
  RetentionPolicy retention;
  // Read every block of every disk this cycle, trusting no change tracking:
  // the periodic full read that catches a replica drifted from its source
  // behind the tracking's back. Engines without tracking always do.
  bool full_read = false;
};

struct PitDisk {
  std::string key;   // ReplicatedDevice::key()
  std::string path;  // readable disk image of this PIT at the recovery site
  std::uint64_t size_bytes = 0;
};

// A retained, consistent replica instance at the recovery site. Never
// modified once complete.
struct PointInTime {
  std::string id;
  std::string group;
  std::int64_t created_at = 0;  // the instant it captures (unix seconds): created_at_ms / 1000
  // The instant it captures, to the millisecond: for running VMs the moment
  // every VM of the group stood paused (each guest's disks are as they were
  // when it was paused, all at or before this instant, and none of them
  // acknowledged a write between its pause and this instant); for stopped
  // VMs when the cycle started. Every write acknowledged before it is in the
  // PIT, and nothing written after it.
  std::int64_t created_at_ms = 0;
  std::uint64_t bytes_sent = 0;
  std::vector<PitDisk> disks;
  // The replication cycle that made it. The built-in replicator names the
  // change-tracking checkpoint of that instant after it, which is how the
  // protected site knows which checkpoint a replica is current with.
  std::string cycle_id;
  // The cycle read every block of every disk (no change map used); known
  // to the site that made it.
  bool full_read = false;
  // What the cycle that made it left for the next one to finish (a backup
  // job its hypervisor did not end in time, say): the PIT is complete
  // either way. Known to the site that made it.
  std::vector<std::string> warnings;
};

struct SyncProgress {
  std::uint64_t bytes_total = 0;    // to read at the source
  std::uint64_t bytes_scanned = 0;  // read and compared so far
  std::uint64_t bytes_sent = 0;     // shipped to the recovery site (compressed)
  // How long the group's running VMs stood paused for the cycle's instant
  // (0 when none ran): the price of cross-VM consistency, paid by guests.
  std::uint64_t paused_us = 0;
};
using ProgressCallback = std::function<void(const SyncProgress&)>;

struct ReplicationState {
  std::string group;
  std::optional<PointInTime> newest_pit;
  bool syncing = false;
  SyncProgress progress;
  std::string last_error;
};

struct TestCopy {
  std::string id;
  std::string pit_id;
  std::vector<PitDisk> disks;  // writable overlays on the PIT's disks
  std::string owner;           // who asked for it (a test run's id), if anyone said
  // The live disks of a recovered VM (a failover promoted the PIT), not a
  // test's: test cleanup never drops it.
  bool live = false;
};

// What a reprotect's release of the replicas at the new protected site did
// (ReplicationAdapter::release_replicas).
struct ReleasedReplicas {
  std::vector<std::string> flattened;        // live-copy disks made to stand alone here (paths)
  std::vector<std::string> released_copies;  // live copies handed over to their VMs
  std::vector<std::string> removed_pits;
  std::vector<std::string> kept_pits;        // still read through by a copy
  std::string kept_because;                  // why, when any are kept
};

// What verifying a PIT found on one disk: every block of the replica image
// hashed again and compared with the hashes of the source the cycle read.
struct DiskVerification {
  std::string key;
  std::uint64_t blocks_checked = 0;
  std::uint64_t blocks_mismatched = 0;
  std::vector<std::uint64_t> first_mismatches;  // byte offsets, at most 16
};

struct PitVerification {
  std::string group;
  std::string pit_id;
  std::vector<DiskVerification> disks;
  bool ok() const {
    for (const auto& d : disks)
      if (d.blocks_mismatched != 0) return false;
    return true;
  }
};

// The same engine at the paired site, reached through the routes it
// mounted there (ReplicationAdapter::peer_routes): how a protected site's
// cycle talks to the recovery site. evacd's link runs over the paired
// sites' mutual-TLS channel, passes every body it sends through the
// group's rate limit, and fails (kUnavailable) once evacd shuts down, so an
// engine's cycle stops at its next call.
class ReplicationPeerLink {
 public:
  virtual ~ReplicationPeerLink() = default;
  // The paired site's name, for messages.
  virtual std::string site() const = 0;
  // A JSON call to one of the engine's routes; `path` is below the engine's
  // prefix, as its route names it ("g1/cycles"). The answer is the paired
  // site's: hostile until decoded strictly.
  virtual Result<nlohmann::json> call(const std::string& method, const std::string& path,
                                      const std::optional<nlohmann::json>& body) = 0;
  // Raw bytes both ways (blocks, manifests), with the long timeout of bulk calls.
  virtual Result<std::string> call_bytes(const std::string& method, const std::string& path, const std::string& body) = 0;
  // True once evacd shuts down: an engine that waits without calling the
  // link (for a snapshot its storage makes, say) stops at its next look.
  virtual bool stopping() const = 0;
};

// A call a paired site's engine made to one of this engine's routes, after
// evacd authenticated the caller and checked that it protects the group to
// this site (and, for a route that `writes`, that its copy is not fenced).
struct ReplicationPeerRequest {
  const std::vector<std::string>& params;  // the path's captures; the first is the group
  const std::string& body;                 // raw, as received (at most the route's limit)
};
// One route an engine serves its paired site, mounted by evacd's router at
// /api/v1/peer/replication/<kind>/<path>.
struct ReplicationPeerRoute {
  std::string method;
  std::string path;     // below the engine's prefix; starts with "{group}/"
  std::string summary;  // for the API's description
  // Changes the group's replicas: refused to a caller whose copy this site
  // fenced (it took the group over), so a stale copy never becomes a PIT.
  bool writes = false;
  // Takes a batch of blocks (ApiLimits::max_block_batch) rather than an
  // ordinary body.
  bool bulk = false;
  // The answer: JSON, or a JSON binary value for raw bytes.
  std::function<Result<nlohmann::json>(const ReplicationPeerRequest&)> handle;
};

class ReplicationAdapter {
 public:
  virtual ~ReplicationAdapter() = default;
  virtual std::string kind() const = 0;
  virtual ReplicationCapabilities capabilities() const = 0;

  // Protected site: which disks of the group this engine replicates.
  virtual Result<std::vector<ReplicatedDevice>> discover(const ReplicationGroupSpec& spec) = 0;
  // Protected site: one cycle now, with the engine at the recovery site
  // over `recovery_site`; returns the new complete PIT.
  virtual Result<PointInTime> sync_now(const ReplicationGroupSpec& spec, ReplicationPeerLink& recovery_site,
                                       const ProgressCallback& progress) = 0;
  // Recovery site: the routes the protected site's engine calls during a
  // cycle. Engines that replicate by their own means serve none.
  virtual std::vector<ReplicationPeerRoute> peer_routes() { return {}; }

  // Recovery site (works with the protected site gone).
  virtual Result<std::vector<PointInTime>> list_pits(const std::string& group) = 0;
  // With an `owner` (a test run's id), asking again returns that owner's
  // copy rather than making a second: a test step run again converges.
  virtual Result<TestCopy> create_test_copy(const std::string& group, const std::string& pit_id,
                                            const std::string& owner = "") = 0;
  virtual Status drop_test_copy(const std::string& group, const std::string& test_copy_id) = 0;
  // Recovery site: the test copies and live copies held for the group.
  virtual Result<std::vector<TestCopy>> list_test_copies(const std::string& group) {
    return unsupported("the " + kind() + " replication engine keeps no copies of group '" + group + "'");
  }
  // Protected site, as its copy is fenced (the group went live at the
  // recovery site): make the replicated source read-only, so that nothing,
  // a VM started there by hand included, writes the stale copy. Idempotent.
  // `spec` names the group's VMs as they are at this site.
  virtual Status prepare_failover(const ReplicationGroupSpec& spec) = 0;
  // The site is live again for these VMs, which have moved onto new disks:
  // lift what prepare_failover did to the disks `spec` names (their old
  // ones), so that the operator can reuse or delete them. Idempotent, and
  // a no-op on disks it never made read-only.
  virtual Status release_source(const ReplicationGroupSpec& spec) = 0;
  // Without side effects, for readiness checks: whether prepare_failover
  // could make the disks `spec` names read-only now (what stops it, named,
  // otherwise). Engines that cannot at all answer kUnsupported.
  virtual Status check_read_only_source(const ReplicationGroupSpec& spec) {
    return unsupported("the " + kind() + " replication engine cannot make the source of group '" + spec.group +
                       "' read-only");
  }
  // For readiness checks, with no side effect that outlives the call:
  // whether a cycle could read each VM of `spec` as it is now (the built-in
  // replicator begins a backup of a running VM and ends it at once, with no
  // checkpoint, through the same folder and ownership a cycle uses). One
  // outcome per VM. Engines that cannot probe answer kUnsupported.
  struct SourceProbe {
    std::string vm;
    std::string state;  // "running", "shut off", ...
    Status outcome;
  };
  virtual Result<std::vector<SourceProbe>> probe_sources(const ReplicationGroupSpec& spec) {
    return unsupported("the " + kind() + " replication engine cannot probe the sources of group '" + spec.group + "'");
  }
  // Recovery site: make a PIT the live copy (TestCopy::live); its disks are
  // the ones to attach. With an `owner` (the run), asking again returns the
  // same copy.
  virtual Result<TestCopy> failover(const std::string& group, const std::string& pit_id,
                                    const std::string& owner = "") = 0;
  // New protected site after a failover or migration (reprotect): the first
  // cycle back toward the former protected site, starting from what that
  // site still holds of each disk (a delta resync, not a full copy). `spec`
  // is the group as it is protected from here now.
  virtual Result<PointInTime> reverse(const ReplicationGroupSpec& spec, ReplicationPeerLink& recovery_site,
                                      const ProgressCallback& progress) = 0;
  // Future recovery site (reprotect), before reverse() runs from the other
  // site: images here that hold an older state of the group's disks (by
  // ReplicatedDevice::key()), for an engine that resyncs from them so only
  // differing blocks travel; read, never written. Engines that resync by
  // their own means ignore them.
  virtual Status set_seeds(const std::string& group, const std::map<std::string, std::string>& seeds) {
    (void)group;
    (void)seeds;
    return Status::ok();
  }
  // Reprotect, at the site that held the group's replicas and now protects
  // it: those PITs are history once the recovered VMs stand on disks of
  // their own. Live copies that still read through PITs are flattened
  // where the engine can (a running hypervisor holding them: kept), those
  // standing alone are handed over to their VMs (their files stay, the
  // engine forgets them), and every PIT nothing reads any more is deleted.
  // Idempotent. Engines whose replicas are not files here answer kUnsupported.
  virtual Result<ReleasedReplicas> release_replicas(const std::string& group) {
    return unsupported("the " + kind() + " replication engine keeps the replicas of group '" + group + "' as they are");
  }
  // Recovery site: re-reads a PIT (empty id: the newest) and compares it
  // with the source state its cycle captured. Engines that keep no record
  // of the source answer kUnsupported.
  virtual Result<PitVerification> verify_pit(const std::string& group, const std::string& pit_id) {
    return unsupported("the " + kind() + " replication engine cannot verify point in time '" + pit_id + "' of group '" +
                       group + "'");
  }
};

}  // namespace evac
