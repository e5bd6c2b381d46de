// The built-in host-based replicator: evac's embedded default for libvirt
// sites with file-backed disks.
//
// Two halves talk over a ReplicaChannel (in evacd: the routes of
// builtin_protocol.h over the paired sites' mutual-TLS channel):
//
//   protected site                                recovery site
//   BuiltinReplicator::sync_now                   ReplicaReceiver
//     read disk via NBD (qemu-nbd, libnbd)   ──►    begin_cycle: staging qcow2 overlays
//     hash 64 KiB blocks, compare with the   ◄──    manifest of the newest PIT
//     replica's manifest, ship what differs  ──►    apply_batch: verify, write via NBD
//     commit with each disk's manifest digest──►    commit_cycle: digests match → new PIT
//
// A cycle is all or nothing: the receiver writes into staging overlays and
// only a commit whose digests match what it applied turns them into a PIT;
// anything else (a cut link, a killed process, a corrupted block, a full
// disk) aborts the cycle and leaves the newest complete PIT as it was.
//
// Stopped VMs are read from their image files (every block is read and
// hashed; only differing blocks travel). Running and paused VMs are read
// through their compute provider's change tracking: a backup export at a
// new checkpoint, with the blocks changed since the last committed cycle's
// checkpoint as the change map.
//
// One sync_now cycle, phase by phase (each a BuiltinReplicator member):
//
//   <start>
//      |
//      v
//   CHECK_VMS             classify VMs (stopped: scan; running/paused: change
//      |                  tracking; a paused VM is not resumed), discover the
//      |                  disks, undo what an interrupted cycle of the group
//      |                  left (its journal)
//      v
//   FETCH_MANIFESTS       each disk's manifest in the newest PIT
//      |
//      v
//   PREPARE_LIVE_VMS      end stale backup jobs, drop checkpoints of cycles
//      |                  that never committed, pick each VM's base
//      |                  checkpoint, make its work folder
//      v
//   OPEN_STOPPED_SOURCES  qemu-nbd read-only exports of the stopped VMs'
//      |                  images (their locks keep the VMs from starting)
//      |
//      |  cycle id and instant chosen; from here on every way out settles
//      |  the running VMs (SETTLE below)
//      v
//   STAGE_AND_FREEZE      running VMs: pause, begin backups at the new
//      |                  checkpoint, resume (on a helper thread, while the
//      |                  recovery site stages the cycle when the sizes are
//      |                  known); open their exports as sources; then every
//      |                  disk's size is known and the cycle is staged if it
//      |                  was not yet
//      v
//   ADOPT_SEED_MANIFESTS  a disk with no PIT compares against the seed the
//      |                  recovery site found, if any
//      v
//   SHIP                  per disk (sync_disk): plan pieces → read and hash
//      |                  ahead on workers → compare with the replica's
//      |                  manifest → encode and send batches, several in
//      |                  flight → wait for them; yields the disk's digest
//      v
//   COMMIT                the recovery site checks the digests and turns the
//      |                  staged cycle into a PIT
//      v
//   <PIT>
//
//   Failures: CHECK_VMS .. OPEN_STOPPED_SOURCES return as they are: nothing
//   is staged or paused yet, the sources opened so far close. STAGE_AND_FREEZE drops a
//   cycle it staged (abort_cycle) before it returns the failure. From
//   ADOPT_SEED_MANIFESTS through SHIP a failure aborts the staged cycle. A
//   failed COMMIT is not aborted from here: the recovery site discards a
//   cycle whose commit fails, and the next begin_cycle drops one left open.
//
//   SETTLE (after STAGE_AND_FREEZE is entered, on every way out, when the
//   group has running VMs): close the sources, end the backups, keep the
//   cycle's checkpoint only if COMMIT succeeded (else drop it), remove the
//   work folders and the journal; a failure here leaves the journal for the
//   next cycle's CHECK_VMS.
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "core/change_tracking.h"
#include "core/replication_adapter.h"
#include "core/replication_registry.h"
#include "replication/builtin/block_codec.h"
#include "replication/builtin/block_source.h"
#include "replication/builtin/direct_writer.h"
#include "replication/builtin/nbd_image.h"
#include "replication/builtin/pit_store.h"

