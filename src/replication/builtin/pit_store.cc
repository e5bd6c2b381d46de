#include "replication/builtin/pit_store.h"

#include "core/retention.h"

#include "replication/builtin/host_io.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <map>
#include <set>
#include <utility>

#include <nlohmann/json.hpp>

namespace evac::builtin {

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

constexpr std::string_view kPitsDirName = ".evac-pits";
constexpr std::string_view kImageSuffix = ".qcow2";
constexpr std::string_view kBlobSuffix = ".manifest";
constexpr std::string_view kStagingSuffix = ".staging.qcow2";
constexpr std::string_view kTmpSuffix = ".tmp";
constexpr int kIndexFormat = 1;

const char* const kBugHint = "this is a bug in evac's PIT store; report it with the daemon log";
const char* const kOutsideHint =
    "files under the replica folder's .evac-pits were changed outside evac; check the folder and the disk it is on";

bool ends_with(std::string_view s, std::string_view suffix) {
  return s.size() >= suffix.size() && s.substr(s.size() - suffix.size()) == suffix;
}
bool starts_with(std::string_view s, std::string_view prefix) { return s.substr(0, prefix.size()) == prefix; }

// ---------------------------------------------------------------- names ---

// Group names and ids become file names: letters, digits, '-', '_', '.',
// starting with a letter or digit, so neither '/' nor '..' nor a hidden name
// can reach a path.
Status check_name(std::string_view kind, std::string_view name) {
  const std::string hint =
      "use 1-128 characters: letters, digits, '-', '_' or '.', starting with a letter or digit (no '/' or '..')";
  if (name.empty() || name.size() > 128)
    return invalid_argument(std::string(kind) + " '" + std::string(name) + "' has a bad length", hint);
  for (std::size_t i = 0; i < name.size(); ++i) {
    char c = name[i];
    bool alnum = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
    if (!alnum && (i == 0 || (c != '-' && c != '_' && c != '.')))
      return invalid_argument(std::string(kind) + " '" + std::string(name) + "' is not allowed", hint);
  }
  if (name.find("..") != std::string_view::npos)
    return invalid_argument(std::string(kind) + " '" + std::string(name) + "' is not allowed", hint);
  return Status::ok();
}

// A disk key is "<vm-uuid>/<target>": name parts joined by single '/'.
Status check_key(std::string_view key) {
  const std::string hint = "a disk key is '<vm-uuid>/<target>' such as '0f8e.../vda': name parts joined by '/'";
  if (key.empty() || key.size() > 200) return invalid_argument("disk key '" + std::string(key) + "' has a bad length", hint);
  std::size_t start = 0;
  while (true) {
    std::size_t slash = key.find('/', start);
    std::string_view part = key.substr(start, slash == std::string_view::npos ? std::string_view::npos : slash - start);
    if (!check_name("disk key part", part).is_ok())
      return invalid_argument("disk key '" + std::string(key) + "' is not allowed", hint);
    if (slash == std::string_view::npos) break;
    start = slash + 1;
  }
  return Status::ok();
}

std::string key_dir_name(const std::string& key) {
  std::string s = key;
  std::replace(s.begin(), s.end(), '/', '_');
  return s;
}

std::string format_pit_id(std::uint64_t seq, std::int64_t created_at) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "pit-%08llu-%lld", static_cast<unsigned long long>(seq),
                static_cast<long long>(created_at));
  return buf;
}

std::string format_test_copy_id(std::uint64_t seq) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "tc-%06llu", static_cast<unsigned long long>(seq));
  return buf;
}

// "<dir>/<x>.qcow2" -> "<dir>/<x>.manifest"
std::string blob_path_for(const std::string& image_path) {
  std::string base = image_path;
  if (ends_with(base, kImageSuffix)) base.resize(base.size() - kImageSuffix.size());
  return base + std::string(kBlobSuffix);
}

std::string parent_of(const std::string& path) { return fs::path(path).parent_path().string(); }

// The image `path` reads through ("" for a standalone one), as qemu-img
// info tells. `shared` (-U): read it although a process (a running VM)
// holds it; without, such a holder makes this kUnavailable.
Result<std::string> backing_file_of(const std::string& path, bool shared, const std::string& doing, const std::string& hint) {
  std::vector<std::string> args = {"info", "--output=json"};
  if (shared) args.push_back("-U");
  args.push_back(path);
  auto info = qemu_img(args, doing, hint);
  if (!info.is_ok()) return info.status();
  try {
    auto j = json::parse(info->out);
    return j.value("full-backing-filename", j.value("backing-filename", ""));
  } catch (const std::exception& e) {
    return internal_error(doing + ": qemu-img info printed something unexpected: " + e.what(), kBugHint);
  }
}

// Exceptions (filesystem, JSON, allocation) stop at this interface.
template <typename F>
auto guarded(const std::string& what, F&& body) -> decltype(body()) {
  try {
    return body();
  } catch (const std::exception& e) {
    return internal_error(what + ": unexpected failure: " + e.what(), kBugHint);
  }
}

// -------------------------------------------------------------- index ---

struct IndexDisk {
  std::string key;
  std::string path;
  std::uint64_t size_bytes = 0;
  std::string backing_pit;  // the PIT whose image of this disk backs this one; empty for a standalone image
  bool blob = false;
};

struct IndexPit {
  std::string id;
  std::int64_t created_at = 0;     // unix seconds
  std::int64_t created_at_ms = 0;  // the same instant to the millisecond (indexes written before it: the second)
  std::uint64_t bytes_sent = 0;
  std::vector<IndexDisk> disks;
  std::string cycle;  // the cycle that made it (the sender names its change-tracking checkpoints after it)
  const IndexDisk* disk(const std::string& key) const {
    for (const auto& d : disks)
      if (d.key == key) return &d;
    return nullptr;
  }
};

struct IndexTestCopy {
  std::string id;
  std::string pit;
  std::string owner;  // who asked for it (a test run), so asking again finds it
  bool live = false;  // the disks of a recovered VM (a failover), not a test's
  std::vector<PitDisk> disks;
};

struct IndexStagedDisk {
  std::string key;
  std::string staging_path;
  std::uint64_t size_bytes = 0;
  std::string backing_pit;
};

struct IndexStaged {
  std::string id;
  std::vector<IndexStagedDisk> disks;
};

// "dropping P0 into P1": per disk, either merge P0's image with P1's data and
// rename it over P1's path, or (P1 does not read through it) delete it.
struct RetentionDisk {
  std::string key;
  bool merge = false;
  std::string dropping_path;
  std::string into_path;
};

struct RetentionStep {
  std::string dropping;
  std::string into;
  std::vector<RetentionDisk> disks;
};

json disk_to_json(const IndexDisk& d) {
  return {{"key", d.key}, {"path", d.path}, {"size_bytes", d.size_bytes}, {"backing_pit", d.backing_pit}, {"blob", d.blob}};
}

IndexDisk disk_from_json(const json& j) {
  IndexDisk d;
  d.key = j.at("key").get<std::string>();
  d.path = j.at("path").get<std::string>();
  d.size_bytes = j.at("size_bytes").get<std::uint64_t>();
  d.backing_pit = j.value("backing_pit", "");
  d.blob = j.value("blob", false);
  return d;
}

}  // namespace

