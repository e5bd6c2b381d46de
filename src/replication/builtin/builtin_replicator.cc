#include "replication/builtin/builtin_replicator.h"

#include <openssl/rand.h>
#include <sys/stat.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <deque>
#include <fstream>
#include <iterator>
#include <set>
#include <filesystem>
#include <future>
#include <mutex>
#include <span>
#include <cerrno>
#include <cstring>

#include "core/json_decode.h"
#include "replication/builtin/builtin_protocol.h"
#include "replication/builtin/host_io.h"

namespace evac::builtin {
namespace {

std::int64_t unix_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch()).count();
}

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

BlockHash zero_hash(std::size_t len);

// kBlockSize zero bytes, for changed blocks that read as zeroes.
const std::string& zero_block() {
  static const std::string zeros(kBlockSize, '\0');
  return zeros;
}

// The most bytes of source pieces one outgoing batch may keep mapped or in
// memory (see BatchSender): eight of the largest pieces.
constexpr std::size_t kMaxPieceBytesPerBatch = 8 * kReadChunk;

// Blocks verification found altered in the replica: no real hash matches.
void mark_damaged(Manifest& manifest, const std::set<std::uint64_t>& blocks) {
  for (std::uint64_t i : blocks)
    if (i < manifest.hashes.size()) manifest.hashes[i] = damaged_block_hash();
}

// The manifest of an image as it reads now, in `scheme`: every block
// hashed, extents that read as zeroes without reading them.
Result<Manifest> hash_image(NbdClient& client, std::uint64_t size, HashScheme scheme = kHashScheme) {
  Manifest m = Manifest::empty(size, scheme);
  auto extents = client.allocation(0, size);
  if (!extents) return extents.status();
  std::string chunk(kReadChunk, '\0');
  std::vector<std::string_view> blocks;
  for (const auto& e : *extents) {
    if (e.zero) continue;  // Manifest::empty already holds the zero blocks' hashes
    // Whole blocks covering the extent.
    std::uint64_t start = e.offset / kBlockSize * kBlockSize;
    std::uint64_t end = std::min(size, (e.offset + e.length + kBlockSize - 1) / kBlockSize * kBlockSize);
    for (std::uint64_t offset = start; offset < end; offset += kReadChunk) {
      std::size_t len = static_cast<std::size_t>(std::min<std::uint64_t>(kReadChunk, end - offset));
      EVAC_RETURN_IF_ERROR(client.pread(chunk.data(), len, offset));
      blocks.clear();
      for (std::size_t at = 0; at < len; at += kBlockSize)
        blocks.push_back(std::string_view(chunk).substr(at, std::min(kBlockSize, len - at)));
      hash_blocks(blocks, std::span(&m.hashes[offset / kBlockSize], blocks.size()), scheme);
    }
  }
  return m;
}

// A replica manifest in the current hash scheme. One an older evac wrote
// (another scheme) cannot be compared with hashes computed now: every block
// of it is marked damaged, so the next cycle reads and sends them all once
// and the PIT it makes has a manifest in the current scheme.
Manifest in_current_scheme(Manifest m) {
  if (m.scheme == kHashScheme) return m;
  std::fill(m.hashes.begin(), m.hashes.end(), damaged_block_hash());
  m.scheme = kHashScheme;
  return m;
}

BlockHash zero_hash(std::size_t len) {
  if (len == kBlockSize) return zero_block_hash();
  std::string z(len, '\0');
  return hash_block(z.data(), len);
}

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

// Opens where a staged disk's blocks go: its file itself when the image was
// preallocated for that, otherwise a qemu-nbd export of it. A seeded disk's
// manifest is what the seed holds, hashed here once so that the sender
// ships only what differs.
Status ReplicaReceiver::open_writer(OpenDisk& disk) {
  const StagedDisk& s = disk.staged;
  if (s.preallocated) {
    auto direct = DirectImageWriter::open(s.staging_path);
    if (direct) {
      disk.direct = std::move(*direct);
      return Status::ok();
    }
    // Unsupported (a qemu-img that lays the image out otherwise): through qemu-nbd.
    if (direct.status().code() != StatusCode::kUnsupported) return direct.status();
  }
  auto nbd = NbdExport::start(s.staging_path, "qcow2", NbdExport::Mode::kReadWrite);
  if (!nbd) return nbd.status();
  auto client = NbdClient::connect(**nbd);
  if (!client) return client.status();
  disk.nbd = std::move(*nbd);
  disk.client = std::move(*client);
  if (s.seeded) {
    auto hashed = hash_image(*disk.client, s.size_bytes);
    if (!hashed) return hashed.status().with_context("hashing the seed of disk " + s.key);
    disk.manifest = std::move(*hashed);
    disk.seed_manifest = disk.manifest.encode();
    disk.seeded = true;
  }
  return Status::ok();
}

