// The PIT store: the built-in replicator's retained points in time at the
// recovery site, kept as one qcow2 chain per protected disk.
//
//   base (standalone qcow2) <- PIT 2 (overlay) <- PIT 3 (overlay) <- staging (cycle in progress)
//
// The oldest retained PIT of a disk is a standalone image, every later PIT
// is an overlay backed by the previous one, and a replication cycle writes
// into a staging overlay on top of the newest PIT (the writer does that
// through qemu-nbd, or for a disk's first image straight into the
// preallocated file; this store only manages files, chains and the index).
// Committing a cycle turns all of a group's staging overlays into one new
// PIT at once. A PIT is never modified once complete: retention merges the
// oldest PIT *into its own file* and then renames that file over the next
// PIT's path, so a kept PIT's content never changes and no kept file is
// rewritten in place.
//
// On disk, per disk of a group:
//   <replica_dir>/.evac-pits/<group>/<key, '/' -> '_'>/
//       pit-00000007-1700000000.qcow2      a PIT's image of this disk
//       pit-00000007-1700000000.manifest   its opaque blob (block-hash manifest), when saved
//       <cycle-id>.staging.qcow2           the cycle in progress
//       <cycle-id>.staging.manifest        its blob, renamed with the image on commit
// and per group, in the site's state dir:
//   <index_dir>/<group>.pits.json          PITs, test copies, staged cycles, a retention step in flight
// Test copies live where the caller says:
//   <dir>/<group>/<test-copy-id>/<key, '/' -> '_'>.qcow2   (overlay on the PIT's image)
//
// Modes, whatever the umask and the source disks' modes: every file (images,
// manifests, the index) 0600; the folders under .evac-pits 0711, since QEMU,
// running as libvirt's unprivileged user, must pass them to open a test
// copy, a recovered disk and the PITs they read through (libvirt hands QEMU
// each image of the chain, not the folders); the index folder 0700.
//
// Every change is ordered so that a crash at any point leaves either the old
// or the new state once recover() has run; recover() is what a restarted
// daemon calls for each group before anything else. Errors are values: no
// exception leaves this interface.
#pragma once

#include <cstdint>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/replication_adapter.h"
#include "core/status.h"

namespace evac::builtin {

// A disk a cycle is going to write: `key` is ReplicatedDevice::key()
// ("<vm-uuid>/vda"), `replica_dir` an absolute folder at the recovery site
// that exists (the storage mapping's target).
struct DiskToStage {
  std::string key;
  std::uint64_t size_bytes = 0;
  std::string replica_dir;
  // An image already at this site to start a disk's first PIT from (a copy
  // shipped or restored here): used when the disk has no PIT yet and the
  // image exists with the disk's size; otherwise the chain starts empty.
  std::string seed_path;
};

// Where the writer puts a cycle's blocks for one disk: a qcow2 overlay on
// the disk's newest PIT (or a fresh image for the first cycle).
struct StagedDisk {
  std::string key;
  std::string staging_path;
  std::uint64_t size_bytes = 0;
  bool seeded = false;  // the staging image starts as a copy of DiskToStage::seed_path
  // A standalone image whose clusters all have their place in the file
  // already (qcow2 preallocation=metadata, still sparse): guest blocks may be
  // written straight into it (DirectImageWriter).
  bool preallocated = false;
};

class PitStore {
 public:
  // index_dir: where this store keeps its per-group index (in the site's
  // state dir); created on first use.
  explicit PitStore(std::string index_dir);

  // Crash recovery for a group: removes the staging files of cycles that
  // never committed (and PIT files an interrupted commit left behind), and
  // finishes an interrupted retention step. Files and folders an older evacd
  // left open to others are closed (see "Modes" below). Call before anything else after
  // a restart. A group with no index yet has nothing to recover. A retention
  // step that another process's image lock blocks is left pending (its PIT
  // hidden, the store consistent) for the next retain() or recover().
  Status recover(const std::string& group);

  // Stages a cycle: one staging overlay per disk. One cycle per group at a
  // time. A disk whose size or replica folder differs from its newest PIT's
  // is refused (kFailedPrecondition), never silently restarted. The group
  // becomes known to the store here: before its first cycle, list(), retain()
  // and the test-copy calls answer kNotFound (a typo in a group name shows),
  // while newest() and load_newest_disk_blob() answer "nothing yet".
  Result<std::vector<StagedDisk>> begin_cycle(const std::string& group, const std::string& cycle_id,
                                              const std::vector<DiskToStage>& disks);

  // Atomic: fsyncs every staging file, renames them to their PIT names,
  // fsyncs their folders, then writes the new index (temp + fsync + rename +
  // fsync dir). A crash before the index lands leaves the old set of PITs
  // (recover() removes the renamed files); after it, the new set.
  // `created_at_ms`: the instant the PIT captures, unix milliseconds.
  Result<PointInTime> commit_cycle(const std::string& group, const std::string& cycle_id, std::int64_t created_at_ms,
                                   std::uint64_t bytes_sent);
  Status abort_cycle(const std::string& group, const std::string& cycle_id);