struct PitStore::Index {
  std::string group;
  std::uint64_t next_pit_seq = 1;
  std::uint64_t next_test_copy_seq = 1;
  std::vector<IndexPit> pits;  // oldest first
  std::vector<IndexTestCopy> test_copies;
  std::vector<IndexStaged> staged;
  std::optional<RetentionStep> retention;
  // Files of PITs a release dropped from the index, still to be deleted.
  std::vector<std::string> discarding;

  // A PIT that a retention step has started to drop is gone for readers:
  // its file may already hold its successor's data.
  std::vector<const IndexPit*> visible() const {
    std::vector<const IndexPit*> out;
    for (const auto& p : pits)
      if (!retention || retention->dropping != p.id) out.push_back(&p);
    return out;
  }
  const IndexPit* visible_pit(const std::string& id) const {
    for (const auto* p : visible())
      if (p->id == id) return p;
    return nullptr;
  }
  const IndexPit* newest() const {
    auto v = visible();
    return v.empty() ? nullptr : v.back();
  }
  IndexPit* pit(const std::string& id) {
    for (auto& p : pits)
      if (p.id == id) return &p;
    return nullptr;
  }

  // The PITs some copy reads: its own and every older image in its chain.
  std::set<std::string> read_by_copies() {
    std::set<std::string> pinned;
    for (const auto& t : test_copies) {
      pinned.insert(t.pit);
      const IndexPit* p = pit(t.pit);
      if (!p) continue;
      for (const auto& d : p->disks) {
        std::string back = d.backing_pit;
        // Backing links point strictly to older PITs; the bound only guards
        // against an index edited by hand into a loop.
        for (std::size_t steps = 0; !back.empty() && steps < pits.size(); ++steps) {
          pinned.insert(back);
          const IndexPit* bp = pit(back);
          const IndexDisk* bd = bp ? bp->disk(d.key) : nullptr;
          back = bd ? bd->backing_pit : std::string();
        }
      }
    }
    return pinned;
  }

  json to_json() const {
    json j;
    j["format"] = kIndexFormat;
    j["group"] = group;
    j["next_pit_seq"] = next_pit_seq;
    j["next_test_copy_seq"] = next_test_copy_seq;
    j["pits"] = json::array();
    for (const auto& p : pits) {
      json disks = json::array();
      for (const auto& d : p.disks) disks.push_back(disk_to_json(d));
      j["pits"].push_back({{"id", p.id},
                           {"created_at", p.created_at},
                           {"created_at_ms", p.created_at_ms},
                           {"bytes_sent", p.bytes_sent},
                           {"disks", disks},
                           {"cycle", p.cycle}});
    }
    j["test_copies"] = json::array();
    for (const auto& t : test_copies) {
      json disks = json::array();
      for (const auto& d : t.disks) disks.push_back({{"key", d.key}, {"path", d.path}, {"size_bytes", d.size_bytes}});
      j["test_copies"].push_back({{"id", t.id}, {"pit", t.pit}, {"owner", t.owner}, {"live", t.live}, {"disks", disks}});
    }
    j["staged_cycles"] = json::array();
    for (const auto& s : staged) {
      json disks = json::array();
      for (const auto& d : s.disks)
        disks.push_back({{"key", d.key}, {"staging_path", d.staging_path}, {"size_bytes", d.size_bytes}, {"backing_pit", d.backing_pit}});
      j["staged_cycles"].push_back({{"id", s.id}, {"disks", disks}});
    }
    if (retention) {
      json disks = json::array();
      for (const auto& d : retention->disks)
        disks.push_back({{"key", d.key}, {"action", d.merge ? "merge" : "delete"}, {"dropping_path", d.dropping_path}, {"into_path", d.into_path}});
      j["retention_step"] = {{"dropping", retention->dropping}, {"into", retention->into}, {"disks", disks}};
    } else {
      j["retention_step"] = nullptr;
    }
    if (!discarding.empty()) j["discarding"] = discarding;
    return j;
  }

  static Index from_json(const json& j) {  // throws json::exception on a bad shape
    Index ix;
    if (j.at("format").get<int>() != kIndexFormat) throw std::runtime_error("unknown index format " + j.at("format").dump());
    ix.group = j.at("group").get<std::string>();
    ix.next_pit_seq = j.at("next_pit_seq").get<std::uint64_t>();
    ix.next_test_copy_seq = j.at("next_test_copy_seq").get<std::uint64_t>();
    for (const auto& jp : j.at("pits")) {
      IndexPit p;
      p.id = jp.at("id").get<std::string>();
      p.created_at = jp.at("created_at").get<std::int64_t>();
      p.created_at_ms = jp.value("created_at_ms", p.created_at * 1000);
      p.bytes_sent = jp.at("bytes_sent").get<std::uint64_t>();
      p.cycle = jp.value("cycle", std::string());
      for (const auto& jd : jp.at("disks")) p.disks.push_back(disk_from_json(jd));
      ix.pits.push_back(std::move(p));
    }
    for (const auto& jt : j.at("test_copies")) {
      IndexTestCopy t;
      t.id = jt.at("id").get<std::string>();
      t.pit = jt.at("pit").get<std::string>();
      t.owner = jt.value("owner", "");  // indexes written before owners existed have none
      t.live = jt.value("live", false);
      for (const auto& jd : jt.at("disks"))
        t.disks.push_back({jd.at("key").get<std::string>(), jd.at("path").get<std::string>(), jd.at("size_bytes").get<std::uint64_t>()});
      ix.test_copies.push_back(std::move(t));
    }
    for (const auto& js : j.at("staged_cycles")) {
      IndexStaged s;
      s.id = js.at("id").get<std::string>();
      for (const auto& jd : js.at("disks"))
        s.disks.push_back({jd.at("key").get<std::string>(), jd.at("staging_path").get<std::string>(),
                           jd.at("size_bytes").get<std::uint64_t>(), jd.value("backing_pit", "")});
      ix.staged.push_back(std::move(s));
    }
    if (j.contains("retention_step") && !j.at("retention_step").is_null()) {
      const auto& jr = j.at("retention_step");
      RetentionStep r;
      r.dropping = jr.at("dropping").get<std::string>();
      r.into = jr.at("into").get<std::string>();
      for (const auto& jd : jr.at("disks"))
        r.disks.push_back({jd.at("key").get<std::string>(), jd.at("action").get<std::string>() == "merge",
                           jd.at("dropping_path").get<std::string>(), jd.at("into_path").get<std::string>()});
      ix.retention = std::move(r);
    }
    if (j.contains("discarding")) ix.discarding = j.at("discarding").get<std::vector<std::string>>();
    return ix;
  }
};

namespace {

PointInTime to_point_in_time(const std::string& group, const IndexPit& p) {
  PointInTime out;
  out.id = p.id;
  out.group = group;
  out.created_at = p.created_at;
  out.created_at_ms = p.created_at_ms;
  out.bytes_sent = p.bytes_sent;
  out.cycle_id = p.cycle;
  for (const auto& d : p.disks) out.disks.push_back({d.key, d.path, d.size_bytes});
  return out;
}

TestCopy to_test_copy(const IndexTestCopy& t) { return TestCopy{t.id, t.pit, t.disks, t.owner, t.live}; }

Status unknown_group(const std::string& group) {
  return not_found("no PITs are kept for protection group '" + group + "' at this site",
                   "check the group name; a group's PITs appear here once its first replication cycle has started");
}

Status unknown_pit(const std::string& group, const std::string& pit_id) {
  return not_found("PIT '" + pit_id + "' of protection group '" + group + "' does not exist",
                   "list the group's PITs and pick one of them; retention may have dropped an old one");
}

}  // namespace