Status ReplicaReceiver::begin_cycle(const std::string& group, const std::string& cycle_id,
                                    const std::vector<ReplicatedDevice>& disks) {
  // The sizes come from the protected site: each is bounded before a
  // staging image is created or a manifest allocated for it (a hash per
  // 64 KiB block), and before an open cycle is given up for this one.
  for (const auto& d : disks) EVAC_RETURN_IF_ERROR(check_disk_size(d.key(), d.size_bytes));
  std::lock_guard lock(mu_);
  if (auto it = cycles_.find(group); it != cycles_.end()) {
    // A sender that died mid-cycle never aborted; its successor starts over.
    (void)pits_.abort_cycle(group, it->second->id);
    cycles_.erase(it);
  }
  EVAC_RETURN_IF_ERROR(ensure_recovered(group));
  std::vector<DiskToStage> to_stage;
  const std::map<std::string, std::string> registered = seeds(group);
  for (const auto& d : disks) {
    if (d.replica_dir.empty() || d.replica_dir.front() != '/')
      return invalid_argument("disk " + d.key() + " has no absolute replica folder",
                              "map its storage pool to a pool with a folder at this site");
    std::string seed;
    if (auto known = registered.find(d.key()); known != registered.end())
      seed = known->second;
    else if (!d.seed.empty() && d.seed.find('/') == std::string::npos && d.seed.front() != '.')
      seed = d.replica_dir + "/" + d.seed;
    to_stage.push_back(DiskToStage{d.key(), d.size_bytes, d.replica_dir, seed});
  }
  auto staged = pits_.begin_cycle(group, cycle_id, to_stage);
  if (!staged) return staged.status();
  auto cycle = std::make_shared<Cycle>();
  cycle->id = cycle_id;
  const Damage damage = load_damage(group);
  for (const auto& s : *staged) {
    OpenDisk disk;
    disk.staged = s;
    auto previous = pits_.load_newest_disk_blob(group, s.key);
    Result<Manifest> manifest = !previous                 ? Result<Manifest>(previous.status())
                                : previous->has_value() ? Manifest::decode(**previous)
                                                        : Manifest::empty(s.size_bytes);
    Status opened = manifest.status();
    if (opened.is_ok()) {
      disk.manifest = in_current_scheme(std::move(*manifest));
      // The sender was shown these blocks as damaged and sends them again.
      if (auto d = damage.find(s.key); d != damage.end()) {
        mark_damaged(disk.manifest, d->second);
        cycle->repairing[s.key] = d->second;
      }
      opened = open_writer(disk);
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

ReplicaReceiver::Damage ReplicaReceiver::load_damage(const std::string& group) {
  std::lock_guard lock(damage_mu_);
  if (state_dir_.empty()) return damage_in_memory_[group];
  Damage out;
  std::ifstream in(state_dir_ + "/" + group + ".damaged.json");
  if (!in) return out;
  auto j = parse_json_or_discarded(std::string(std::istreambuf_iterator<char>(in), {}));
  if (!j.is_object()) return out;
  // A damaged file loses what it listed (the next verify finds the blocks
  // again), never evacd: only well-formed entries are read.
  for (const auto& [key, blocks] : j.items())
    if (blocks.is_array())
      for (const auto& b : blocks)
        if (b.is_number_unsigned()) out[key].insert(b.get<std::uint64_t>());
  return out;
}

Status ReplicaReceiver::save_damage(const std::string& group, const Damage& damage) {
  std::lock_guard lock(damage_mu_);
  if (state_dir_.empty()) {
    damage_in_memory_[group] = damage;
    return Status::ok();
  }
  std::string path = state_dir_ + "/" + group + ".damaged.json";
  if (damage.empty()) {
    std::error_code ec;
    std::filesystem::remove(path, ec);
    return Status::ok();
  }
  nlohmann::json j = nlohmann::json::object();
  for (const auto& [key, blocks] : damage) j[key] = blocks;
  return write_file_durably(path, j.dump());
}

Status ReplicaReceiver::set_seeds(const std::string& group, const std::map<std::string, std::string>& seeds) {
  for (const auto& [key, path] : seeds)
    if (path.empty() || path.front() != '/')
      return invalid_argument("seed '" + path + "' of disk " + key + " is not an absolute path");
  std::lock_guard lock(damage_mu_);
  if (state_dir_.empty()) {
    seeds_in_memory_[group] = seeds;
    return Status::ok();
  }
  return write_file_durably(state_dir_ + "/" + group + ".seeds.json", nlohmann::json(seeds).dump());
}

std::map<std::string, std::string> ReplicaReceiver::seeds(const std::string& group) {
  std::lock_guard lock(damage_mu_);
  if (state_dir_.empty()) return seeds_in_memory_[group];
  std::ifstream in(state_dir_ + "/" + group + ".seeds.json");
  if (!in) return {};
  auto j = parse_json_or_discarded(std::string(std::istreambuf_iterator<char>(in), {}));
  if (!j.is_object()) return {};
  std::map<std::string, std::string> out;
  for (const auto& [key, path] : j.items())
    if (path.is_string()) out[key] = path.get<std::string>();
  return out;
}

Result<std::optional<std::string>> ReplicaReceiver::manifest(const std::string& group, const std::string& key) {
  {
    std::lock_guard lock(mu_);
    EVAC_RETURN_IF_ERROR(ensure_recovered(group));
  }
  auto blob = pits_.load_newest_disk_blob(group, key);
  if (blob && !blob->has_value()) {
    // No PIT yet: a cycle that started from a seed compares against the
    // seed (as staged, whatever blocks the open cycle applied since).
    std::shared_ptr<Cycle> cycle;
    {
      std::lock_guard lock(mu_);
      if (auto it = cycles_.find(group); it != cycles_.end()) cycle = it->second;
    }
    if (cycle) {
      std::lock_guard lock(cycle->mu);
      if (auto d = cycle->disks.find(key); d != cycle->disks.end() && d->second.seeded)
        return std::optional<std::string>(d->second.seed_manifest);
    }
  }
  if (!blob || !blob->has_value()) return blob;
  Damage damage = load_damage(group);
  auto it = damage.find(key);
  if (it == damage.end() || it->second.empty()) return blob;
  auto manifest = Manifest::decode(**blob);
  if (!manifest) return manifest.status();
  mark_damaged(*manifest, it->second);
  return std::optional<std::string>(manifest->encode());
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
  std::unique_lock lock((*cycle)->mu);
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
  // into one buffer first.
  auto write_runs = [&](std::string& gather, auto&& write) -> Status {
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
        gather.clear();
        for (std::size_t k = i; k < j; ++k) gather.append(blocks[k].data);
        data = gather.data();
      }
      EVAC_RETURN_IF_ERROR(write(data, run_len, blocks[i].offset));
      i = j;
    }
    return Status::ok();
  };
  if (std::shared_ptr<DirectImageWriter> direct = disk.direct) {
    // Straight into the file: batches write in parallel, the lock is
    // taken again only to record their hashes. A cycle aborted meanwhile
    // drops `disk`, but not the writer this batch holds.
    lock.unlock();
    std::string gather;
    EVAC_RETURN_IF_ERROR(write_runs(gather, [&](const char* data, std::size_t len, std::uint64_t offset) {
      return direct->pwrite(data, len, offset);
    }));
    lock.lock();
    it = (*cycle)->disks.find(batch->disk_key);
    if (it == (*cycle)->disks.end())
      return failed_precondition("replication cycle " + cycle_id + " of group '" + group + "' was aborted",
                                 "the sender starts a new cycle");
  } else {
    // One NBD connection per disk: its writes hold the cycle's lock.
    EVAC_RETURN_IF_ERROR(write_runs((*cycle)->gather, [&](const char* data, std::size_t len, std::uint64_t offset) {
      return disk.client->pwrite(data, len, offset);
    }));
  }
  for (const auto& block : blocks) it->second.manifest.hashes[block.offset / kBlockSize] = block.hash;
  return Status::ok();
}

void ReplicaReceiver::close_cycle(const std::string& group) {
  std::lock_guard lock(mu_);
  cycles_.erase(group);
}

Result<PointInTime> ReplicaReceiver::commit_cycle(const std::string& group, const std::string& cycle_id,
                                                  const std::vector<DiskDigest>& digests, std::int64_t created_at_ms,
                                                  std::uint64_t bytes_sent, const RetentionPolicy& retention) {
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
    if (Status s = disk.direct ? disk.direct->sync() : disk.client->flush(); !s.is_ok()) return fail(s);
    disk.direct.reset();
    disk.client.reset();
    disk.nbd.reset();  // qemu-nbd exits: the staging file is closed before it becomes a PIT
    if (Status s = pits_.save_disk_blob(group, cycle_id, key, disk.manifest.encode()); !s.is_ok()) return fail(s);
  }
  auto pit = pits_.commit_cycle(group, cycle_id, created_at_ms, bytes_sent);
  if (!pit) return fail(pit.status());
  if (!(*cycle)->repairing.empty()) {
    // The new PIT holds the source's blocks again; marks made meanwhile stay.
    Damage damage = load_damage(group);
    for (const auto& [key, blocks] : (*cycle)->repairing) {
      for (std::uint64_t i : blocks) damage[key].erase(i);
      if (damage[key].empty()) damage.erase(key);
    }
    (void)save_damage(group, damage);
  }
  (*cycle)->disks.clear();
  cycle_lock.unlock();
  close_cycle(group);
  // Retention failing does not undo a complete PIT; it is retried next cycle.
  (void)pits_.retain(group, retention);
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

Result<ReleasedReplicas> ReplicaReceiver::release_replicas(const std::string& group) {
  std::string open_cycle;
  {
    std::lock_guard lock(mu_);
    EVAC_RETURN_IF_ERROR(ensure_recovered(group));
    if (auto it = cycles_.find(group); it != cycles_.end()) open_cycle = it->second->id;
  }
  if (!open_cycle.empty()) EVAC_RETURN_IF_ERROR(abort_cycle(group, open_cycle));
  return pits_.release(group);
}

Result<std::vector<PointInTime>> ReplicaReceiver::list_pits(const std::string& group) {
  {
    std::lock_guard lock(mu_);
    EVAC_RETURN_IF_ERROR(ensure_recovered(group));
  }
  return pits_.list(group);
}

Result<PitVerification> ReplicaReceiver::verify_pit(const std::string& group, const std::string& pit_id) {
  auto pits = list_pits(group);
  if (!pits) return pits.status();
  if (pits->empty()) return not_found("group '" + group + "' has no point in time yet", "sync it first");
  auto pit = pit_id.empty() ? pits->end() - 1
                            : std::find_if(pits->begin(), pits->end(), [&](const PointInTime& p) { return p.id == pit_id; });
  if (pit == pits->end())
    return not_found("group '" + group + "' has no point in time '" + pit_id + "'", "list them with `evac group pits`");
  PitVerification out{group, pit->id, {}};
  for (const auto& disk : pit->disks) {
    auto blob = pits_.load_disk_blob(group, pit->id, disk.key);
    if (!blob) return blob.status();
    if (!blob->has_value())
      return failed_precondition("PIT " + pit->id + " keeps no block hashes for disk " + disk.key,
                                 "it was made by an older evac; verify a newer point in time");
    auto manifest = Manifest::decode(**blob);
    if (!manifest) return manifest.status().with_context("PIT " + pit->id + " disk " + disk.key);
    // Read-only, and shared: a test copy's VM may be reading this image.
    auto nbd = NbdExport::start(disk.path, "qcow2", NbdExport::Mode::kReadOnly);
    if (!nbd) return nbd.status().with_context("PIT " + pit->id + " disk " + disk.key);
    auto client = NbdClient::connect(**nbd);
    if (!client) return client.status();
    if ((*client)->size() != manifest->disk_size)
      return failed_precondition("PIT " + pit->id + " disk " + disk.key + " is " + std::to_string((*client)->size()) +
                                 " bytes, its manifest says " + std::to_string(manifest->disk_size),
                                 "the replica image was altered outside evac; fail over from another point in time");
    DiskVerification v{disk.key, 0, 0, {}};
    std::vector<std::uint64_t> damaged;
    auto actual = hash_image(**client, manifest->disk_size, manifest->scheme);
    if (!actual) return actual.status().with_context("PIT " + pit->id + " disk " + disk.key);
    for (std::uint64_t index = 0; index < manifest->hashes.size(); ++index) {
      ++v.blocks_checked;
      if (actual->hashes[index] == manifest->hashes[index]) continue;
      ++v.blocks_mismatched;
      damaged.push_back(index);
      if (v.first_mismatches.size() < 16) v.first_mismatches.push_back(index * kBlockSize);
    }
    if (pit == pits->end() - 1 && !damaged.empty()) {
      Damage damage = load_damage(group);
      damage[disk.key].insert(damaged.begin(), damaged.end());
      EVAC_RETURN_IF_ERROR(save_damage(group, damage));
    }
    out.disks.push_back(std::move(v));
  }
  return out;
}

// ---- protected site ---------------------------------------------------------------

ReplicationCapabilities BuiltinReplicator::capabilities() const {
  ReplicationCapabilities c;
  c.points_in_time = true;
  c.test_copies = true;
  c.reverse = true;               // from the seeds the former protected site keeps
  c.change_tracking = true;       // running VMs: checkpoints and pull-mode backups
  c.cross_vm_consistency = true;  // one frozen instant per group cycle
  c.read_only_source = true;      // image files made immutable while fenced
  return c;
}

Result<std::vector<ReplicatedDevice>> BuiltinReplicator::discover(const ReplicationGroupSpec& spec) {
  EVAC_ASSIGN_OR_RETURN(auto devices, devices_of(spec));
  for (auto& d : devices) {
    // -U: a running VM holds its image's lock; the size is read-only metadata.
    auto info = qemu_img({"info", "-U", "--output=json", "-f", d.format, d.source.path},
                         "reading the size of disk " + d.disk + " of VM '" + d.vm_name + "'",
                         "check that the disk's image is there and readable by evacd");
    if (!info) return info.status();
    auto j = parse_json_or_discarded(info->out);
    if (!j.is_object() || !j.value("virtual-size", nlohmann::json()).is_number_unsigned())
      return internal_error("qemu-img info printed no virtual size for " + d.source.path);
    d.size_bytes = j["virtual-size"].get<std::uint64_t>();
  }
  return devices;
}

Result<std::vector<ReplicatedDevice>> BuiltinReplicator::devices_of(const ReplicationGroupSpec& spec) {
  std::vector<ReplicatedDevice> out;
  for (const auto& vm : spec.vms) {
    for (const auto& disk : vm.disks) {
      if (!is_replicated_disk(disk)) continue;
      // What it reads: an image file or a block device, through qemu-nbd or
      // QEMU's own export. A network disk (rbd, iSCSI, ...) lives in storage
      // that replicates by its own means.
      const DiskSource source = source_of(disk);
      if (source.type != "file" && source.type != "block")
        return unsupported("disk " + disk.target + " of VM '" + vm.name + "' is a " + source.describe() +
                               ": the built-in replicator reads image files and block devices",
                           "protect this VM in a group whose replication engine handles " + source.type +
                               " disks (the group's `replication`), or move the disk to an image file");
      if (disk.format != "qcow2" && disk.format != "raw")
        return unsupported("disk " + disk.target + " of VM '" + vm.name + "' has format '" + disk.format + "'",
                           "the built-in replicator handles qcow2 and raw images");
      ReplicatedDevice d{vm.uuid, vm.name, disk.target, source_of(disk), disk.format, "", 0, {}};
      d.seed = std::filesystem::path(disk.path).filename().string();
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

namespace {

// A stretch of a disk read at once: at most kReadChunk bytes, known to be
// all zeroes or not (zero pieces are hashed without reading).
struct Piece {
  std::uint64_t offset;
  std::size_t length;
  bool zero;
};

// Consecutive pieces read together: pieces [first, last).
struct PieceGroup {
  std::size_t first = 0, last = 0;
};

// One piece as read and hashed.
struct HashedPiece {
  Status status;
  // Mapped from the image file, or read into memory (the group's buffer).
  // Shared: the blocks that go out point into it until their batch is encoded.
  std::shared_ptr<const char> data;
  std::vector<BlockHash> hashes;
};

// The pieces of `ranges` to read, in order, each marked zero when the
// source's allocation map says it reads as zeroes.
Result<std::vector<Piece>> plan_pieces(BlockSource& source, const std::vector<ByteRange>& ranges) {
  std::vector<Piece> pieces;
  for (const auto& range : ranges) {
    auto extents = source.allocation(range.offset, range.length);
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
    const std::uint64_t range_end = range.offset + range.length;
    for (std::uint64_t offset = range.offset; offset < range_end; offset += kReadChunk) {
      std::size_t len = static_cast<std::size_t>(std::min<std::uint64_t>(kReadChunk, range_end - offset));
      pieces.push_back({offset, len, all_zero(offset, len)});
    }
  }
  return pieces;
}

// A group is one large piece, or consecutive small ones (a running VM's
// scattered dirty ranges) up to the same size, whose reads go out together,
// pipelined on the NBD connection instead of one round trip each.
std::vector<PieceGroup> group_pieces(const std::vector<Piece>& pieces) {
  std::vector<PieceGroup> groups;
  for (std::size_t i = 0; i < pieces.size();) {
    std::size_t j = i + 1, bytes = pieces[i].length;
    while (j < pieces.size() && bytes + pieces[j].length <= kReadChunk) bytes += pieces[j++].length;
    groups.push_back({i, j});
    i = j;
  }
  return groups;
}

// Maps what the source can map and reads the rest of `pieces` in one
// pipelined request (under `source_mu`). A failed read is reported in the
// first piece's status.
std::vector<HashedPiece> read_pieces(BlockSource& source, std::mutex& source_mu, std::span<const Piece> pieces,
                                     const std::string& source_path) {
  std::vector<HashedPiece> out(pieces.size());
  std::size_t to_read = 0;
  for (std::size_t k = 0; k < out.size(); ++k) {
    const Piece& p = pieces[k];
    if (p.zero) continue;
    out[k].data = source.view(p.offset, p.length);
    if (!out[k].data) to_read += p.length;
  }
  if (to_read == 0) return out;
  std::shared_ptr<char[]> buffer(new char[to_read]);
  std::vector<NbdClient::ReadRequest> reads;
  std::size_t at = 0;
  for (std::size_t k = 0; k < out.size(); ++k) {
    const Piece& p = pieces[k];
    if (p.zero || out[k].data) continue;
    reads.push_back({buffer.get() + at, p.length, p.offset});
    out[k].data = std::shared_ptr<const char>(buffer, buffer.get() + at);
    at += p.length;
  }
  std::lock_guard lock(source_mu);
  Status read = source.pread_many(reads);
  if (!read.is_ok()) out[0].status = read.with_context("reading " + source_path);
  return out;
}

// Hashes every block of the pieces `out` holds (zero pieces without their
// data), all in one call so that the hash lanes stay full.
void hash_pieces(std::span<const Piece> pieces, std::vector<HashedPiece>& out) {
  std::vector<std::string_view> blocks;
  std::vector<BlockHash*> outputs;
  for (std::size_t k = 0; k < out.size(); ++k) {
    const Piece& p = pieces[k];
    const std::size_t count = (p.length + kBlockSize - 1) / kBlockSize;
    out[k].hashes.resize(count);
    for (std::size_t b = 0; b < count; ++b) {
      std::size_t len = std::min(kBlockSize, p.length - b * kBlockSize);
      if (p.zero) {
        out[k].hashes[b] = zero_hash(len);
      } else {
        blocks.push_back(std::string_view(out[k].data.get() + b * kBlockSize, len));
        outputs.push_back(&out[k].hashes[b]);
      }
    }
  }
  std::vector<BlockHash> hashes(blocks.size());
  hash_blocks(blocks, hashes);
  for (std::size_t i = 0; i < hashes.size(); ++i) *outputs[i] = hashes[i];
}

// Reads and hashes groups of pieces on worker threads, kGroupsAhead groups
// ahead of the one being compared, so both cores hash all the time; the
// comparison and the batches stay in order on the caller's thread. Waits
// for its workers before it goes.
class HashAhead {
 public:
  HashAhead(BlockSource& source, const std::vector<Piece>& pieces, const std::string& source_path)
      : source_(source), pieces_(pieces), source_path_(source_path), groups_(group_pieces(pieces)) {
    launch();
  }
  ~HashAhead() {
    for (auto& x : ahead_)
      if (x.valid()) x.wait();
  }
  HashAhead(const HashAhead&) = delete;
  HashAhead& operator=(const HashAhead&) = delete;

  // The next group's pieces, in order; a failure is in the first one's status.
  std::vector<HashedPiece> next() {
    std::vector<HashedPiece> hashed = ahead_.front().get();
    ahead_.pop_front();
    launch();
    return hashed;
  }

 private:
  static constexpr std::size_t kGroupsAhead = 2;

  std::vector<HashedPiece> hash_group(std::size_t gi) {
    const PieceGroup& g = groups_[gi];
    std::span<const Piece> pieces(pieces_.data() + g.first, g.last - g.first);
    std::vector<HashedPiece> out = read_pieces(source_, source_mu_, pieces, source_path_);
    if (!out[0].status.is_ok()) return out;
    hash_pieces(pieces, out);
    return out;
  }
  void launch() {
    while (ahead_.size() < kGroupsAhead && next_group_ < groups_.size())
      ahead_.push_back(std::async(std::launch::async, [this, gi = next_group_++] { return hash_group(gi); }));
  }

  BlockSource& source_;
  const std::vector<Piece>& pieces_;
  const std::string& source_path_;
  const std::vector<PieceGroup> groups_;
  std::mutex source_mu_;  // reads: an NBD connection serves one thread at a time
  std::deque<std::future<std::vector<HashedPiece>>> ahead_;
  std::size_t next_group_ = 0;
};

// Gathers one disk's changed blocks into batches and sends them while the
// next ones are read and hashed: each batch travels (compressed, sent,
// verified and applied) on its own thread, up to `batches_in_flight` at
// once, which keeps the disk, both CPUs and the link busy (the receiver
// decodes concurrent batches in parallel and writes them one at a time).
// Adds each sent batch's size to `progress.bytes_sent`. Waits for every
// send before it goes.
class BatchSender {
 public:
  BatchSender(ReplicaChannel& channel, const std::string& group, const std::string& cycle_id, std::string key,
              const SyncOptions& options, SyncProgress& progress)
      : channel_(channel), group_(group), cycle_id_(cycle_id), key_(std::move(key)), options_(options),
        progress_(progress),
        // A batch holds at most this and one block more: what a receiver takes.
        batch_bytes_(std::min(options.batch_bytes, kMaxBatchDataBytes - kBlockSize)) {}
  ~BatchSender() {
    for (auto& x : in_flight_)
      if (x.valid()) x.wait();
  }
  BatchSender(const BatchSender&) = delete;
  BatchSender& operator=(const BatchSender&) = delete;

  // `piece_bytes`: the size of the source piece the block points into when
  // no earlier block of the pending batch does (else 0).
  void add(BlockRecord block, std::size_t piece_bytes) {
    pending_bytes_ += block.data.size();
    pending_piece_bytes_ += piece_bytes;
    pending_.push_back(std::move(block));
  }
  // A batch is sent when full, or when it holds blocks of so many pieces
  // that keeping them all mapped or in memory would cost more than sending
  // a smaller batch (sparse changes spread over a large disk).
  bool full() const { return pending_bytes_ >= batch_bytes_ || pending_piece_bytes_ >= kMaxPieceBytesPerBatch; }

  // Sends the pending blocks (after the oldest sends while too many are in flight).
  Status flush() {
    if (pending_.empty()) return Status::ok();
    while (in_flight_.size() >= options_.batches_in_flight) EVAC_RETURN_IF_ERROR(wait_oldest());
    in_flight_.push_back(std::async(std::launch::async, [this, blocks = std::move(pending_)]() -> Result<std::uint64_t> {
      std::string batch = encode_batch(key_, blocks, options_.zstd_level);
      EVAC_RETURN_IF_ERROR(channel_.send_batch(group_, cycle_id_, batch));
      return static_cast<std::uint64_t>(batch.size());
    }));
    pending_.clear();
    pending_bytes_ = 0;
    pending_piece_bytes_ = 0;
    return Status::ok();
  }
  // Waits for every send; the first failure.
  Status wait_all() {
    Status first;
    while (!in_flight_.empty()) {
      Status s = wait_oldest();
      if (first.is_ok()) first = s;
    }
    return first;
  }

 private:
  Status wait_oldest() {
    auto sent = in_flight_.front().get();
    in_flight_.pop_front();
    if (!sent) return sent.status();
    progress_.bytes_sent += *sent;
    return Status::ok();
  }

  ReplicaChannel& channel_;
  const std::string& group_;
  const std::string& cycle_id_;
  const std::string key_;
  const SyncOptions& options_;
  SyncProgress& progress_;
  const std::size_t batch_bytes_;
  std::vector<BlockRecord> pending_;
  std::size_t pending_bytes_ = 0;
  std::size_t pending_piece_bytes_ = 0;  // size of the source pieces `pending_` points into
  std::deque<std::future<Result<std::uint64_t>>> in_flight_;
};

// Records piece `p`'s hashes in `current` and queues each block that
// differs from `replica` on `sender`, flushing full batches.
Status compare_piece(const Piece& p, const HashedPiece& h, const Manifest& replica, Manifest& current,
                     BatchSender& sender) {
  bool piece_in_pending = false;
  for (std::size_t b = 0; b < h.hashes.size(); ++b) {
    std::size_t at = b * kBlockSize;
    std::size_t block_len = std::min(kBlockSize, p.length - at);
    std::uint64_t index = (p.offset + at) / kBlockSize;
    current.hashes[index] = h.hashes[b];
    if (h.hashes[b] == replica.hashes[index]) continue;
    if (p.zero) {
      sender.add(BlockRecord{p.offset + at, std::string_view(zero_block().data(), block_len), nullptr, h.hashes[b]}, 0);
    } else {
      sender.add(BlockRecord{p.offset + at, std::string_view(h.data.get() + at, block_len), h.data, h.hashes[b]},
                 piece_in_pending ? 0 : p.length);
      piece_in_pending = true;
    }
    if (sender.full()) {
      EVAC_RETURN_IF_ERROR(sender.flush());
      piece_in_pending = false;
    }
  }
  return Status::ok();
}

}  // namespace

Result<DiskDigest> BuiltinReplicator::sync_disk(ReplicaChannel& channel, const std::string& group, const std::string& cycle_id,
                                                const ReplicatedDevice& device, const Manifest& replica,
                                                const std::vector<ByteRange>* changed, BlockSource& source,
                                                SyncProgress& progress, const ProgressCallback& report) {
  if (replica.disk_size != device.size_bytes)
    return failed_precondition("disk " + device.disk + " of VM '" + device.vm_name + "' changed size from " +
                                   std::to_string(replica.disk_size) + " to " + std::to_string(device.size_bytes) +
                                   " bytes since the last point in time",
                               "resizing a protected disk needs a full resync; remove the VM from the group and add it again");

  // With a change map, blocks outside it are the replica's as they are;
  // without one every block is read and the manifest is built afresh.
  Manifest current = changed ? replica : Manifest::empty(device.size_bytes);
  // Declared before what it sends from: every early return below waits for
  // the hashing, then for the sends, before the blocks' memory goes.
  BatchSender sender(channel, group, cycle_id, device.key(), options_, progress);
  const std::vector<ByteRange> whole{{0, device.size_bytes}};
  auto pieces = plan_pieces(source, changed ? *changed : whole);
  if (!pieces) return pieces.status();
  HashAhead hashing(source, *pieces, device.source.path);
  std::vector<HashedPiece> hashed;  // the group piece i belongs to
  std::size_t hashed_first = 0;
  for (std::size_t i = 0; i < pieces->size(); ++i) {
    if (i == 0 || i - hashed_first >= hashed.size()) {
      hashed = hashing.next();
      hashed_first = i;
      EVAC_RETURN_IF_ERROR(hashed.front().status);
    }
    const Piece& p = (*pieces)[i];
    EVAC_RETURN_IF_ERROR(compare_piece(p, hashed[i - hashed_first], replica, current, sender));
    progress.bytes_scanned += p.length;
    if (report) report(progress);
  }
  EVAC_RETURN_IF_ERROR(sender.flush());
  EVAC_RETURN_IF_ERROR(sender.wait_all());
  if (report) report(progress);
  return DiskDigest{device.key(), to_hex(current.digest())};
}

// ---- running VMs: one frozen instant per group cycle ----------------------------------

namespace {

std::string checkpoint_for(const std::string& cycle_id) { return std::string(kEvacCheckpointPrefix) + cycle_id; }

// Per-VM folder for QEMU's export socket and scratch files. Unix socket
// paths are limited to 108 bytes, so the name is short.
Result<std::string> make_vm_work_dir(const std::string& root) {
  unsigned char random[4];
  RAND_bytes(random, sizeof random);
  static const char* kHex = "0123456789abcdef";
  std::string name;
  for (unsigned char b : random) {
    name += kHex[b >> 4];
    name += kHex[b & 15];
  }
  std::string dir = root + "/" + name;
  if (dir.size() + sizeof("/nbd.sock") > 107)
    return failed_precondition("the backup folder " + dir + " is too long a path for a unix socket",
                               "give evacd a shorter state_dir");
  // QEMU creates the export socket here and opens the scratch files: the
  // change tracking hands the folder to whichever user the VM's QEMU runs
  // as. The root above only lets it pass (0711): the cycles' journals in it
  // stay private. Both modes are set whatever the umask.
  if (Status st = make_dirs(root, kPassableDirMode); !st.is_ok())
    return unavailable(st.message(), "is the state folder writable?");
  ::chmod(root.c_str(), kPassableDirMode);
  if (::mkdir(dir.c_str(), kPrivateDirMode) != 0 && errno != EEXIST)
    return unavailable("cannot create " + dir + ": " + std::strerror(errno), "is the state folder writable?");
  if (::chmod(dir.c_str(), kPrivateDirMode) != 0)
    return unavailable("cannot set the mode of " + dir + ": " + std::strerror(errno), "evacd must own its state_dir");
  return dir;
}

// Ranges of whole kBlockSize blocks covering the change map's extents.
std::vector<ByteRange> block_aligned(const std::vector<NbdClient::Extent>& extents, std::uint64_t disk_size) {
  std::vector<ByteRange> out;
  for (const auto& e : extents) {
    std::uint64_t start = e.offset / kBlockSize * kBlockSize;
    std::uint64_t end = std::min(disk_size, (e.offset + e.length + kBlockSize - 1) / kBlockSize * kBlockSize);
    if (!out.empty() && out.back().offset + out.back().length >= start) {
      out.back().length = std::max(out.back().offset + out.back().length, end) - out.back().offset;
    } else if (end > start) {
      out.push_back({start, end - start});
    }
  }
  return out;
}

// Blocks the recovery site found damaged are read again even where the
// change map says nothing changed.
void add_damaged(std::vector<ByteRange>& ranges, const Manifest& replica, std::uint64_t disk_size) {
  std::vector<NbdClient::Extent> all;
  const BlockHash damaged = damaged_block_hash();
  for (std::size_t i = 0; i < replica.hashes.size(); ++i)
    if (replica.hashes[i] == damaged) all.push_back({i * kBlockSize, kBlockSize, false});
  if (all.empty()) return;
  for (const auto& r : ranges) all.push_back({r.offset, r.length, false});
  std::sort(all.begin(), all.end(), [](const auto& a, const auto& b) { return a.offset < b.offset; });
  ranges = block_aligned(all, disk_size);
}

}  // namespace

// What a cycle did to one running VM, journalled before it is done so that a
// crash in the middle (evacd killed between pause and resume) is undone.
struct BuiltinReplicator::LiveVm {
  const VmInfo* vm = nullptr;
  ChangeTracking* tracking = nullptr;
  std::string base_checkpoint;  // the newest committed checkpoint: changes since it are what to read
  std::string work_dir;
  bool pause = false;            // it was running: paused for the freeze
  bool backup_started = false;
  BackupExport exported;
};

std::string BuiltinReplicator::work_root() const {
  if (!options_.work_dir.empty()) return options_.work_dir;
  return (std::filesystem::temp_directory_path() / "evac-backup").string();
}

Status BuiltinReplicator::write_journal(const std::string& group, const std::string& cycle_id,
                                        const std::vector<LiveVm>& live, bool committed) {
  nlohmann::json j = {{"group", group}, {"cycle", cycle_id}, {"committed", committed}, {"vms", nlohmann::json::array()}};
  for (const auto& l : live)
    j["vms"].push_back({{"uuid", l.vm->uuid}, {"provider", l.vm->provider}, {"work_dir", l.work_dir}, {"pause", l.pause}});
  return write_file_durably(work_root() + "/" + cycle_id + ".cycle.json", j.dump());
}

Status BuiltinReplicator::recover_interrupted(const std::string& group) {
  return recover_interrupted_cycles(work_root(), group, tracking_);
}

Status recover_interrupted_cycles(const std::string& work_root, const std::string& group,
                                  const ChangeTrackingLookup& tracking_of) {
  std::error_code ec;
  std::filesystem::directory_iterator it(work_root, ec), end;
  if (ec) return Status::ok();  // nothing was ever started here
  Status first;
  for (; it != end; it.increment(ec)) {
    const std::string path = it->path().string();
    if (path.size() < 11 || path.substr(path.size() - 11) != ".cycle.json") continue;
    std::ifstream in(path);
    auto j = parse_json_or_discarded(std::string(std::istreambuf_iterator<char>(in), {}));
    if (j.is_discarded()) {
      std::filesystem::remove(path, ec);
      continue;
    }
    if (!group.empty() && j.value("group", "") != group) continue;
    const std::string cycle = j.value("cycle", "");
    // A committed cycle's checkpoint is the base of the next one: keep it.
    const bool committed = j.value("committed", false);
    Status undone;
    for (const auto& v : j.value("vms", nlohmann::json::array())) {
      ChangeTracking* tracking = tracking_of ? tracking_of(v.value("provider", "")) : nullptr;
      if (tracking == nullptr) continue;
      const std::string uuid = v.value("uuid", "");
      Status s;
      if (v.value("pause", false)) {
        auto paused = tracking->is_paused(uuid);
        if (paused && *paused) s = tracking->resume(uuid);
      }
      if (s.is_ok()) s = tracking->end_backup(uuid, v.value("work_dir", ""));
      // Its changes merge into the previous checkpoint, which still covers
      // everything since the last committed cycle.
      if (s.is_ok() && !cycle.empty() && !committed) s = tracking->delete_checkpoint(uuid, checkpoint_for(cycle));
      if (s.is_ok()) std::filesystem::remove_all(v.value("work_dir", ""), ec);
      if (undone.is_ok()) undone = s;
    }
    if (undone.is_ok()) std::filesystem::remove(path, ec);
    if (first.is_ok()) first = undone;
  }
  return first.is_ok() ? first
                       : first.with_context("undoing an interrupted replication cycle")
                             .with_hint("the VM or its hypervisor may be unreachable; the next sync retries");
}

Status BuiltinReplicator::freeze(const std::string& group, const std::string& cycle_id,
                                 const std::vector<ReplicatedDevice>& devices,
                                 const std::map<std::string, bool>& has_replica, std::vector<LiveVm>& live,
                                 std::uint64_t& paused_us, std::int64_t& instant_ms) {
  EVAC_RETURN_IF_ERROR(write_journal(group, cycle_id, live));
  // Resumes whatever was paused on every path out of here.
  struct ResumeOnExit {
    std::vector<const LiveVm*> paused;
    std::uint64_t& paused_us;
    std::chrono::steady_clock::time_point since = std::chrono::steady_clock::now();
    ~ResumeOnExit() {
      for (const LiveVm* l : paused) (void)l->tracking->resume(l->vm->uuid);
      if (!paused.empty())
        paused_us = static_cast<std::uint64_t>(
            std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now() - since).count());
    }
  } resume{{}, paused_us};
  for (auto& l : live) {
    if (!l.pause) continue;
    EVAC_RETURN_IF_ERROR(l.tracking->pause(l.vm->uuid).with_context("freezing group '" + group + "'"));
    resume.paused.push_back(&l);
  }
  // Every VM stands paused from here until the backups have begun: this is
  // the instant the PIT captures for all of them.
  instant_ms = unix_ms();
  for (auto& l : live) {
    auto request = [&](bool incremental) {
      BackupRequest r{l.vm->uuid, checkpoint_for(cycle_id), {}, l.work_dir};
      for (const auto& d : devices) {
        if (d.vm_uuid != l.vm->uuid) continue;
        bool qcow2 = d.format == "qcow2";
        bool since = incremental && qcow2 && !l.base_checkpoint.empty() && has_replica.at(d.key());
        r.disks.push_back(DiskBackupRequest{d.disk, since ? l.base_checkpoint : "", qcow2});
      }
      return r;
    };
    auto exported = l.tracking->begin_backup(request(true));
    if (!exported && !l.base_checkpoint.empty() && exported.status().code() != StatusCode::kUnavailable) {
      // The base checkpoint may not track a disk added since; read whole.
      exported = l.tracking->begin_backup(request(false));
      if (exported) l.base_checkpoint.clear();
    }
    if (!exported) return exported.status().with_context("VM '" + l.vm->name + "' is running");
    l.backup_started = true;
    l.exported = std::move(*exported);
  }
  if (options_.exit_while_paused && !resume.paused.empty()) {
    std::fprintf(stderr, "fault injection: exiting while cycle %s of group %s holds %zu VM(s) paused\n",
                 cycle_id.c_str(), group.c_str(), resume.paused.size());
    std::fflush(stderr);
    std::_Exit(137);
  }
  return Status::ok();
}

Status BuiltinReplicator::thaw_and_settle(const std::string& cycle_id, std::vector<LiveVm>& live, bool committed) {
  Status first;
  // Hypervisors that did not answer are asked nothing more, for this VM or
  // the next (each call to a hung one waits out its keepalive): the journal
  // leaves the rest to the next cycle, which ends the jobs and drops the
  // checkpoints no longer needed.
  std::set<ChangeTracking*> unanswered;
  for (auto& l : live) {
    if (unanswered.count(l.tracking) > 0) continue;  // `first` already holds its failure
    Status s = l.backup_started ? l.tracking->end_backup(l.vm->uuid, l.work_dir) : Status::ok();
    if (s.is_ok() && committed) {
      // The new checkpoint is the replica's from now on: older ones of evac
      // only cost the guest's writes a bitmap update each.
      auto names = l.tracking->list_checkpoints(l.vm->uuid);
      if (names) {
        for (const auto& n : *names)
          if (n.rfind(kEvacCheckpointPrefix, 0) == 0 && n != checkpoint_for(cycle_id))
            if (Status d = l.tracking->delete_checkpoint(l.vm->uuid, n); s.is_ok()) s = d;
      } else {
        s = names.status();
      }
    } else if (s.is_ok() && l.backup_started) {
      s = l.tracking->delete_checkpoint(l.vm->uuid, checkpoint_for(cycle_id));
    }
    std::error_code ec;
    if (s.is_ok()) std::filesystem::remove_all(l.work_dir, ec);
    if (s.code() == StatusCode::kUnavailable) unanswered.insert(l.tracking);
    if (first.is_ok() && !s.is_ok()) first = s.with_context("VM '" + l.vm->name + "'");
  }
  // A failure here leaves the journal: the next cycle finishes the cleanup.
  if (first.is_ok()) {
    std::error_code ec;
    std::filesystem::remove(work_root() + "/" + cycle_id + ".cycle.json", ec);
  }
  return first;
}

// Everything one sync_now cycle holds between its phases. Members go in
// reverse order: the sources before the clients they read through, the
// clients before the exports they connect to.
struct BuiltinReplicator::SyncCycle {
  const ReplicationGroupSpec& spec;
  const ProgressCallback& report;
  ReplicaChannel& channel;  // to the recovery site's half
  std::vector<LiveVm> live;  // the running and paused VMs, read through change tracking
  std::vector<ReplicatedDevice> devices;
  // What the recovery site holds: each disk's manifest, and which disks have one.
  std::map<std::string, Manifest> replicas;
  std::map<std::string, bool> has_replica;
  std::map<std::string, std::unique_ptr<NbdExport>> exports;  // stopped VMs' images, held read-only
  std::map<std::string, std::unique_ptr<NbdClient>> clients;
  std::map<std::string, std::unique_ptr<BlockSource>> sources;  // what each disk is read through
  std::map<std::string, std::vector<ByteRange>> changed;       // disks read through a change map only
  SyncProgress progress;
  std::int64_t created_at_ms = 0;  // the PIT's instant
  std::string id;
  bool committed = false;
  std::vector<DiskDigest> digests;
};

namespace {

// Drops a cycle staged at the recovery site when the stage-and-freeze phase
// is left before it is disarmed.
struct AbortIfLeft {
  ReplicaChannel& channel;
  const std::string& group;
  const std::string& cycle;
  bool armed = false;
  ~AbortIfLeft() {
    if (armed) (void)channel.abort_cycle(group, cycle);
  }
};

}  // namespace

Status BuiltinReplicator::check_vms(SyncCycle& c) {
  for (const auto& vm : c.spec.vms) {
    if (vm.state == PowerState::kShutOff) continue;
    if (vm.state != PowerState::kRunning && vm.state != PowerState::kPaused)
      return failed_precondition("VM '" + vm.name + "' is " + std::string(power_state_name(vm.state)),
                                 "start it or shut it down; a cycle copies running VMs through change tracking and "
                                 "stopped ones by scanning their disks");
    ChangeTracking* tracking = tracking_ ? tracking_(vm.provider) : nullptr;
    if (tracking == nullptr)
      return failed_precondition("VM '" + vm.name + "' is " + std::string(power_state_name(vm.state)) +
                                     " and its compute provider '" + vm.provider + "' has no change tracking",
                                 "shut the VM down to replicate it by scanning its disks");
    LiveVm l;
    l.vm = &vm;
    l.tracking = tracking;
    l.pause = vm.state == PowerState::kRunning;  // a VM someone paused stays paused
    c.live.push_back(std::move(l));
  }
  auto devices = devices_of(c.spec);
  if (!devices) return devices.status();
  if (devices->empty()) return failed_precondition("group '" + c.spec.group + "' has no disks to replicate");
  c.devices = std::move(*devices);
  return recover_interrupted(c.spec.group);
}

Status BuiltinReplicator::fetch_manifests(SyncCycle& c) {
  for (const auto& d : c.devices) {
    auto encoded = c.channel.manifest(c.spec.group, d.key());
    if (!encoded) return encoded.status();
    c.has_replica[d.key()] = encoded->has_value();
    if (encoded->has_value()) {
      auto decoded = Manifest::decode(**encoded);
      if (!decoded) return decoded.status().with_context("manifest of disk " + d.key());
      c.replicas.emplace(d.key(), in_current_scheme(std::move(*decoded)));
    }
  }
  return Status::ok();
}

Status BuiltinReplicator::prepare_live_vms(SyncCycle& c) {
  // Which cycles completed: a replica is current with their checkpoints.
  std::set<std::string> committed;
  if (!c.live.empty()) {
    auto pits = c.channel.list_pits(c.spec.group);
    if (!pits && pits.status().code() != StatusCode::kNotFound) return pits.status();
    if (pits)
      for (const auto& p : *pits) committed.insert(p.cycle_id);
  }
  for (auto& l : c.live) {
    // A backup job an earlier cycle started and that outlived it would
    // refuse this cycle's, and hold its checkpoint: end any job of ours (its
    // socket under our work folder) first. A VM is in one group, and a group
    // runs one cycle at once.
    EVAC_RETURN_IF_ERROR(l.tracking->end_backup(l.vm->uuid, work_root()).with_context("VM '" + l.vm->name + "'"));
    auto names = l.tracking->list_checkpoints(l.vm->uuid);
    if (!names) return names.status().with_context("VM '" + l.vm->name + "'");
    for (const auto& n : *names) {
      if (n.rfind(kEvacCheckpointPrefix, 0) != 0) continue;
      if (committed.count(n.substr(kEvacCheckpointPrefix.size()))) {
        l.base_checkpoint = n;  // topological order: the last match is the newest
      } else {
        // A cycle that never completed; its changes merge into its parent.
        EVAC_RETURN_IF_ERROR(l.tracking->delete_checkpoint(l.vm->uuid, n));
      }
    }
    // A full read asks for no changes since anything: the export serves the
    // whole disk at the new checkpoint, every block is hashed and compared.
    if (c.spec.full_read) l.base_checkpoint.clear();
    auto dir = make_vm_work_dir(work_root());
    if (!dir) return dir.status();
    l.work_dir = std::move(*dir);
  }
  return Status::ok();
}

Status BuiltinReplicator::open_stopped_sources(SyncCycle& c) {
  // While qemu-nbd holds an image read-only its lock keeps QEMU from
  // starting the VM, so opening them all first makes the scan one instant
  // of the whole group.
  for (auto& d : c.devices) {
    bool is_live = std::any_of(c.live.begin(), c.live.end(), [&](const LiveVm& l) { return l.vm->uuid == d.vm_uuid; });
    if (is_live) continue;
    auto nbd = NbdExport::start(d.source.path, d.format, NbdExport::Mode::kReadOnly);
    if (!nbd) return nbd.status().with_context("VM '" + d.vm_name + "' disk " + d.disk);
    auto client = NbdClient::connect(**nbd);
    if (!client) return client.status();
    // Read the file itself where qemu-img can map it; the export keeps the
    // image locked and serves what the map cannot place.
    auto mapped = MappedImage::open(d.source.path, d.format, **client);
    if (mapped) {
      c.sources[d.key()] = std::move(*mapped);
    } else {
      c.sources[d.key()] = std::make_unique<NbdBlockSource>(**client);
    }
    c.exports[d.key()] = std::move(*nbd);
    c.clients[d.key()] = std::move(*client);
  }
  return Status::ok();
}

Status BuiltinReplicator::stage_and_freeze(SyncCycle& c) {
  // A staged cycle this phase leaves early is dropped at the recovery site
  // (from the ship phase on, each failure aborts it).
  AbortIfLeft abort_if_left{c.channel, c.spec.group, c.id};
  bool begun = false;
  if (!c.live.empty()) {
    Status frozen = freeze_while_staging(c, begun);
    abort_if_left.armed = begun;
    EVAC_RETURN_IF_ERROR(frozen);
    EVAC_RETURN_IF_ERROR(open_live_sources(c));
  }
  for (auto& d : c.devices) {
    auto client = c.clients.find(d.key());
    if (client == c.clients.end()) return internal_error("no source opened for disk " + d.key());
    d.size_bytes = client->second->size();
    if (auto ch = c.changed.find(d.key()); ch != c.changed.end()) {
      for (const auto& r : ch->second) c.progress.bytes_total += r.length;
    } else {
      c.progress.bytes_total += d.size_bytes;
    }
  }
  if (!begun) EVAC_RETURN_IF_ERROR(c.channel.begin_cycle(c.spec.group, c.id, c.devices));
  abort_if_left.armed = false;
  return Status::ok();
}

Status BuiltinReplicator::freeze_while_staging(SyncCycle& c, bool& begun) {
  // The recovery site stages the cycle (creates overlays, starts its
  // writers: ~0.1 s) while this site freezes the running VMs, when every
  // disk's size is known beforehand: a stopped VM's from its export, a
  // running one's from its replica (a disk that changed size fails the
  // cycle in sync_disk either way). The freeze runs on a helper thread and
  // the staging call on this one, which outlives the qemu-nbd processes an
  // in-process receiver may start for it (see NbdExport).
  std::vector<ReplicatedDevice> staged = c.devices;
  bool sizes_known = true;
  for (auto& d : staged) {
    if (auto client = c.clients.find(d.key()); client != c.clients.end()) d.size_bytes = client->second->size();
    else if (auto r = c.replicas.find(d.key()); r != c.replicas.end()) d.size_bytes = r->second.disk_size;
    else sizes_known = false;
  }
  auto frozen = std::async(std::launch::async, [&] {
    return freeze(c.spec.group, c.id, c.devices, c.has_replica, c.live, c.progress.paused_us, c.created_at_ms);
  });
  Status staging = sizes_known ? c.channel.begin_cycle(c.spec.group, c.id, staged) : Status::ok();
  Status freezing = frozen.get();
  begun = sizes_known && staging.is_ok();
  EVAC_RETURN_IF_ERROR(freezing);
  return staging;
}

Status BuiltinReplicator::open_live_sources(SyncCycle& c) {
  for (auto& l : c.live) {
    for (const auto& e : l.exported.disks) {
      auto d = std::find_if(c.devices.begin(), c.devices.end(),
                            [&](const ReplicatedDevice& x) { return x.vm_uuid == l.vm->uuid && x.disk == e.disk; });
      if (d == c.devices.end()) continue;
      auto client = NbdClient::connect_socket(l.exported.socket_path, e.export_name,
                                              "disk " + e.disk + " of running VM '" + l.vm->name + "'", e.dirty_context);
      if (!client) return client.status();
      if (!e.dirty_context.empty()) {
        auto map = (*client)->changed(0, (*client)->size());
        if (!map) return map.status();
        c.changed[d->key()] = block_aligned(*map, (*client)->size());
        if (auto r = c.replicas.find(d->key()); r != c.replicas.end())
          add_damaged(c.changed[d->key()], r->second, (*client)->size());
      }
      c.sources[d->key()] = std::make_unique<NbdBlockSource>(**client);
      c.clients[d->key()] = std::move(*client);
    }
  }
  return Status::ok();
}

Status BuiltinReplicator::adopt_seed_manifests(SyncCycle& c) {
  // A disk without a PIT may have started from a seed the recovery site
  // found: compare against it instead of an empty disk.
  for (const auto& d : c.devices) {
    if (c.has_replica[d.key()]) continue;
    auto encoded = c.channel.manifest(c.spec.group, d.key());
    if (!encoded) {
      (void)c.channel.abort_cycle(c.spec.group, c.id);
      return encoded.status();
    }
    if (!encoded->has_value()) continue;
    auto decoded = Manifest::decode(**encoded);
    if (!decoded) {
      (void)c.channel.abort_cycle(c.spec.group, c.id);
      return decoded.status().with_context("seed manifest of disk " + d.key());
    }
    c.replicas.insert_or_assign(d.key(), in_current_scheme(std::move(*decoded)));
  }
  return Status::ok();
}

Status BuiltinReplicator::ship(SyncCycle& c) {
  for (const auto& d : c.devices) {
    auto r = c.replicas.find(d.key());
    Manifest replica = r != c.replicas.end() ? r->second : Manifest::empty(d.size_bytes);
    auto ch = c.changed.find(d.key());
    auto digest = sync_disk(c.channel, c.spec.group, c.id, d, replica, ch != c.changed.end() ? &ch->second : nullptr,
                            *c.sources[d.key()], c.progress, c.report);
    if (!digest) {
      (void)c.channel.abort_cycle(c.spec.group, c.id);
      return digest.status().with_context("replicating group '" + c.spec.group + "'");
    }
    c.digests.push_back(*digest);
  }
  return Status::ok();
}

Result<PointInTime> BuiltinReplicator::commit(SyncCycle& c) {
  auto pit = c.channel.commit_cycle(c.spec.group, c.id, c.digests, c.created_at_ms, c.progress.bytes_sent,
                                   c.spec.retention);
  if (!pit) return pit.status().with_context("committing group '" + c.spec.group + "'");
  c.committed = true;
  // Should the settling be cut, the undo must keep this cycle's checkpoint
  // (the replicas' base now). Were this write lost, the undo would drop it
  // and the next cycle read whole disks: slower, never wrong.
  if (!c.live.empty()) (void)write_journal(c.spec.group, c.id, c.live, true);
  pit->full_read = c.changed.empty();  // no disk was read through a change map
  return pit;
}

Result<PointInTime> BuiltinReplicator::sync_now(const ReplicationGroupSpec& spec, ReplicationPeerLink& recovery_site,
                                                const ProgressCallback& report) {
  auto channel = link_channel(recovery_site);
  return sync_over(*channel, spec, report);
}

Result<PointInTime> BuiltinReplicator::sync_over(ReplicaChannel& channel, const ReplicationGroupSpec& spec,
                                                 const ProgressCallback& report) {
  SyncCycle c{spec, report, channel};
  EVAC_RETURN_IF_ERROR(check_vms(c));
  EVAC_RETURN_IF_ERROR(fetch_manifests(c));
  EVAC_RETURN_IF_ERROR(prepare_live_vms(c));
  EVAC_RETURN_IF_ERROR(open_stopped_sources(c));
  c.created_at_ms = unix_ms();  // stopped VMs: the cycle's start (running ones: their freeze)
  c.id = new_cycle_id();
  // From here on, every way out settles the running VMs: the sources are
  // closed (clients before their exports go), the backups ended, and the
  // cycle's checkpoint kept only if it committed.
  struct SettleOnExit {
    BuiltinReplicator* self;
    SyncCycle& c;
    bool settled = false;
    Status now() {
      if (settled || c.live.empty()) return Status::ok();
      settled = true;
      c.sources.clear();
      for (auto& [key, client] : c.clients) client.reset();  // disconnect before the export goes away
      return self->thaw_and_settle(c.id, c.live, c.committed);
    }
    ~SettleOnExit() { (void)now(); }
  } settle{this, c};
  EVAC_RETURN_IF_ERROR(stage_and_freeze(c));
  EVAC_RETURN_IF_ERROR(adopt_seed_manifests(c));
  EVAC_RETURN_IF_ERROR(ship(c));
  auto pit = commit(c);
  if (!pit) return pit;
  // The PIT stands once committed; a hypervisor that then fails to end
  // the backup jobs costs it nothing, and the caller hears of it.
  if (Status s = settle.now(); !s.is_ok())
    pit->warnings.push_back("ending the cycle's backup jobs: " + s.message() +
                            " (the point in time is complete; the next cycle ends what is left)");
  return pit;
}

Result<std::vector<PointInTime>> BuiltinReplicator::list_pits(const std::string& group) {
  if (!receiver_) return unsupported("this site holds no replicas", "list points in time at the recovery site");
  return receiver_->list_pits(group);
}

Result<std::vector<TestCopy>> BuiltinReplicator::list_test_copies(const std::string& group) {
  if (!receiver_) return unsupported("this site holds no replicas", "list test copies at the recovery site");
  return receiver_->pits().list_test_copies(group);
}

Status BuiltinReplicator::set_seeds(const std::string& group, const std::map<std::string, std::string>& seeds) {
  if (!receiver_) return unsupported("this site holds no replicas", "keep seeds at the future recovery site");
  return receiver_->set_seeds(group, seeds);
}

std::vector<ReplicationPeerRoute> BuiltinReplicator::peer_routes() {
  if (!receiver_) return {};
  return receiver_routes(*receiver_, site_);
}

Result<TestCopy> BuiltinReplicator::create_test_copy(const std::string& group, const std::string& pit_id,
                                                    const std::string& owner) {
  if (!receiver_) return unsupported("this site holds no replicas", "create test copies at the recovery site");
  return receiver_->create_test_copy(group, pit_id, owner);
}

Result<TestCopy> ReplicaReceiver::create_test_copy(const std::string& group, const std::string& pit_id,
                                                   const std::string& owner) {
  return copy_of_pit(group, pit_id, owner, false);
}

Result<TestCopy> ReplicaReceiver::promote(const std::string& group, const std::string& pit_id, const std::string& owner) {
  return copy_of_pit(group, pit_id, owner, true);
}

Result<TestCopy> ReplicaReceiver::copy_of_pit(const std::string& group, const std::string& pit_id, const std::string& owner,
                                              bool live) {
  auto pits = list_pits(group);
  if (!pits) return pits.status();
  auto pit = std::find_if(pits->begin(), pits->end(), [&](const PointInTime& p) { return p.id == pit_id; });
  if (pit == pits->end() || pit->disks.empty())
    return not_found("group '" + group + "' has no point in time '" + pit_id + "'", "list them with `evac group pits`");
  // Next to the replicas (<replica_dir>/.evac-pits/<group>/<disk>/<pit>):
  // the same filesystem, and the store adds <group>/<copy id> below it.
  // QEMU passes it (0711) to open the copies' images and the PITs under them.
  auto dir = std::filesystem::path(pit->disks.front().path).parent_path().parent_path().parent_path() / (live ? "recovered" : "test-copies");
  if (Status st = make_dirs(dir, kPassableDirMode); !st.is_ok())
    return failed_precondition(st.message(), "is the replica folder writable?");
  return pits_.create_test_copy(group, pit_id, dir.string(), owner, live);
}

Status BuiltinReplicator::drop_test_copy(const std::string& group, const std::string& test_copy_id) {
  if (!receiver_) return unsupported("this site holds no replicas", "drop test copies at the recovery site");
  return receiver_->pits().drop_test_copy(group, test_copy_id);
}

// A fenced copy's image files get the immutable attribute: QEMU, run as
// root or not, then cannot open them for writing, so a VM started by hand
// at the fenced site fails to start instead of diverging from the live copy
// (the storage half of a fence, as an array makes a LUN read-only). A VM
// still running keeps its open descriptors: it is refused, not frozen.
Status BuiltinReplicator::prepare_failover(const ReplicationGroupSpec& spec) {
  std::string running, failed;
  Status first_failure = Status::ok();
  for (const auto& vm : spec.vms) {
    if (vm.state == PowerState::kRunning || vm.state == PowerState::kPaused) {
      running += (running.empty() ? "" : ", ") + vm.name;
      continue;
    }
    for (const auto& disk : vm.disks) {
      if (!is_replicated_disk(disk)) continue;
      Status st = set_immutable(disk.path, true);
      if (st.is_ok() || st.code() == StatusCode::kNotFound) continue;
      failed += (failed.empty() ? "" : "; ") + vm.name + " " + disk.target + ": " + st.message();
      if (first_failure.is_ok()) first_failure = st;
    }
  }
  if (!running.empty())
    return failed_precondition("cannot make the disks of group '" + spec.group + "' read-only while " + running +
                                   (running.find(',') == std::string::npos ? " runs" : " run"),
                               "power them off at site '" + spec.protected_site + "' first");
  if (!failed.empty())
    return Status(first_failure.code(), "could not make every disk of group '" + spec.group + "' read-only: " + failed,
                  first_failure.hint());
  return Status::ok();
}

Result<std::vector<ReplicationAdapter::SourceProbe>> BuiltinReplicator::probe_sources(const ReplicationGroupSpec& spec) {
  std::vector<SourceProbe> out;
  for (const auto& vm : spec.vms) {
    SourceProbe probe{vm.name, std::string(power_state_name(vm.state)), Status::ok()};
    if (vm.state == PowerState::kShutOff) {
      // A stopped VM's disks are scanned from their images here.
      for (const auto& disk : vm.disks)
        if (is_replicated_disk(disk) && ::access(disk.path.c_str(), R_OK) != 0 && probe.outcome.is_ok())
          probe.outcome = unavailable("disk " + disk.target + " (" + disk.path + ") cannot be read here: " + std::strerror(errno),
                                      "a stopped VM is replicated from its image files on evacd's host");
      out.push_back(std::move(probe));
      continue;
    }
    ChangeTracking* tracking = tracking_ ? tracking_(vm.provider) : nullptr;
    if (tracking == nullptr) {
      probe.outcome = failed_precondition("its compute provider '" + vm.provider + "' has no change tracking",
                                          "shut the VM down to replicate it by scanning its disks");
      out.push_back(std::move(probe));
      continue;
    }
    auto dir = make_vm_work_dir(work_root());
    if (!dir) {
      probe.outcome = dir.status();
      out.push_back(std::move(probe));
      continue;
    }
    // A whole-disk export with no new checkpoint: nothing of it remains
    // once the job ends (libvirt removes the scratch files, QEMU the socket).
    BackupRequest request{vm.uuid, "", {}, *dir};
    for (const auto& disk : vm.disks)
      if (is_replicated_disk(disk)) request.disks.push_back(DiskBackupRequest{disk.target, "", false});
    auto begun = tracking->begin_backup(request);
    if (begun) {
      probe.outcome = tracking->end_backup(vm.uuid, *dir);
    } else {
      probe.outcome = begun.status();
    }
    std::error_code ec;
    std::filesystem::remove_all(*dir, ec);
    out.push_back(std::move(probe));
  }
  return out;
}

Status BuiltinReplicator::check_read_only_source(const ReplicationGroupSpec& spec) {
  if (!may_set_immutable())
    return permission_denied("evacd lacks CAP_LINUX_IMMUTABLE, so a fence could not make the disks of group '" +
                                 spec.group + "' read-only",
                             "run evacd as root (or grant it CAP_LINUX_IMMUTABLE)");
  for (const auto& vm : spec.vms)
    for (const auto& disk : vm.disks) {
      if (!is_replicated_disk(disk)) continue;
      auto probe = is_immutable(disk.path);
      if (!probe)
        return Status(probe.status().code(), "disk " + disk.target + " of VM '" + vm.name + "': " + probe.status().message(),
                      probe.status().hint());
    }
  return Status::ok();
}

Status BuiltinReplicator::release_source(const ReplicationGroupSpec& spec) {
  std::string failed;
  Status first_failure = Status::ok();
  for (const auto& vm : spec.vms)
    for (const auto& disk : vm.disks) {
      if (!is_replicated_disk(disk)) continue;
      Status st = set_immutable(disk.path, false);
      // Never set where the attribute does not exist, or gone already.
      if (st.is_ok() || st.code() == StatusCode::kNotFound || st.code() == StatusCode::kUnsupported) continue;
      failed += (failed.empty() ? "" : "; ") + vm.name + " " + disk.target + ": " + st.message();
      if (first_failure.is_ok()) first_failure = st;
    }
  if (!failed.empty())
    return Status(first_failure.code(), "could not make the old disks of group '" + spec.group + "' writable again: " + failed,
                  "clear the attribute by hand: chattr -i FILE");
  return Status::ok();
}

Result<TestCopy> BuiltinReplicator::failover(const std::string& group, const std::string& pit_id,
                                             const std::string& owner) {
  if (!receiver_) return unsupported("this site holds no replicas", "fail over at the recovery site");
  return receiver_->promote(group, pit_id, owner);
}

Result<PitVerification> BuiltinReplicator::verify_pit(const std::string& group, const std::string& pit_id) {
  if (!receiver_) return unsupported("this site holds no replicas", "verify points in time at the recovery site");
  return receiver_->verify_pit(group, pit_id);
}

Result<ReleasedReplicas> BuiltinReplicator::release_replicas(const std::string& group) {
  if (!receiver_) return ReleasedReplicas{};  // no replicas are kept here
  return receiver_->release_replicas(group);
}

Result<PointInTime> BuiltinReplicator::reverse(const ReplicationGroupSpec& spec, ReplicationPeerLink& recovery_site,
                                               const ProgressCallback& progress) {
  return sync_now(spec, recovery_site, progress);
}

}  // namespace evac::builtin