namespace evac::builtin {

struct DiskDigest {
  std::string key;
  std::string digest_hex;  // Manifest::digest() of the disk as the sender read it
};

// The protected site's view of the recovery site's half.
class ReplicaChannel {
 public:
  virtual ~ReplicaChannel() = default;
  virtual Status begin_cycle(const std::string& group, const std::string& cycle_id,
                             const std::vector<ReplicatedDevice>& disks) = 0;
  // Encoded Manifest of the disk in the newest PIT; nullopt if there is none.
  virtual Result<std::optional<std::string>> manifest(const std::string& group, const std::string& key) = 0;
  virtual Status send_batch(const std::string& group, const std::string& cycle_id, const std::string& batch) = 0;
  virtual Result<PointInTime> commit_cycle(const std::string& group, const std::string& cycle_id,
                                           const std::vector<DiskDigest>& digests, std::int64_t created_at_ms,
                                           std::uint64_t bytes_sent, const RetentionPolicy& retention) = 0;
  virtual Status abort_cycle(const std::string& group, const std::string& cycle_id) = 0;
  virtual Result<std::vector<PointInTime>> list_pits(const std::string& group) = 0;
};

// Stands in a manifest for a block that verification found altered in the
// newest replica: it matches no real hash, so the next cycle sends the block
// again (and reads it even when change tracking says it did not change).
inline BlockHash damaged_block_hash() {
  BlockHash h;
  h.fill(0xff);
  return h;
}

// The recovery site's half: applies cycles into a PitStore.
class ReplicaReceiver {
 public:
  // `state_dir` keeps the blocks verification found damaged until a cycle
  // has replaced them (empty: kept in memory only).
  explicit ReplicaReceiver(PitStore& pits, std::string state_dir = "")
      : pits_(pits), state_dir_(std::move(state_dir)) {}
  ~ReplicaReceiver();

  Status begin_cycle(const std::string& group, const std::string& cycle_id, const std::vector<ReplicatedDevice>& disks);
  Result<std::optional<std::string>> manifest(const std::string& group, const std::string& key);
  Status apply_batch(const std::string& group, const std::string& cycle_id, std::string_view batch);
  Result<PointInTime> commit_cycle(const std::string& group, const std::string& cycle_id,
                                   const std::vector<DiskDigest>& digests, std::int64_t created_at_ms,
                                   std::uint64_t bytes_sent, const RetentionPolicy& retention);
  Status abort_cycle(const std::string& group, const std::string& cycle_id);
  Result<std::vector<PointInTime>> list_pits(const std::string& group);
  // Hashes every block of a PIT's images again and compares them with the
  // manifests its cycle committed (the source's hashes). Empty id: newest.
  Result<PitVerification> verify_pit(const std::string& group, const std::string& pit_id);
  PitStore& pits() { return pits_; }
  // A test copy of one of the group's PITs, next to its replicas (see
  // PitStore::create_test_copy for `owner`).
  Result<TestCopy> create_test_copy(const std::string& group, const std::string& pit_id, const std::string& owner);
  // Images already at this site that hold an older state of a group's disks
  // (reprotect: the disks of this site's own, now stale, copies of the VMs),
  // by disk key. A disk that has no PIT here starts its first PIT from its
  // seed, so only the blocks that differ travel; a seed is read, never
  // written. Replaces the group's earlier seeds; kept in `state_dir`.
  Status set_seeds(const std::string& group, const std::map<std::string, std::string>& seeds);
  std::map<std::string, std::string> seeds(const std::string& group);
  // Promotes a PIT to the live disks of recovered VMs: overlays on it
  // (instant whatever the disk size) that pin it against retention.
  Result<TestCopy> promote(const std::string& group, const std::string& pit_id, const std::string& owner);
  // Reprotect made this site the group's protected one: a cycle the old
  // protected site left open here never commits (it is aborted), then
  // PitStore::release.
  Result<ReleasedReplicas> release_replicas(const std::string& group);

 private:
  struct OpenDisk {
    StagedDisk staged;
    // Where blocks go: straight into a preallocated first image, or through qemu-nbd.
    std::shared_ptr<DirectImageWriter> direct;  // shared: batches write outside the cycle's lock
    std::unique_ptr<NbdExport> nbd;
    std::unique_ptr<NbdClient> client;
    Manifest manifest;  // the newest PIT's (or the seed's), updated by every applied block
    bool seeded = false;  // the disk has no PIT yet and starts from a seed found here
    // The seed's manifest as staged, encoded, never updated by this cycle's
    // blocks: what manifest() answers for the disk. A sender also asks
    // before it begins its own cycle, when the open one may be a dead
    // predecessor's that applied blocks; its own begin restages from the
    // seed, so it must compare against the seed, not those blocks.
    std::string seed_manifest;
  };
  struct Cycle {
    std::string id;
    std::mutex mu;  // guards disks and manifests; NBD writes hold it too (one connection per disk)
    std::map<std::string, OpenDisk> disks;
    std::map<std::string, std::set<std::uint64_t>> repairing;  // damaged blocks this cycle's base marked
    std::string gather;  // under mu: a run of blocks that is not contiguous in its batch
  };
  using Damage = std::map<std::string, std::set<std::uint64_t>>;  // disk key -> block indices
  Damage load_damage(const std::string& group);
  Status save_damage(const std::string& group, const Damage& damage);
  Result<TestCopy> copy_of_pit(const std::string& group, const std::string& pit_id, const std::string& owner, bool live);
  Status ensure_recovered(const std::string& group);
  Status open_writer(OpenDisk& disk);
  Result<std::shared_ptr<Cycle>> find_cycle(const std::string& group, const std::string& cycle_id);
  void close_cycle(const std::string& group);