// ============================================================ PitStore ===

PitStore::PitStore(std::string index_dir) : index_dir_(std::move(index_dir)) {}

Status PitStore::crash_at(CrashPoint point) const {
  if (crash_point_ != CrashPoint::kNone && crash_point_ == point)
    return internal_error("simulated crash at PIT store crash point " + std::to_string(static_cast<int>(point)),
                          "a test asked for this; run recover() next");
  return Status::ok();
}

std::string PitStore::index_path(const std::string& group) const {
  return (fs::path(index_dir_) / (group + ".pits.json")).string();
}

Result<std::optional<PitStore::Index>> PitStore::load_index(const std::string& group) const {
  std::string path = index_path(group);
  if (!path_exists(path)) return std::optional<Index>();
  auto text = read_whole_file(path);
  if (!text.is_ok()) return text.status();
  const std::string corrupt_hint =
      "restore " + path + " from a backup; without it the group's PITs cannot be found (the images are under each replica folder's .evac-pits)";
  try {
    Index ix = Index::from_json(json::parse(*text));
    if (ix.group != group)
      return internal_error("PIT index " + path + " belongs to group '" + ix.group + "', not '" + group + "'", corrupt_hint);
    return std::optional<Index>(std::move(ix));
  } catch (const std::exception& e) {
    return internal_error("PIT index " + path + " is corrupt: " + e.what(), corrupt_hint);
  }
}

Result<PitStore::Index> PitStore::load_existing_index(const std::string& group) const {
  auto ix = load_index(group);
  if (!ix.is_ok()) return ix.status();
  if (!ix->has_value()) return unknown_group(group);
  return std::move(**ix);
}

Status PitStore::save_index(const Index& index) const {
  EVAC_RETURN_IF_ERROR(make_dirs(index_dir_, kPrivateDirMode).with_context("saving the PIT index of group '" + index.group + "'"));
  return write_file_durably(index_path(index.group), index.to_json().dump(2) + "\n")
      .with_context("saving the PIT index of group '" + index.group + "'");
}

// ---------------------------------------------------------- recovery ---

// Finishes "dropping P0 into P1", whether it is fresh or was interrupted.
// Per disk, P0's file exists until its rename: while it does, P1's file is
// still the intact overlay on it and the merge can run (again); once it is
// gone, P1's path holds the merged image and that disk is done.
Status PitStore::finish_retention_step(Index& index) {
  const RetentionStep step = *index.retention;
  const std::string context = "dropping PIT '" + step.dropping + "' into '" + step.into + "' of group '" + index.group + "'";
  const std::string lock_hint =
      "another process (a running test VM or replication writer) may hold the chain open; stop it, then run retain "
      "or recover again. PIT " + step.dropping + " stays hidden until the step finishes";
  bool first_merge = true;
  for (const auto& d : step.disks) {
    if (path_exists(d.dropping_path)) {
      if (d.merge) {
        auto backing = backing_file_of(d.into_path, false, context + ": reading " + d.into_path, lock_hint);
        if (!backing.is_ok()) return backing.status();
        if (*backing != d.dropping_path)
          return internal_error(context + ": disk " + d.key + ": " + d.into_path + " reads through '" + *backing +
                                    "', not " + d.dropping_path,
                                kOutsideHint);
        // -d keeps P1 as it is; P1's data lands in P0's file, which then
        // holds P1's content (standalone when P0 was the base).
        auto commit = qemu_img({"commit", "-q", "-d", "-f", "qcow2", d.into_path}, context + ": merging disk " + d.key, lock_hint);
        if (!commit.is_ok()) return commit.status();
        EVAC_RETURN_IF_ERROR(fsync_path(d.dropping_path, false).with_context(context));
        if (first_merge) EVAC_RETURN_IF_ERROR(crash_at(CrashPoint::kRetainAfterMerge));
        first_merge = false;
        EVAC_RETURN_IF_ERROR(rename_file(d.dropping_path, d.into_path).with_context(context));
      } else {
        EVAC_RETURN_IF_ERROR(remove_file(d.dropping_path).with_context(context));
      }
    }
    EVAC_RETURN_IF_ERROR(remove_file(blob_path_for(d.dropping_path)).with_context(context));
    EVAC_RETURN_IF_ERROR(fsync_path(parent_of(d.dropping_path), true).with_context(context));
  }
  EVAC_RETURN_IF_ERROR(crash_at(CrashPoint::kRetainAfterRename));

  Index next = index;
  const IndexPit* dropped = next.pit(step.dropping);
  IndexPit* into = next.pit(step.into);
  if (dropped && into) {
    for (const auto& d : step.disks) {
      if (!d.merge) continue;
      const IndexDisk* from = dropped->disk(d.key);
      for (auto& id : into->disks)
        if (id.key == d.key) id.backing_pit = from ? from->backing_pit : std::string();
    }
  }
  next.pits.erase(std::remove_if(next.pits.begin(), next.pits.end(), [&](const IndexPit& p) { return p.id == step.dropping; }),
                  next.pits.end());
  next.retention.reset();
  EVAC_RETURN_IF_ERROR(save_index(next));
  index = std::move(next);
  return Status::ok();
}

// Removes the staging files of every staged cycle and the files an
// interrupted commit renamed to PIT names that the index never listed.
Status PitStore::remove_uncommitted(Index& index) {
  std::set<std::string> dirs;
  std::set<std::string> referenced;
  for (const auto& p : index.pits)
    for (const auto& d : p.disks) {
      dirs.insert(parent_of(d.path));
      referenced.insert(d.path);
      referenced.insert(blob_path_for(d.path));
    }
  for (const auto& s : index.staged)
    for (const auto& d : s.disks) dirs.insert(parent_of(d.staging_path));

  for (const auto& dir : dirs) {
    std::error_code ec;
    if (!fs::is_directory(dir, ec)) continue;
    std::vector<std::string> leftovers;
    for (const auto& entry : fs::directory_iterator(dir, ec)) {
      std::string name = entry.path().filename().string();
      std::string path = entry.path().string();
      if (referenced.count(path)) continue;
      // Only names this store makes; anything else in the folder is left alone.
      bool ours = (starts_with(name, "pit-") && (ends_with(name, kImageSuffix) || ends_with(name, kBlobSuffix))) ||
                  ends_with(name, kStagingSuffix) || ends_with(name, ".staging" + std::string(kBlobSuffix)) ||
                  ends_with(name, kTmpSuffix);
      if (ours) leftovers.push_back(path);
    }
    if (ec) return internal_error("cannot list " + dir + ": " + ec.message(), "check the permissions of the folder");
    for (const auto& path : leftovers)
      EVAC_RETURN_IF_ERROR(remove_file(path).with_context("removing uncommitted files of group '" + index.group + "'"));
    if (!leftovers.empty()) EVAC_RETURN_IF_ERROR(fsync_path(dir, true));
  }
  if (!index.staged.empty()) {
    Index next = index;
    next.staged.clear();
    EVAC_RETURN_IF_ERROR(save_index(next));
    index = std::move(next);
  }
  return Status::ok();
}

