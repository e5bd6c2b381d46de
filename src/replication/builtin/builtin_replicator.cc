#include "replication/builtin/builtin_replicator.h"

#include <openssl/rand.h>

#include <algorithm>
#include <chrono>
#include <deque>
#include <filesystem>
#include <future>
#include <cstring>

namespace evac::builtin {
namespace {

std::int64_t unix_now() {
  return std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count();
}

std::string new_cycle_id() {
  unsigned char random[6];
  RAND_bytes(random, sizeof random);
  static const char* kHex = "0123456789abcdef";
  std::string id = "cycle-" + std::to_string(unix_now()) + "-";
  for (unsigned char b : random) {
    id += kHex[b >> 4];
    id += kHex[b & 15];
  }
  return id;
}

bool is_replicated_disk(const DiskInfo& d) { return d.device != "cdrom" && d.device != "floppy" && !d.path.empty(); }

// Reads are large: NbdClient keeps the pieces of one read in flight
// together, which a sequential scan needs to approach the disk's speed.
constexpr std::size_t kReadChunk = 32 << 20;
static_assert(kReadChunk % kBlockSize == 0);

}  // namespace

// ---- recovery site ----------------------------------------------------------------

ReplicaReceiver::~ReplicaReceiver() {
  std::lock_guard lock(mu_);
  for (auto& [group, cycle] : cycles_) (void)pits_.abort_cycle(group, cycle->id);
}

Status ReplicaReceiver::ensure_recovered(const std::string& group) {
  // Whatever a previous process left half-done (a staged cycle, a retention
  // step) is finished or undone before this group is touched again.
  if (recovered_[group]) return Status::ok();
  EVAC_RETURN_IF_ERROR(pits_.recover(group));
  recovered_[group] = true;
  return Status::ok();
}

Status ReplicaReceiver::begin_cycle(const std::string& group, const std::string& cycle_id,
                                    const std::vector<ReplicatedDevice>& disks) {
  std::lock_guard lock(mu_);
  if (auto it = cycles_.find(group); it != cycles_.end()) {
    // A sender that died mid-cycle never aborted; its successor starts over.
    (void)pits_.abort_cycle(group, it->second->id);
    cycles_.erase(it);
  }
  EVAC_RETURN_IF_ERROR(ensure_recovered(group));
  std::vector<DiskToStage> to_stage;
  for (const auto& d : disks) {
    if (d.replica_dir.empty() || d.replica_dir.front() != '/')
      return invalid_argument("disk " + d.key() + " has no absolute replica folder",
                              "map its storage pool to a pool with a folder at this site");
    to_stage.push_back(DiskToStage{d.key(), d.size_bytes, d.replica_dir});
  }
  auto staged = pits_.begin_cycle(group, cycle_id, to_stage);
  if (!staged) return staged.status();
  auto cycle = std::make_shared<Cycle>();
  cycle->id = cycle_id;
  for (const auto& s : *staged) {
    OpenDisk disk;
    disk.staged = s;
    auto previous = pits_.load_newest_disk_blob(group, s.key);
    Result<Manifest> manifest = Manifest::empty(s.size_bytes);
    if (!previous) manifest = previous.status();
    else if (previous->has_value()) manifest = Manifest::decode(**previous);
    Status opened = manifest.status();
    if (opened.is_ok()) {
      disk.manifest = std::move(*manifest);
      auto nbd = NbdExport::start(s.staging_path, "qcow2", NbdExport::Mode::kReadWrite);
      if (nbd) {
        auto client = NbdClient::connect(**nbd);
        if (client) {
          disk.nbd = std::move(*nbd);
          disk.client = std::move(*client);
        } else {
          opened = client.status();
        }
      } else {
        opened = nbd.status();
      }
    }
    if (!opened.is_ok()) {
      cycle->disks.clear();
      (void)pits_.abort_cycle(group, cycle_id);
      return opened.with_context("starting cycle " + cycle_id + " for disk " + s.key);
    }
    cycle->disks.emplace(s.key, std::move(disk));
  }
  cycles_[group] = std::move(cycle);
  return Status::ok();
}

Result<std::optional<std::string>> ReplicaReceiver::manifest(const std::string& group, const std::string& key) {
  {
    std::lock_guard lock(mu_);
    EVAC_RETURN_IF_ERROR(ensure_recovered(group));
  }
  return pits_.load_newest_disk_blob(group, key);
}

Result<std::shared_ptr<ReplicaReceiver::Cycle>> ReplicaReceiver::find_cycle(const std::string& group,
                                                                          const std::string& cycle_id) {
  std::lock_guard lock(mu_);
  auto it = cycles_.find(group);
  if (it == cycles_.end() || it->second->id != cycle_id)
    return failed_precondition("replication cycle " + cycle_id + " of group '" + group + "' is not open here",
                               "it was aborted or this site restarted; the sender starts a new cycle");
  return it->second;
}

Status ReplicaReceiver::apply_batch(const std::string& group, const std::string& cycle_id, std::string_view bytes) {
  auto cycle = find_cycle(group, cycle_id);
  if (!cycle) return cycle.status();
  // Decoding (decompression, every block's hash) runs outside the cycle's
  // lock, so concurrent batches decode on several threads at once.
  auto batch = decode_batch(bytes);
  if (!batch) return batch.status();
  std::lock_guard lock((*cycle)->mu);
  auto it = (*cycle)->disks.find(batch->disk_key);
  if (it == (*cycle)->disks.end())
    return invalid_argument("batch for disk " + batch->disk_key + ", which is not part of cycle " + cycle_id);
  OpenDisk& disk = it->second;
  const auto& blocks = batch->blocks;
  for (const auto& block : blocks) {
    if (block.offset % kBlockSize != 0 || block.offset / kBlockSize >= disk.manifest.hashes.size() ||
        block.offset + block.data.size() > disk.staged.size_bytes)
      return invalid_argument("block at offset " + std::to_string(block.offset) + " lies outside disk " + batch->disk_key);
  }
  // Blocks at consecutive offsets go out as one write: each NBD request is
  // a round trip, and a first sync is one long contiguous run. Raw blocks
  // of a run lie back to back in the request body and are written straight
  // from it; only a run that mixes raw and decompressed blocks is gathered
  // into one buffer first (kept for the cycle, so it is allocated once).
  for (std::size_t i = 0; i < blocks.size();) {
    std::size_t j = i + 1;
    std::size_t run_len = blocks[i].data.size();
    bool contiguous_in_memory = true;
    while (j < blocks.size() && blocks[j].offset == blocks[i].offset + run_len) {
      if (blocks[j].data.data() != blocks[j - 1].data.data() + blocks[j - 1].data.size()) contiguous_in_memory = false;
      run_len += blocks[j].data.size();
      ++j;
    }
    const char* data = blocks[i].data.data();
    if (!contiguous_in_memory) {
      std::string& gather = (*cycle)->gather;
      gather.clear();
      for (std::size_t k = i; k < j; ++k) gather.append(blocks[k].data);
      data = gather.data();
    }
    EVAC_RETURN_IF_ERROR(disk.client->pwrite(data, run_len, blocks[i].offset));
    for (std::size_t k = i; k < j; ++k) disk.manifest.hashes[blocks[k].offset / kBlockSize] = blocks[k].hash;
    i = j;
  }
  return Status::ok();
}

void ReplicaReceiver::close_cycle(const std::string& group) {
  std::lock_guard lock(mu_);
  cycles_.erase(group);
}

Result<PointInTime> ReplicaReceiver::commit_cycle(const std::string& group, const std::string& cycle_id,
                                                  const std::vector<DiskDigest>& digests, std::int64_t created_at,
                                                  std::uint64_t bytes_sent, int keep_pits) {
  auto cycle = find_cycle(group, cycle_id);
  if (!cycle) return cycle.status();
  std::unique_lock cycle_lock((*cycle)->mu);
  auto fail = [&](Status s) -> Status {
    (*cycle)->disks.clear();
    cycle_lock.unlock();
    close_cycle(group);
    (void)pits_.abort_cycle(group, cycle_id);
    return s.with_hint("the cycle was discarded; the newest complete point in time is intact and the next sync retries");
  };
  if (digests.size() != (*cycle)->disks.size())
    return fail(invalid_argument("commit of cycle " + cycle_id + " names " + std::to_string(digests.size()) +
                                 " disks, the cycle has " + std::to_string((*cycle)->disks.size())));
  for (const auto& d : digests) {
    auto it = (*cycle)->disks.find(d.key);
    if (it == (*cycle)->disks.end()) return fail(invalid_argument("commit names unknown disk " + d.key));
    // The cycle checksum: what was applied here must be what the sender read.
    if (to_hex(it->second.manifest.digest()) != d.digest_hex)
      return fail(invalid_argument("disk " + d.key + " does not match the source after cycle " + cycle_id +
                                   ": blocks were lost or altered in transit"));
  }
  for (auto& [key, disk] : (*cycle)->disks) {
    if (Status s = disk.client->flush(); !s.is_ok()) return fail(s);
    disk.client.reset();
    disk.nbd.reset();  // qemu-nbd exits: the staging file is closed before it becomes a PIT
    if (Status s = pits_.save_disk_blob(group, cycle_id, key, disk.manifest.encode()); !s.is_ok()) return fail(s);
  }
  auto pit = pits_.commit_cycle(group, cycle_id, created_at, bytes_sent);
  if (!pit) return fail(pit.status());
  (*cycle)->disks.clear();
  cycle_lock.unlock();
  close_cycle(group);
  // Retention failing does not undo a complete PIT; it is retried next cycle.
  (void)pits_.retain(group, keep_pits);
  return pit;
}

Status ReplicaReceiver::abort_cycle(const std::string& group, const std::string& cycle_id) {
  auto cycle = find_cycle(group, cycle_id);
  if (!cycle) return Status::ok();  // nothing open: aborting converges
  {
    std::lock_guard lock((*cycle)->mu);
    (*cycle)->disks.clear();
  }
  close_cycle(group);
  return pits_.abort_cycle(group, cycle_id);
}

Result<std::vector<PointInTime>> ReplicaReceiver::list_pits(const std::string& group) {
  {
    std::lock_guard lock(mu_);
    EVAC_RETURN_IF_ERROR(ensure_recovered(group));
  }
  return pits_.list(group);
}

// ---- protected site ---------------------------------------------------------------

ReplicationCapabilities BuiltinReplicator::capabilities() const {
  ReplicationCapabilities c;
  c.points_in_time = true;
  c.test_copies = true;
  c.cross_vm_consistency = true;  // scan mode only runs on stopped VMs: trivially one instant
  return c;
}

Result<std::vector<ReplicatedDevice>> BuiltinReplicator::discover(const ReplicationGroupSpec& spec) {
  std::vector<ReplicatedDevice> out;
  for (const auto& vm : spec.vms) {
    for (const auto& disk : vm.disks) {
      if (!is_replicated_disk(disk)) continue;
      if (disk.format != "qcow2" && disk.format != "raw")
        return unsupported("disk " + disk.target + " of VM '" + vm.name + "' has format '" + disk.format + "'",
                           "the built-in replicator handles qcow2 and raw images");
      ReplicatedDevice d{vm.uuid, vm.name, disk.target, disk.path, disk.format, "", 0};
      if (disk.storage_pool) {
        auto it = spec.replica_dirs.find(*disk.storage_pool);
        if (it != spec.replica_dirs.end()) d.replica_dir = it->second;
      }
      if (d.replica_dir.empty())
        return failed_precondition("disk " + disk.target + " of VM '" + vm.name + "' has no replica folder at site '" +
                                       spec.recovery_site + "'",
                                   "map its storage pool with `evac mapping create storage ...`");
      out.push_back(std::move(d));
    }
  }
  return out;
}

Result<DiskDigest> BuiltinReplicator::sync_disk(const std::string& group, const std::string& cycle_id,
                                                const ReplicatedDevice& device, NbdClient& source,
                                                SyncProgress& progress, const ProgressCallback& report) {
  auto encoded = channel_.manifest(group, device.key());
  if (!encoded) return encoded.status();
  Manifest replica = Manifest::empty(device.size_bytes);
  if (encoded->has_value()) {
    auto decoded = Manifest::decode(**encoded);
    if (!decoded) return decoded.status().with_context("manifest of disk " + device.key());
    replica = std::move(*decoded);
  }
  if (replica.disk_size != device.size_bytes)
    return failed_precondition("disk " + device.disk + " of VM '" + device.vm_name + "' changed size from " +
                                   std::to_string(replica.disk_size) + " to " + std::to_string(device.size_bytes) +
                                   " bytes since the last point in time",
                               "resizing a protected disk needs a full resync; remove the VM from the group and add it again");

  Manifest current = Manifest::empty(device.size_bytes);
  std::vector<BlockRecord> pending;
  std::size_t pending_bytes = 0;
  // Batches travel (compressed, sent, verified and applied) while the next
  // ones are read and hashed; a few in flight keep the disk, both CPUs and
  // the link busy. The receiver decodes concurrent batches in parallel and
  // writes them one at a time.
  std::deque<std::future<Result<std::uint64_t>>> in_flight;
  auto wait_oldest = [&]() -> Status {
    auto sent = in_flight.front().get();
    in_flight.pop_front();
    if (!sent) return sent.status();
    progress.bytes_sent += *sent;
    return Status::ok();
  };
  auto wait_all = [&]() -> Status {
    Status first;
    while (!in_flight.empty()) {
      Status s = wait_oldest();
      if (first.is_ok()) first = s;
    }
    return first;
  };
  auto flush = [&]() -> Status {
    if (pending.empty()) return Status::ok();
    while (in_flight.size() >= options_.batches_in_flight) EVAC_RETURN_IF_ERROR(wait_oldest());
    in_flight.push_back(std::async(std::launch::async, [this, &group, &cycle_id, key = device.key(),
                                                        blocks = std::move(pending)]() -> Result<std::uint64_t> {
      std::string batch = encode_batch(key, blocks, options_.zstd_level);
      EVAC_RETURN_IF_ERROR(channel_.send_batch(group, cycle_id, batch));
      return static_cast<std::uint64_t>(batch.size());
    }));
    pending.clear();
    pending_bytes = 0;
    return Status::ok();
  };
  // Every early return below must not leave a send running on this frame.
  struct JoinOnExit {
    std::deque<std::future<Result<std::uint64_t>>>& f;
    ~JoinOnExit() {
      for (auto& x : f)
        if (x.valid()) x.wait();
    }
  } join_on_exit{in_flight};

  auto extents = source.allocation(0, device.size_bytes);
  if (!extents) return extents.status();
  std::size_t next_extent = 0;
  // True when [offset, offset+len) lies entirely in extents that read as zero.
  auto all_zero = [&](std::uint64_t offset, std::uint64_t len) {
    while (next_extent < extents->size() &&
           (*extents)[next_extent].offset + (*extents)[next_extent].length <= offset)
      ++next_extent;
    for (std::size_t i = next_extent; i < extents->size(); ++i) {
      const auto& e = (*extents)[i];
      if (e.offset >= offset + len) return true;
      if (!e.zero) return false;
      if (e.offset + e.length >= offset + len) return true;
    }
    return false;
  };

  std::string chunk(kReadChunk, '\0');
  for (std::uint64_t offset = 0; offset < device.size_bytes; offset += kReadChunk) {
    std::size_t len = static_cast<std::size_t>(std::min<std::uint64_t>(kReadChunk, device.size_bytes - offset));
    bool zero = all_zero(offset, len);
    if (zero) {
      std::memset(chunk.data(), 0, len);
    } else {
      EVAC_RETURN_IF_ERROR(source.pread(chunk.data(), len, offset).with_context("reading " + device.source_path));
    }
    for (std::size_t at = 0; at < len; at += kBlockSize) {
      std::size_t block_len = std::min(kBlockSize, len - at);
      std::uint64_t index = (offset + at) / kBlockSize;
      // Zero blocks already have their hash in `current` (Manifest::empty).
      BlockHash hash = zero ? current.hashes[index] : hash_block(chunk.data() + at, block_len);
      current.hashes[index] = hash;
      if (hash == replica.hashes[index]) continue;
      pending.push_back(BlockRecord{offset + at, std::string(chunk.data() + at, block_len), hash});
      pending_bytes += block_len;
      if (pending_bytes >= options_.batch_bytes) EVAC_RETURN_IF_ERROR(flush());
    }
    progress.bytes_scanned += len;
    if (report) report(progress);
  }
  EVAC_RETURN_IF_ERROR(flush());
  EVAC_RETURN_IF_ERROR(wait_all());
  if (report) report(progress);
  return DiskDigest{device.key(), to_hex(current.digest())};
}

Result<PointInTime> BuiltinReplicator::sync_now(const ReplicationGroupSpec& spec, const ProgressCallback& report) {
  for (const auto& vm : spec.vms) {
    if (vm.state != PowerState::kShutOff)
      return failed_precondition("VM '" + vm.name + "' is " + std::string(power_state_name(vm.state)) +
                                     "; this build replicates stopped VMs only (scan mode)",
                                 "shut the VM down to sync it; replication of running VMs through change tracking "
                                 "is the next increment of the built-in replicator");
  }
  auto devices = discover(spec);
  if (!devices) return devices.status();
  if (devices->empty()) return failed_precondition("group '" + spec.group + "' has no disks to replicate");

  // Open every disk first: the cycle needs their sizes, and while qemu-nbd
  // holds an image read-only its lock keeps QEMU from starting the VM, so
  // the scan reads one consistent instant of the whole group.
  std::vector<std::unique_ptr<NbdExport>> exports;
  std::vector<std::unique_ptr<NbdClient>> clients;
  SyncProgress progress;
  for (auto& d : *devices) {
    auto nbd = NbdExport::start(d.source_path, d.format, NbdExport::Mode::kReadOnly);
    if (!nbd) return nbd.status().with_context("VM '" + d.vm_name + "' disk " + d.disk);
    auto client = NbdClient::connect(**nbd);
    if (!client) return client.status();
    d.size_bytes = (*client)->size();
    progress.bytes_total += d.size_bytes;
    exports.push_back(std::move(*nbd));
    clients.push_back(std::move(*client));
  }

  std::int64_t created_at = unix_now();
  std::string cycle_id = new_cycle_id();
  EVAC_RETURN_IF_ERROR(channel_.begin_cycle(spec.group, cycle_id, *devices));
  std::vector<DiskDigest> digests;
  for (std::size_t i = 0; i < devices->size(); ++i) {
    auto digest = sync_disk(spec.group, cycle_id, (*devices)[i], *clients[i], progress, report);
    if (!digest) {
      (void)channel_.abort_cycle(spec.group, cycle_id);
      return digest.status().with_context("replicating group '" + spec.group + "'");
    }
    digests.push_back(*digest);
  }
  auto pit = channel_.commit_cycle(spec.group, cycle_id, digests, created_at, progress.bytes_sent, spec.keep_pits);
  if (!pit) return pit.status().with_context("committing group '" + spec.group + "'");
  return pit;
}

Result<std::vector<PointInTime>> BuiltinReplicator::list_pits(const std::string& group) {
  if (receiver_) return receiver_->list_pits(group);
  return channel_.list_pits(group);
}

Result<TestCopy> BuiltinReplicator::create_test_copy(const std::string& group, const std::string& pit_id) {
  if (!receiver_) return unsupported("this site holds no replicas", "create test copies at the recovery site");
  auto pits = receiver_->list_pits(group);
  if (!pits) return pits.status();
  auto pit = std::find_if(pits->begin(), pits->end(), [&](const PointInTime& p) { return p.id == pit_id; });
  if (pit == pits->end() || pit->disks.empty())
    return not_found("group '" + group + "' has no point in time '" + pit_id + "'", "list them with `evac group pits`");
  // Next to the replicas (<replica_dir>/.evac-pits/<group>/<disk>/<pit>):
  // the same filesystem, and the store adds <group>/<copy id> below it.
  auto dir = std::filesystem::path(pit->disks.front().path).parent_path().parent_path().parent_path() / "test-copies";
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) return failed_precondition("cannot create " + dir.string() + ": " + ec.message(), "is the replica folder writable?");
  return receiver_->pits().create_test_copy(group, pit_id, dir.string());
}

Status BuiltinReplicator::drop_test_copy(const std::string& group, const std::string& test_copy_id) {
  if (!receiver_) return unsupported("this site holds no replicas", "drop test copies at the recovery site");
  return receiver_->pits().drop_test_copy(group, test_copy_id);
}

Status BuiltinReplicator::prepare_failover(const std::string& group) {
  return unsupported("making the source read-only for group '" + group + "' is not built yet",
                     "planned migration arrives with recovery plans (issue 8)");
}

Result<std::vector<PitDisk>> BuiltinReplicator::failover(const std::string& group, const std::string&) {
  return unsupported("promoting a point in time of group '" + group + "' is not built yet",
                     "failover arrives with recovery plans (issue 8)");
}

Status BuiltinReplicator::reverse(const std::string& group) {
  return unsupported("reverse replication of group '" + group + "' is not built yet", "it arrives with reprotect (issue 8)");
}

}  // namespace evac::builtin