  Result<std::vector<PointInTime>> list(const std::string& group) const;  // oldest first
  Result<std::optional<PointInTime>> newest(const std::string& group) const;

  // Keeps the newest `keep` (>= 1) PITs and merges older ones away, one at
  // a time, each step crash-safe. A test copy pins its PIT and the older
  // PITs its image chain reads through (a running test VM holds them open
  // and qemu's image locks would refuse the merge); pinned PITs are skipped
  // and kept in addition to `keep`, and so is a PIT whose successor is
  // pinned (merging would replace the pinned file). Refused while a cycle is
  // staged, since the writer holds the whole chain open.
  Status retain(const std::string& group, int keep);
  // The same with a thinning policy: besides the newest `keep_last`, the
  // newest PIT of each of the last `keep_hourly` hours and `keep_daily` days
  // (UTC, counting only hours and days that have PITs) stays; any other PIT,
  // oldest first, is merged into its successor.
  Status retain(const std::string& group, const RetentionPolicy& policy);

  // A writable qcow2 overlay per disk on top of the PIT's images, under
  // `dir` (absolute); creating one takes the same time whatever the disk
  // size. Writes to it never reach the PIT. With an `owner` (a test run's
  // id), asking again returns the owner's test copy instead of a second one.
  // A `live` copy holds a recovered VM's disks (a failover): kept apart
  // from the tests' so cleaning up tests never touches it.
  Result<TestCopy> create_test_copy(const std::string& group, const std::string& pit_id, const std::string& dir,
                                    const std::string& owner = "", bool live = false);
  Status drop_test_copy(const std::string& group, const std::string& test_copy_id);
  Result<std::vector<TestCopy>> list_test_copies(const std::string& group) const;

  // Reprotect, at the site that now protects the group (see
  // ReplicationAdapter::release_replicas): flattens each live copy's disks
  // that still read through a PIT (qemu-img rebase -b ''; an image a
  // running QEMU holds is kept, with the reason), forgets the live copies
  // that stand alone (their files stay: they are the recovered VMs' disks)
  // and deletes every PIT no remaining copy reads through. The index stays
  // (possibly empty), so copy ids never repeat and never name the files of
  // a forgotten copy. Crash-safe: the index drops the PITs first and lists
  // their files as being discarded; recover() or the next call finishes.
  // Refused while a cycle is staged.
  Result<ReleasedReplicas> release(const std::string& group);

  // Opaque per-disk data saved with a PIT (the block-hash manifest). Saved
  // during a staged cycle, it becomes part of the PIT on commit. Loading
  // returns the newest PIT's blob for the disk, or nothing when the newest
  // PIT has none for it (an older PIT's would describe older content).
  Status save_disk_blob(const std::string& group, const std::string& cycle_id, const std::string& key,
                        const std::string& bytes);
  Result<std::optional<std::string>> load_newest_disk_blob(const std::string& group, const std::string& key) const;
  // The blob saved with one PIT's disk (nothing if it has none).
  Result<std::optional<std::string>> load_disk_blob(const std::string& group, const std::string& pit_id,
                                                    const std::string& key) const;

  // Fault injection for tests: when the named point is reached, the
  // operation stops right there and returns kInternal, leaving files and
  // index exactly as a process killed at that instant would.
  enum class CrashPoint {
    kNone,
    kBeginAfterIndexWrite,         // staged cycle recorded, no staging file yet
    kCommitAfterFirstRename,       // one staging file renamed to its PIT name
    kCommitBeforeIndexWrite,       // all renamed and fsynced, index still old
    kRetainAfterMark,              // "dropping P0 into P1" persisted, nothing merged
    kRetainAfterMerge,             // qemu-img commit done for the first disk, not renamed
    kRetainAfterRename,            // every disk merged and renamed, index still names P0
    kReleaseAfterIndexWrite,       // released PITs gone from the index, their files not yet deleted
  };
  void set_crash_point_for_testing(CrashPoint point) { crash_point_ = point; }

 private:
  struct Index;
  Status crash_at(CrashPoint point) const;
  std::string index_path(const std::string& group) const;
  Result<std::optional<Index>> load_index(const std::string& group) const;
  Result<Index> load_existing_index(const std::string& group) const;
  Status save_index(const Index& index) const;
  Status finish_retention_step(Index& index);
  Status remove_uncommitted(Index& index);
  Status finish_discarding(Index& index);
  void close_to_others_all(const Index& index) const;

  std::string index_dir_;
  CrashPoint crash_point_ = CrashPoint::kNone;
  mutable std::mutex mu_;  // one operation at a time on this store's files and indexes
};

}  // namespace evac::builtin