// Replicas an older evacd made readable by everyone (0644 images in 0755
// folders) are closed again: files lose every group and other permission,
// folders keep only others' search bit (QEMU passes them). Files this store
// makes are private already, so this changes nothing after the first run.
// Best effort: a file that cannot be changed (another owner, an immutable
// disk) still replicates; its mode is the operator's to fix.
void PitStore::close_to_others_all(const Index& index) const {
  std::set<std::string> paths{index_path(index.group)};
  auto with_folders = [&](const std::string& file) {
    paths.insert(file);
    fs::path folder = fs::path(file).parent_path();
    // <disk or copy folder>, <group>, <.evac-pits, test-copies or recovered>
    for (int up = 0; up < 3 && !folder.empty() && folder != folder.parent_path(); ++up, folder = folder.parent_path())
      paths.insert(folder.string());
  };
  for (const auto& p : index.pits)
    for (const auto& d : p.disks) {
      with_folders(d.path);
      paths.insert(blob_path_for(d.path));
    }
  for (const auto& t : index.test_copies)
    for (const auto& d : t.disks) with_folders(d.path);
  for (const auto& path : paths) (void)close_to_others(path);
}

Status PitStore::recover(const std::string& group) {
  return guarded("recovering PITs of group '" + group + "'", [&]() -> Status {
    EVAC_RETURN_IF_ERROR(check_name("protection group", group));
    std::lock_guard lock(mu_);
    auto loaded = load_index(group);
    if (!loaded.is_ok()) return loaded.status();
    EVAC_RETURN_IF_ERROR(remove_file(index_path(group) + std::string(kTmpSuffix)));
    if (!loaded->has_value()) return Status::ok();
    Index index = std::move(**loaded);
    close_to_others_all(index);
    EVAC_RETURN_IF_ERROR(finish_discarding(index).with_context("recovering group '" + group + "'"));
    Status retention_status;
    if (index.retention) retention_status = finish_retention_step(index).with_context("recovering group '" + group + "'");
    EVAC_RETURN_IF_ERROR(remove_uncommitted(index).with_context("recovering group '" + group + "'"));
    // A merge refused for an image lock leaves a consistent store (the PIT
    // being dropped stays hidden) and is retried by the next retain() or
    // recover(); replication need not wait for whoever holds the lock.
    if (retention_status.code() == StatusCode::kUnavailable) return Status::ok();
    return retention_status;
  });
}

// ------------------------------------------------------------- cycles ---

namespace {

// What begin_cycle accepts before it takes the lock: valid names, each disk
// once, with a usable size and an absolute replica folder.
Status check_disks_to_stage(const std::string& group, const std::string& cycle_id,
                            const std::vector<DiskToStage>& disks) {
  EVAC_RETURN_IF_ERROR(check_name("protection group", group));
  EVAC_RETURN_IF_ERROR(check_name("cycle id", cycle_id));
  if (disks.empty())
    return invalid_argument("cycle '" + cycle_id + "' of group '" + group + "' has no disks", "pass the group's replicated disks");
  std::set<std::string> keys;
  for (const auto& d : disks) {
    EVAC_RETURN_IF_ERROR(check_key(d.key));
    if (!keys.insert(d.key).second)
      return invalid_argument("disk " + d.key + " appears twice in cycle '" + cycle_id + "'", "pass each disk once");
    if (d.size_bytes == 0 || d.size_bytes % 512 != 0)
      return invalid_argument("disk " + d.key + " has size " + std::to_string(d.size_bytes) + " bytes",
                              "a disk size is a positive multiple of 512 bytes; pass the size its source reports");
    if (d.replica_dir.empty() || d.replica_dir[0] != '/')
      return invalid_argument("replica folder '" + d.replica_dir + "' of disk " + d.key + " is not an absolute path",
                              "fix the storage mapping to name an absolute folder at the recovery site");
  }
  return Status::ok();
}

// Where each disk of cycle `cycle_id` is staged: in its chain's folder under
// its replica folder, reading through its image in `newest` when that PIT
// has the disk (same size, same folder). Nothing is written.
Result<IndexStaged> plan_staging(const std::string& group, const std::string& cycle_id,
                                 const std::vector<DiskToStage>& disks, const std::vector<IndexPit>& pits,
                                 const IndexPit* newest) {
  // Which folder each disk's chain lives in; two keys mapping to one
  // folder (e.g. "a_b/c" and "a/b_c") would share files.
  std::map<std::string, std::string> dir_owner;
  for (const auto& p : pits)
    for (const auto& d : p.disks) dir_owner.emplace(parent_of(d.path), d.key);

  IndexStaged staged{cycle_id, {}};
  for (const auto& d : disks) {
    fs::path replica_dir = fs::path(d.replica_dir).lexically_normal();
    std::string replica = replica_dir.string();
    while (replica.size() > 1 && replica.back() == '/') replica.pop_back();
    std::error_code ec;
    if (!fs::is_directory(replica, ec))
      return failed_precondition("replica folder " + replica + " of disk " + d.key + " does not exist",
                                 "create the folder at the recovery site or fix the group's storage mapping");
    std::string dir = (fs::path(replica) / kPitsDirName / group / key_dir_name(d.key)).string();
    auto [it, inserted] = dir_owner.emplace(dir, d.key);
    if (!inserted && it->second != d.key)
      return invalid_argument("disks " + it->second + " and " + d.key + " would share the PIT folder " + dir,
                              "give the disks keys that differ in more than '/' versus '_'");
    IndexStagedDisk sd{d.key, (fs::path(dir) / (cycle_id + std::string(kStagingSuffix))).string(), d.size_bytes, {}};
    if (const IndexDisk* prev = newest ? newest->disk(d.key) : nullptr) {
      if (prev->size_bytes != d.size_bytes)
        return failed_precondition(
            "disk " + d.key + " changed size from " + std::to_string(prev->size_bytes) + " to " +
                std::to_string(d.size_bytes) + " bytes since PIT " + newest->id,
            "resize handling needs a full resync: remove the disk from the group's protection, run a cycle, then add "
            "it again so its next cycle copies it whole");
      if (parent_of(prev->path) != dir)
        return failed_precondition("replica folder of disk " + d.key + " changed from " + parent_of(prev->path) + " to " + dir,
                                   "a chain cannot span folders: restore the storage mapping, or remove the disk from "
                                   "protection and add it again for a full resync");
      sd.backing_pit = newest->id;
    }
    staged.disks.push_back(std::move(sd));
  }
  return staged;
}

// The format of `seed` ("qcow2" or "raw") when it can start a disk of
// `size_bytes`; "" when it is of another size or qemu cannot read it.
std::string usable_seed_format(const std::string& seed, std::uint64_t size_bytes) {
  auto info = qemu_img({"info", "--output=json", seed}, "", "");
  std::uint64_t seed_size = 0;
  std::string seed_format;
  if (info.is_ok()) {
    auto j = json::parse(info->out, nullptr, false);
    if (j.is_object()) {
      seed_size = j.value("virtual-size", std::uint64_t{0});
      seed_format = j.value("format", "");
    }
  }
  if (seed_size == size_bytes && (seed_format == "qcow2" || seed_format == "raw")) return seed_format;
  return "";
}

// Creates the staging image of one planned disk: an overlay on its image in
// `newest`, else a copy of its usable seed, else an empty preallocated
// image. A failure is returned as it is; the caller undoes the cycle.
Result<StagedDisk> create_staging_image(const IndexStagedDisk& sd, const IndexPit* newest,
                                        const std::map<std::string, std::string>& seeds) {
  std::string dir = parent_of(sd.staging_path);
  // QEMU passes the chain's folders to open a test copy's or recovered
  // disk's backing PITs (libvirt hands it the images, not the folders).
  EVAC_RETURN_IF_ERROR(make_dirs(dir, kPassableDirMode));
  // Left by an earlier attempt with this cycle id that was never recorded.
  EVAC_RETURN_IF_ERROR(remove_file(sd.staging_path));
  EVAC_RETURN_IF_ERROR(remove_file(blob_path_for(sd.staging_path)));
  // qemu-img writes into a file made private first, so no replica byte is
  // ever readable by others, whatever the umask or the source's mode.
  EVAC_RETURN_IF_ERROR(create_private_file(sd.staging_path));
  std::vector<std::string> args = {"create", "-q", "-f", "qcow2"};
  if (!sd.backing_pit.empty()) {
    const IndexDisk* prev = newest->disk(sd.key);
    args.insert(args.end(), {"-b", prev->path, "-F", "qcow2", sd.staging_path});
  } else {
    // Every cluster allocated up front (the file stays sparse): the
    // writer can then put the first cycle's blocks straight into the
    // file (DirectImageWriter) instead of through qemu-nbd.
    args.insert(args.end(), {"-o", "preallocation=metadata", sd.staging_path, std::to_string(sd.size_bytes)});
  }
  bool seeded = false;
  if (auto seed = seeds.find(sd.key); sd.backing_pit.empty() && seed != seeds.end()) {
    // A seed is only a head start: the cycle's digest check proves the
    // PIT equals the source whatever the seed held. One of another size
    // or that qemu cannot read is passed over.
    if (std::string seed_format = usable_seed_format(seed->second, sd.size_bytes); !seed_format.empty()) {
      args = {"convert", "-q", "-f", seed_format, "-O", "qcow2", seed->second, sd.staging_path};
      seeded = true;
    }
  }
  auto created = qemu_img(args, "creating the staging image of disk " + sd.key,
                          "check free space and permissions in " + dir + (sd.backing_pit.empty() ? "" : " and that PIT " + sd.backing_pit + " is intact"));
  if (!created.is_ok()) return created.status();
  EVAC_RETURN_IF_ERROR(fsync_path(dir, true));
  return StagedDisk{sd.key, sd.staging_path, sd.size_bytes, seeded, sd.backing_pit.empty() && !seeded};
}

}  // namespace