  PitStore& pits_;
  std::string state_dir_;
  std::map<std::string, Damage> damage_in_memory_;  // when there is no state_dir
  std::map<std::string, std::map<std::string, std::string>> seeds_in_memory_;  // likewise
  std::mutex damage_mu_;  // the damage and seed files
  std::mutex mu_;
  std::map<std::string, std::shared_ptr<Cycle>> cycles_;  // by group: one cycle at a time
  std::map<std::string, bool> recovered_;
};

struct SyncOptions {
  std::size_t batch_bytes = 8 << 20;  // raw bytes of changed blocks per request
  // Each batch's round trip (TLS both ways, decode, write) runs on one
  // thread per side; with 6 in flight a 4 GiB first sync on two cores
  // waited on them 9.9 s of its 10.2 s, with 12 it took 8.4 s (20: no faster).
  std::size_t batches_in_flight = 12;
  int zstd_level = 1;
  // Where running VMs' backup exports (socket, scratch files) and the
  // journal of cycles in progress live; empty: $TMPDIR/evac-backup. Keep it
  // short: it holds unix sockets (108-byte paths).
  std::string work_dir;
  // Crash tests only (tests/e2e; evacd's EVAC_FAULT_EXIT_WHILE_PAUSED): the
  // process dies right after a cycle has paused its running VMs and started
  // their backups, before it resumes them: the worst moment to die.
  bool exit_while_paused = false;
};

struct ByteRange {
  std::uint64_t offset = 0;
  std::uint64_t length = 0;
};

class BuiltinReplicator : public ReplicationAdapter {
 public:
  // `receiver` serves the recovery-site operations and routes at this site
  // (may be null where this site is never a recovery site, e.g. in some
  // tests). `tracking` reaches running VMs' change tracking (may be empty:
  // running VMs are then refused). `site` names this site and its storage
  // pools for the routes.
  explicit BuiltinReplicator(ReplicaReceiver* receiver, ChangeTrackingLookup tracking = {}, SyncOptions options = {},
                             ReplicationSiteContext site = {})
      : receiver_(receiver), tracking_(std::move(tracking)), options_(std::move(options)), site_(std::move(site)) {}

  std::string kind() const override { return "builtin"; }
  ReplicationCapabilities capabilities() const override;
  // With each disk's virtual size (qemu-img info, sharing a running VM's
  // image lock), which a cycle learns from its read instead.
  Result<std::vector<ReplicatedDevice>> discover(const ReplicationGroupSpec& spec) override;
  // A cycle over the routes of builtin_protocol.h at the other end of `recovery_site`.
  Result<PointInTime> sync_now(const ReplicationGroupSpec& spec, ReplicationPeerLink& recovery_site,
                               const ProgressCallback& progress) override;
  // The same cycle over any channel to a ReplicaReceiver (tests put faults on it).
  Result<PointInTime> sync_over(ReplicaChannel& channel, const ReplicationGroupSpec& spec,
                                const ProgressCallback& progress);
  std::vector<ReplicationPeerRoute> peer_routes() override;
  Result<std::vector<PointInTime>> list_pits(const std::string& group) override;
  Result<std::vector<TestCopy>> list_test_copies(const std::string& group) override;
  Result<TestCopy> create_test_copy(const std::string& group, const std::string& pit_id,
                                    const std::string& owner = "") override;
  Status drop_test_copy(const std::string& group, const std::string& test_copy_id) override;
  Status prepare_failover(const ReplicationGroupSpec& spec) override;
  Status release_source(const ReplicationGroupSpec& spec) override;
  Status check_read_only_source(const ReplicationGroupSpec& spec) override;
  Result<std::vector<SourceProbe>> probe_sources(const ReplicationGroupSpec& spec) override;
  Result<TestCopy> failover(const std::string& group, const std::string& pit_id, const std::string& owner = "") override;
  // A cycle like any other: the former protected site, as the receiver,
  // starts each disk that has no PIT there from the seed it registered
  // when it made its old copies the placeholders (ReplicaReceiver::set_seeds),
  // so only blocks that differ travel.
  Result<PointInTime> reverse(const ReplicationGroupSpec& spec, ReplicationPeerLink& recovery_site,
                              const ProgressCallback& progress) override;
  // The images ReplicaReceiver::set_seeds keeps.
  Status set_seeds(const std::string& group, const std::map<std::string, std::string>& seeds) override;
  Result<PitVerification> verify_pit(const std::string& group, const std::string& pit_id) override;
  Result<ReleasedReplicas> release_replicas(const std::string& group) override;