Result<std::vector<StagedDisk>> PitStore::begin_cycle(const std::string& group, const std::string& cycle_id,
                                                      const std::vector<DiskToStage>& disks) {
  return guarded("staging cycle '" + cycle_id + "' of group '" + group + "'", [&]() -> Result<std::vector<StagedDisk>> {
    EVAC_RETURN_IF_ERROR(check_disks_to_stage(group, cycle_id, disks));

    std::lock_guard lock(mu_);
    auto loaded = load_index(group);
    if (!loaded.is_ok()) return loaded.status();
    const bool index_existed = loaded->has_value();
    Index index = index_existed ? std::move(**loaded) : Index{};
    index.group = group;
    for (const auto& s : index.staged) {
      if (s.id == cycle_id)
        return already_exists("cycle '" + cycle_id + "' of group '" + group + "' is already staged",
                              "write into its staging files and commit it, or abort it");
      return failed_precondition("cycle '" + s.id + "' of group '" + group + "' is still staged",
                                 "commit or abort it first (after a restart, recover() removes it)");
    }
    const IndexPit* newest = index.newest();
    auto planned = plan_staging(group, cycle_id, disks, index.pits, newest);
    if (!planned) return planned.status();
    const IndexStaged& staged = *planned;

    // Record first, create after: a crash in between leaves a staged cycle
    // whose files recover() removes, never a file nobody knows about.
    Index next = index;
    next.staged.push_back(staged);
    EVAC_RETURN_IF_ERROR(save_index(next));
    EVAC_RETURN_IF_ERROR(crash_at(CrashPoint::kBeginAfterIndexWrite));

    auto undo = [&](const Status& cause) -> Status {
      for (const auto& sd : staged.disks) {
        (void)remove_file(sd.staging_path);
        (void)remove_file(blob_path_for(sd.staging_path));
      }
      Status st = index_existed ? save_index(index) : remove_file(index_path(group));
      if (!st.is_ok()) return cause.with_context("and undoing it failed too (" + st.message() + "); run recover()");
      return cause;
    };

    std::vector<StagedDisk> out;
    std::map<std::string, std::string> seeds;
    for (const auto& d : disks)
      if (!d.seed_path.empty()) seeds[d.key] = d.seed_path;
    for (const auto& sd : staged.disks) {
      auto created = create_staging_image(sd, newest, seeds);
      if (!created) return undo(created.status());
      out.push_back(std::move(*created));
    }
    return out;
  });
}

Result<PointInTime> PitStore::commit_cycle(const std::string& group, const std::string& cycle_id, std::int64_t created_at_ms,
                                           std::uint64_t bytes_sent) {
  return guarded("committing cycle '" + cycle_id + "' of group '" + group + "'", [&]() -> Result<PointInTime> {
    EVAC_RETURN_IF_ERROR(check_name("protection group", group));
    EVAC_RETURN_IF_ERROR(check_name("cycle id", cycle_id));
    if (created_at_ms < 0)
      return invalid_argument("cycle '" + cycle_id + "' has a negative creation time " + std::to_string(created_at_ms),
                              "pass the instant the cycle captures, in unix milliseconds");
    const std::int64_t created_at = created_at_ms / 1000;
    std::lock_guard lock(mu_);
    auto loaded = load_existing_index(group);
    if (!loaded.is_ok()) return loaded.status();
    Index index = std::move(*loaded);
    auto staged_it = std::find_if(index.staged.begin(), index.staged.end(), [&](const IndexStaged& s) { return s.id == cycle_id; });
    if (staged_it == index.staged.end())
      return not_found("no cycle '" + cycle_id + "' is staged for group '" + group + "'",
                       "begin the cycle first; a cycle staged before a restart was removed by recover() and must run again");
    const IndexStaged staged = *staged_it;

    const std::string pit_id = format_pit_id(index.next_pit_seq, created_at);
    struct Move {
      std::string from;
      std::string to;
    };
    std::vector<Move> moves;
    IndexPit pit{pit_id, created_at, created_at_ms, bytes_sent, {}};
    pit.cycle = cycle_id;
    for (const auto& d : staged.disks) {
      if (!path_exists(d.staging_path))
        return failed_precondition("the staging image of disk " + d.key + " (" + d.staging_path + ") is missing",
                                   "abort the cycle and run it again");
      std::string dir = parent_of(d.staging_path);
      std::string image = (fs::path(dir) / (pit_id + std::string(kImageSuffix))).string();
      if (path_exists(image))
        return failed_precondition(image + " already exists and no PIT names it",
                                   "an earlier commit was interrupted; run recover() for the group, then run the cycle again");
      moves.push_back({d.staging_path, image});
      bool blob = path_exists(blob_path_for(d.staging_path));
      if (blob) moves.push_back({blob_path_for(d.staging_path), blob_path_for(image)});
      pit.disks.push_back({d.key, image, d.size_bytes, d.backing_pit, blob});
    }

    for (const auto& m : moves) EVAC_RETURN_IF_ERROR(fsync_path(m.from, false));
    std::size_t done = 0;
    auto undo_renames = [&]() {
      for (std::size_t i = done; i-- > 0;) (void)rename_file(moves[i].to, moves[i].from);
    };
    for (const auto& m : moves) {
      if (auto st = rename_file(m.from, m.to); !st.is_ok()) {
        undo_renames();
        return st;
      }
      ++done;
      if (done == 1) EVAC_RETURN_IF_ERROR(crash_at(CrashPoint::kCommitAfterFirstRename));
    }
    std::set<std::string> dirs;
    for (const auto& d : staged.disks) dirs.insert(parent_of(d.staging_path));
    for (const auto& dir : dirs) {
      if (auto st = fsync_path(dir, true); !st.is_ok()) {
        undo_renames();
        return st;
      }
    }
    EVAC_RETURN_IF_ERROR(crash_at(CrashPoint::kCommitBeforeIndexWrite));

    Index next = index;
    next.staged.erase(std::remove_if(next.staged.begin(), next.staged.end(), [&](const IndexStaged& s) { return s.id == cycle_id; }),
                      next.staged.end());
    next.pits.push_back(pit);
    ++next.next_pit_seq;
    if (auto st = save_index(next); !st.is_ok()) {
      // Unless the new index landed after all (only its folder's flush
      // failed), the old one stands: put the files back so its cycle stays staged.
      auto now = load_index(group);
      bool landed = now.is_ok() && now->has_value() && (*now)->pit(pit_id) != nullptr;
      if (!landed) undo_renames();
      return st;
    }
    return to_point_in_time(group, pit);
  });
}

Status PitStore::abort_cycle(const std::string& group, const std::string& cycle_id) {
  return guarded("aborting cycle '" + cycle_id + "' of group '" + group + "'", [&]() -> Status {
    EVAC_RETURN_IF_ERROR(check_name("protection group", group));
    EVAC_RETURN_IF_ERROR(check_name("cycle id", cycle_id));
    std::lock_guard lock(mu_);
    auto loaded = load_existing_index(group);
    if (!loaded.is_ok()) return loaded.status();
    Index index = std::move(*loaded);
    auto it = std::find_if(index.staged.begin(), index.staged.end(), [&](const IndexStaged& s) { return s.id == cycle_id; });
    if (it == index.staged.end())
      return not_found("no cycle '" + cycle_id + "' is staged for group '" + group + "'",
                       "nothing to abort; it may have committed or been removed by recover()");
    // Files first: a crash after this leaves a staged cycle with missing
    // files, which recover() handles; the other order could leak files.
    for (const auto& d : it->disks) {
      EVAC_RETURN_IF_ERROR(remove_file(d.staging_path));
      EVAC_RETURN_IF_ERROR(remove_file(blob_path_for(d.staging_path)));
      std::string dir = parent_of(d.staging_path);
      if (path_exists(dir)) EVAC_RETURN_IF_ERROR(fsync_path(dir, true));
    }
    index.staged.erase(it);
    return save_index(index);
  });
}

// ------------------------------------------------------------- reading ---

Result<std::vector<PointInTime>> PitStore::list(const std::string& group) const {
  return guarded("listing PITs of group '" + group + "'", [&]() -> Result<std::vector<PointInTime>> {
    EVAC_RETURN_IF_ERROR(check_name("protection group", group));
    std::lock_guard lock(mu_);
    auto index = load_existing_index(group);
    if (!index.is_ok()) return index.status();
    std::vector<PointInTime> out;
    for (const auto* p : index->visible()) out.push_back(to_point_in_time(group, *p));
    return out;
  });
}

Result<std::optional<PointInTime>> PitStore::newest(const std::string& group) const {
  return guarded("finding the newest PIT of group '" + group + "'", [&]() -> Result<std::optional<PointInTime>> {
    EVAC_RETURN_IF_ERROR(check_name("protection group", group));
    std::lock_guard lock(mu_);
    auto index = load_index(group);
    if (!index.is_ok()) return index.status();
    const IndexPit* newest = index->has_value() ? (*index)->newest() : nullptr;
    if (!newest) return std::optional<PointInTime>();
    return std::optional<PointInTime>(to_point_in_time(group, *newest));
  });
}

// ----------------------------------------------------------- retention ---

Status PitStore::retain(const std::string& group, int keep) { return retain(group, RetentionPolicy{keep, 0, 0}); }

Status PitStore::retain(const std::string& group, const RetentionPolicy& policy) {
  return guarded("applying retention to group '" + group + "'", [&]() -> Status {
    EVAC_RETURN_IF_ERROR(check_name("protection group", group));
    const int keep = policy.keep_last;
    if (keep < 1)
      return invalid_argument("cannot keep " + std::to_string(keep) + " PITs of group '" + group + "'",
                              "keep at least 1 PIT: the newest is what a recovery uses");
    if (policy.keep_hourly < 0 || policy.keep_daily < 0)
      return invalid_argument("hourly and daily PITs to keep cannot be negative", "pass 0 to keep none of them");
    std::lock_guard lock(mu_);
    auto loaded = load_existing_index(group);
    if (!loaded.is_ok()) return loaded.status();
    Index index = std::move(*loaded);
    if (!index.staged.empty())
      return failed_precondition("cycle '" + index.staged.front().id + "' of group '" + group + "' is staged",
                                 "apply retention after the cycle commits or aborts; the writer holds the chain open");
    if (index.retention) EVAC_RETURN_IF_ERROR(finish_retention_step(index));

    // A test copy reads through its PIT and every older image in its chain.
    const std::set<std::string> pinned = index.read_by_copies();

    const std::set<std::string> kept = kept_by(index.pits, policy);
    std::vector<std::string> candidates;
    for (const auto& p : index.pits)
      if (!kept.count(p.id)) candidates.push_back(p.id);
    for (const auto& id : candidates) {
      auto pos = std::find_if(index.pits.begin(), index.pits.end(), [&](const IndexPit& p) { return p.id == id; });
      if (pos == index.pits.end() || pos + 1 == index.pits.end()) continue;
      const IndexPit& dropping = *pos;
      const IndexPit& into = *(pos + 1);
      if (pinned.count(dropping.id) || pinned.count(into.id)) continue;
      RetentionStep step{dropping.id, into.id, {}};
      for (const auto& d : dropping.disks) {
        const IndexDisk* next_disk = into.disk(d.key);
        bool merge = next_disk && next_disk->backing_pit == dropping.id;
        step.disks.push_back({d.key, merge, d.path, merge ? next_disk->path : std::string()});
      }
      Index marked = index;
      marked.retention = step;
      EVAC_RETURN_IF_ERROR(save_index(marked));
      index = std::move(marked);
      EVAC_RETURN_IF_ERROR(crash_at(CrashPoint::kRetainAfterMark));
      EVAC_RETURN_IF_ERROR(finish_retention_step(index));
    }
    return Status::ok();
  });
}

// ------------------------------------------------------------- release ---