  // Finishes what a cycle of running VMs left when its process died: resumes
  // the VMs it paused, ends its backup jobs, drops its checkpoint. Empty
  // group: every group's (at evacd start). sync_now calls it for its group.
  Status recover_interrupted(const std::string& group);

 private:
  struct LiveVm;
  struct SyncCycle;
  // discover() without the sizes: a cycle reads them from its sources.
  Result<std::vector<ReplicatedDevice>> devices_of(const ReplicationGroupSpec& spec);
  // The phases of sync_now, in order (see the diagram at the top).
  // CHECK_VMS: running/paused VMs need change tracking; the group needs disks.
  Status check_vms(SyncCycle& c);
  // FETCH_MANIFESTS: the recovery site's manifest of each disk, in the current scheme.
  Status fetch_manifests(SyncCycle& c);
  // PREPARE_LIVE_VMS: each running VM's base checkpoint and work folder; no stale job or checkpoint left.
  Status prepare_live_vms(SyncCycle& c);
  // OPEN_STOPPED_SOURCES: a read-only export, client and block source per stopped VM's disk.
  Status open_stopped_sources(SyncCycle& c);
  // STAGE_AND_FREEZE: running VMs frozen to one instant and opened; the cycle staged, or dropped on failure.
  Status stage_and_freeze(SyncCycle& c);
  // Freezes the running VMs while the recovery site stages the cycle (when every size is known); `begun`: it was staged.
  Status freeze_while_staging(SyncCycle& c, bool& begun);
  // Opens the running VMs' backup exports as sources, with their change maps.
  Status open_live_sources(SyncCycle& c);
  // ADOPT_SEED_MANIFESTS: a disk without a PIT compares against its seed's manifest; aborts the cycle on failure.
  Status adopt_seed_manifests(SyncCycle& c);
  // SHIP: every disk synced (sync_disk), its digest kept; aborts the cycle on failure.
  Status ship(SyncCycle& c);
  // COMMIT: the staged cycle becomes the new PIT.
  Result<PointInTime> commit(SyncCycle& c);
  // Reads one disk (only `changed` ranges when given: the rest is the
  // replica's already), ships what differs from `replica`; returns the
  // digest of the disk's new manifest.
  Result<DiskDigest> sync_disk(ReplicaChannel& channel, const std::string& group, const std::string& cycle_id, const ReplicatedDevice& device,
                               const Manifest& replica, const std::vector<ByteRange>* changed, BlockSource& source,
                               SyncProgress& progress, const ProgressCallback& report);
  std::string work_root() const;
  // The journal of a cycle that touched running VMs: what to undo if it is
  // cut. `committed`: the cycle's PIT exists, so its checkpoint is the
  // replicas' base from now on and an undo must keep it.
  Status write_journal(const std::string& group, const std::string& cycle_id, const std::vector<LiveVm>& live,
                       bool committed = false);
  // Pauses the running VMs, starts every backup (each with the cycle's new
  // checkpoint), resumes them: one instant for the group.
  // `instant_ms` gets the moment every VM stood paused: the PIT's instant.
  Status freeze(const std::string& group, const std::string& cycle_id, const std::vector<ReplicatedDevice>& devices,
                const std::map<std::string, bool>& has_replica, std::vector<LiveVm>& live, std::uint64_t& paused_us,
                std::int64_t& instant_ms);
  // Ends the backups; keeps the new checkpoint only if the cycle committed.
  // A VM whose hypervisor fails here is left to the next cycle (the journal
  // stays): the first such failure is returned.
  Status thaw_and_settle(const std::string& cycle_id, std::vector<LiveVm>& live, bool committed);

  ReplicaReceiver* receiver_;
  ChangeTrackingLookup tracking_;
  SyncOptions options_;
  ReplicationSiteContext site_;
};

// What BuiltinReplicator::recover_interrupted does, for a caller without a
// replicator at hand (evacd at start, before any sync). `work_root` is
// SyncOptions::work_dir.
Status recover_interrupted_cycles(const std::string& work_root, const std::string& group,
                                  const ChangeTrackingLookup& tracking);

}  // namespace evac::builtin