Status PitStore::finish_discarding(Index& index) {
  if (index.discarding.empty()) return Status::ok();
  const std::string context = "deleting the released PITs of group '" + index.group + "'";
  std::set<std::string> dirs;
  for (const auto& path : index.discarding) {
    EVAC_RETURN_IF_ERROR(remove_file(path).with_context(context));
    dirs.insert(parent_of(path));
  }
  for (const auto& dir : dirs) {
    if (!path_exists(dir)) continue;
    EVAC_RETURN_IF_ERROR(fsync_path(dir, true).with_context(context));
    ::rmdir(dir.c_str());  // the disk's folder, when no PIT is left in it
  }
  Index next = index;
  next.discarding.clear();
  EVAC_RETURN_IF_ERROR(save_index(next));
  index = std::move(next);
  return Status::ok();
}

Result<ReleasedReplicas> PitStore::release(const std::string& group) {
  return guarded("releasing the replicas of group '" + group + "'", [&]() -> Result<ReleasedReplicas> {
    EVAC_RETURN_IF_ERROR(check_name("protection group", group));
    std::lock_guard lock(mu_);
    auto loaded = load_index(group);
    if (!loaded.is_ok()) return loaded.status();
    ReleasedReplicas out;
    if (!loaded->has_value()) return out;  // this site never held the group's replicas
    Index index = std::move(**loaded);
    EVAC_RETURN_IF_ERROR(finish_discarding(index));
    if (!index.staged.empty())
      return failed_precondition("cycle '" + index.staged.front().id + "' of group '" + group + "' is staged here",
                                 "this site still receives the group's replication; its replicas are released by a "
                                 "reprotect, after a recovery made this site the live one");
    if (index.retention) EVAC_RETURN_IF_ERROR(finish_retention_step(index));

    // A live copy whose disks stand alone no longer needs any PIT.
    std::set<std::string> forgotten;
    for (const auto& t : index.test_copies) {
      if (!t.live) {
        if (out.kept_because.empty())
          out.kept_because = "test copy " + t.id + (t.owner.empty() ? "" : " of " + t.owner) + " reads PIT " + t.pit +
                             ": clean the test up (`evac plan cleanup`), then run the reprotect again";
        continue;
      }
      bool stands_alone = true;
      for (const auto& d : t.disks) {
        if (!path_exists(d.path)) continue;
        // Shared: a running VM holds the image; reading its header needs no lock.
        auto backing = backing_file_of(d.path, true, "reading disk " + d.key + " of live copy " + t.id,
                                       "check that " + d.path + " is a readable qcow2 image");
        if (!backing.is_ok()) return backing.status();
        if (backing->empty()) continue;
        // Safe mode: every block the chain holds is copied in before the
        // link goes, so the guest reads the same bytes either way.
        auto flat = qemu_img({"rebase", "-q", "-f", "qcow2", "-b", "", d.path},
                             "flattening disk " + d.key + " of live copy " + t.id,
                             "check free space next to " + d.path + "; a flattened disk holds all its data itself");
        if (!flat.is_ok()) {
          if (flat.status().code() != StatusCode::kUnavailable) return flat.status();
          stands_alone = false;
          if (out.kept_because.empty())
            out.kept_because = "disk " + d.key + " of live copy " + t.id + " still reads through PIT " + t.pit +
                               " and a running VM holds it (" + flat.status().message() +
                               "): flatten it with a block pull (`virsh blockpull DOMAIN TARGET --wait`), then run the "
                               "reprotect again";
          break;
        }
        EVAC_RETURN_IF_ERROR(fsync_path(d.path, false));
        out.flattened.push_back(d.path);
      }
      if (stands_alone) forgotten.insert(t.id);
    }

    Index next = index;
    next.test_copies.erase(std::remove_if(next.test_copies.begin(), next.test_copies.end(),
                                          [&](const IndexTestCopy& t) { return forgotten.count(t.id) > 0; }),
                           next.test_copies.end());
    out.released_copies.assign(forgotten.begin(), forgotten.end());
    const std::set<std::string> pinned = next.read_by_copies();
    std::vector<IndexPit> kept;
    for (const auto& p : next.pits) {
      if (pinned.count(p.id)) {
        out.kept_pits.push_back(p.id);
        kept.push_back(p);
        continue;
      }
      out.removed_pits.push_back(p.id);
      for (const auto& d : p.disks) {
        next.discarding.push_back(d.path);
        next.discarding.push_back(blob_path_for(d.path));
      }
    }
    next.pits = std::move(kept);
    // The index forgets first: a crash after this leaves files listed as
    // being discarded (finished by recover() or the next release), never an
    // index naming deleted files.
    EVAC_RETURN_IF_ERROR(save_index(next));
    EVAC_RETURN_IF_ERROR(crash_at(CrashPoint::kReleaseAfterIndexWrite));
    EVAC_RETURN_IF_ERROR(finish_discarding(next));
    return out;
  });
}

// ---------------------------------------------------------- test copies ---

Result<TestCopy> PitStore::create_test_copy(const std::string& group, const std::string& pit_id, const std::string& dir,
                                            const std::string& owner, bool live) {
  return guarded("creating a test copy of PIT '" + pit_id + "' of group '" + group + "'", [&]() -> Result<TestCopy> {
    EVAC_RETURN_IF_ERROR(check_name("protection group", group));
    EVAC_RETURN_IF_ERROR(check_name("PIT id", pit_id));
    if (dir.empty() || dir[0] != '/')
      return invalid_argument("test copy folder '" + dir + "' is not an absolute path", "pass an absolute folder at the recovery site");
    std::error_code ec;
    if (!fs::is_directory(dir, ec))
      return failed_precondition("test copy folder " + dir + " does not exist", "create it, or pass an existing folder");
    std::lock_guard lock(mu_);
    auto loaded = load_existing_index(group);
    if (!loaded.is_ok()) return loaded.status();
    Index index = std::move(*loaded);
    const IndexPit* pit = index.visible_pit(pit_id);
    if (!pit) return unknown_pit(group, pit_id);
    if (!owner.empty()) {
      for (auto it = index.test_copies.begin(); it != index.test_copies.end(); ++it) {
        const IndexTestCopy& t = *it;
        if (t.owner != owner || t.live != live) continue;
        if (t.pit != pit_id)
          return already_exists("test copy " + t.id + " of group '" + group + "' for " + owner + " is of PIT " + t.pit +
                                    ", not " + pit_id,
                                "drop it first, or ask for PIT " + t.pit);
        // Asked again (a step run again after a crash): the overlays exist
        // unless the crash came between recording and creating them.
        bool complete = true;
        for (const auto& d : t.disks) complete = complete && fs::exists(d.path);
        if (complete) return to_test_copy(t);
        // Half made: forget it, with whatever of it appeared, and make it
        // again below.
        for (const auto& d : t.disks) (void)remove_file(d.path);
        if (!t.disks.empty()) ::rmdir(fs::path(t.disks.front().path).parent_path().c_str());
        index.test_copies.erase(it);
        break;
      }
    }

    IndexTestCopy tc;
    tc.id = format_test_copy_id(index.next_test_copy_seq);
    tc.pit = pit_id;
    tc.owner = owner;
    tc.live = live;
    fs::path tc_dir = fs::path(dir).lexically_normal() / group / tc.id;
    for (const auto& d : pit->disks)
      tc.disks.push_back({d.key, (tc_dir / (key_dir_name(d.key) + std::string(kImageSuffix))).string(), d.size_bytes});

    // A released live copy's file (a recovered VM's disk) is never
    // overwritten, even if an index rebuilt by hand reuses its id.
    for (const auto& overlay : tc.disks)
      if (path_exists(overlay.path))
        return already_exists("test copy file " + overlay.path + " exists already",
                              "it may be a recovered VM's disk: move it away if nothing uses it");

    // Recorded before the files exist, so the PIT is pinned from the first
    // overlay on; drop_test_copy copes with files that never appeared.
    Index next = index;
    next.test_copies.push_back(tc);
    ++next.next_test_copy_seq;
    EVAC_RETURN_IF_ERROR(save_index(next));

    auto undo = [&](const Status& cause) -> Status {
      for (const auto& d : tc.disks) (void)remove_file(d.path);
      ::rmdir(tc_dir.c_str());
      ::rmdir(tc_dir.parent_path().c_str());
      Status st = save_index(index);
      if (!st.is_ok()) return cause.with_context("and undoing it failed too (" + st.message() + "); drop test copy " + tc.id);
      return cause;
    };
    if (auto st = make_dirs(tc_dir, kPassableDirMode); !st.is_ok()) return undo(st);
    for (std::size_t i = 0; i < tc.disks.size(); ++i) {
      const auto& overlay = tc.disks[i];
      if (auto st = create_private_file(overlay.path); !st.is_ok()) return undo(st);
      auto created = qemu_img({"create", "-q", "-f", "qcow2", "-b", pit->disks[i].path, "-F", "qcow2", overlay.path},
                              "creating the test copy overlay of disk " + overlay.key,
                              "check free space and permissions in " + tc_dir.string() + " and that PIT " + pit_id + " is intact");
      if (!created.is_ok()) return undo(created.status());
    }
    if (auto st = fsync_path(tc_dir.string(), true); !st.is_ok()) return undo(st);
    return to_test_copy(tc);
  });
}

Status PitStore::drop_test_copy(const std::string& group, const std::string& test_copy_id) {
  return guarded("dropping test copy '" + test_copy_id + "' of group '" + group + "'", [&]() -> Status {
    EVAC_RETURN_IF_ERROR(check_name("protection group", group));
    EVAC_RETURN_IF_ERROR(check_name("test copy id", test_copy_id));
    std::lock_guard lock(mu_);
    auto loaded = load_existing_index(group);
    if (!loaded.is_ok()) return loaded.status();
    Index index = std::move(*loaded);
    auto it = std::find_if(index.test_copies.begin(), index.test_copies.end(), [&](const IndexTestCopy& t) { return t.id == test_copy_id; });
    if (it == index.test_copies.end())
      return not_found("test copy '" + test_copy_id + "' of group '" + group + "' does not exist",
                       "list the group's test copies; it may have been dropped already");
    // Files first, then the record: a crash in between leaves a record with
    // missing files, which dropping again clears.
    for (const auto& d : it->disks) EVAC_RETURN_IF_ERROR(remove_file(d.path));
    if (!it->disks.empty()) {
      fs::path tc_dir = fs::path(it->disks.front().path).parent_path();
      ::rmdir(tc_dir.c_str());
      ::rmdir(tc_dir.parent_path().c_str());  // the group's folder, when no other test copy is in it
    }
    index.test_copies.erase(it);
    return save_index(index);
  });
}

Result<std::vector<TestCopy>> PitStore::list_test_copies(const std::string& group) const {
  return guarded("listing test copies of group '" + group + "'", [&]() -> Result<std::vector<TestCopy>> {
    EVAC_RETURN_IF_ERROR(check_name("protection group", group));
    std::lock_guard lock(mu_);
    auto index = load_existing_index(group);
    if (!index.is_ok()) return index.status();
    std::vector<TestCopy> out;
    for (const auto& t : index->test_copies) out.push_back(to_test_copy(t));
    return out;
  });
}

// ---------------------------------------------------------------- blobs ---

Status PitStore::save_disk_blob(const std::string& group, const std::string& cycle_id, const std::string& key,
                                const std::string& bytes) {
  return guarded("saving the manifest of disk " + key + " in cycle '" + cycle_id + "' of group '" + group + "'", [&]() -> Status {
    EVAC_RETURN_IF_ERROR(check_name("protection group", group));
    EVAC_RETURN_IF_ERROR(check_name("cycle id", cycle_id));
    EVAC_RETURN_IF_ERROR(check_key(key));
    std::lock_guard lock(mu_);
    auto index = load_existing_index(group);
    if (!index.is_ok()) return index.status();
    for (const auto& s : index->staged) {
      if (s.id != cycle_id) continue;
      for (const auto& d : s.disks)
        if (d.key == key) return write_file_durably(blob_path_for(d.staging_path), bytes);
      return not_found("disk " + key + " is not part of cycle '" + cycle_id + "' of group '" + group + "'",
                       "save a manifest only for a disk the cycle staged");
    }
    return not_found("no cycle '" + cycle_id + "' is staged for group '" + group + "'",
                     "save manifests between begin_cycle and commit_cycle");
  });
}

Result<std::optional<std::string>> PitStore::load_disk_blob(const std::string& group, const std::string& pit_id,
                                                            const std::string& key) const {
  return guarded("loading the manifest of disk " + key + " in PIT " + pit_id + " of group '" + group + "'",
                 [&]() -> Result<std::optional<std::string>> {
    EVAC_RETURN_IF_ERROR(check_name("protection group", group));
    EVAC_RETURN_IF_ERROR(check_key(key));
    std::lock_guard lock(mu_);
    auto index = load_existing_index(group);
    if (!index.is_ok()) return index.status();
    const IndexPit* pit = index->visible_pit(pit_id);
    if (pit == nullptr) return unknown_pit(group, pit_id);
    const IndexDisk* disk = pit->disk(key);
    if (!disk || !disk->blob) return std::optional<std::string>();
    auto bytes = read_whole_file(blob_path_for(disk->path));
    if (!bytes.is_ok())
      return internal_error("the manifest of disk " + key + " in PIT " + pit_id + " is unreadable: " +
                                bytes.status().message(),
                            kOutsideHint);
    return std::optional<std::string>(std::move(*bytes));
  });
}

Result<std::optional<std::string>> PitStore::load_newest_disk_blob(const std::string& group, const std::string& key) const {
  return guarded("loading the manifest of disk " + key + " of group '" + group + "'", [&]() -> Result<std::optional<std::string>> {
    EVAC_RETURN_IF_ERROR(check_name("protection group", group));
    EVAC_RETURN_IF_ERROR(check_key(key));
    std::lock_guard lock(mu_);
    auto index = load_index(group);
    if (!index.is_ok()) return index.status();
    const IndexPit* newest = index->has_value() ? (*index)->newest() : nullptr;
    const IndexDisk* disk = newest ? newest->disk(key) : nullptr;
    if (!disk || !disk->blob) return std::optional<std::string>();
    auto bytes = read_whole_file(blob_path_for(disk->path));
    if (!bytes.is_ok())
      return internal_error("the manifest of disk " + key + " in PIT " + newest->id + " is unreadable: " + bytes.status().message(),
                            kOutsideHint);
    return std::optional<std::string>(std::move(*bytes));
  });
}

}  // namespace evac::builtin
