#include "replication/rbd/rbd_adapter.h"

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <set>
#include <sstream>
#include <thread>

#include "core/json_decode.h"
#include "core/model_json.h"
#include "replication/external/adapter_side.h"
#include "replication/rbd/rbd_cluster.h"

namespace evac::rbd {
using nlohmann::json;
namespace fs = std::filesystem;

namespace {

constexpr const char* kCopyPrefix = "evac-copy.";

// One replicated disk: its key (vm uuid/target) and image.
struct Device {
  std::string key;
  ImageName image;
  std::uint64_t size_bytes = 0;
};

std::string snap_name(const std::string& group, const std::string& pit) { return "evac." + group + "." + pit; }

// A PIT id is "pit-<ms>-<hex>": its instant.
std::int64_t instant_of(const std::string& pit) {
  if (pit.rfind("pit-", 0) != 0) return 0;
  try {
    return std::stoll(pit.substr(4, pit.find('-', 4) - 4));
  } catch (...) {
    return 0;
  }
}

std::int64_t now_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch()).count();
}

class Adapter {
 public:
  explicit Adapter(const external::Invocation& inv) : inv_(inv) {}

  Result<json> run() {
    const std::string& op = inv_.operation;
    if (op == "capabilities") return capabilities();
    EVAC_RETURN_IF_ERROR(connect());
    if (op == "discover") return discover();
    if (op == "snapshot") return snapshot();
    if (op == "ship") return ship();
    if (op == "await_pit") return await_pit();
    if (op == "expire_pits") return expire_pits();
    if (op == "list_pits") return list_pits();
    if (op == "create_test_copy") return make_copy(false);
    if (op == "failover") return make_copy(true);
    if (op == "drop_test_copy") return drop_test_copy();
    if (op == "list_test_copies") return list_copies_answer();
    if (op == "prepare_failover") return prepare_failover();
    if (op == "release_source" || op == "check_read_only_source") return check_sources();
    if (op == "prepare_reverse") return prepare_reverse();
    if (op == "release_replicas") return release_replicas();
    return unsupported("the rbd adapter cannot " + op + " yet",
                       "compare `rbd export POOL/IMAGE@SNAP - | md5sum` at both clusters to check a point in time");
  }

 private:
  // ------------------------------------------------------------ setup ---
  Status connect() {
    ClusterSettings s;
    auto f = JsonFields::of(inv_.settings, "the rbd adapter's settings");
    if (!f) return f.status();
    auto conf = f->required_text("conf");
    auto user = f->text("user", 64);
    auto keyring = f->text("keyring");
    auto timeout = f->integer("timeout_seconds", 1, 3600);
    auto wait = f->integer("promote_wait_seconds", 0, 3600);
    for (const Status& st : {conf.status(), user.status(), keyring.status(), timeout.status(), wait.status(), f->finish()})
      if (!st) return st.with_hint("settings: {conf: /etc/ceph/SITE.conf, user: evac, timeout_seconds: 20}");
    s.conf = *conf;
    s.user = user->value_or("admin");
    s.keyring = keyring->value_or("");
    s.op_timeout = std::chrono::seconds(timeout->value_or(20));
    promote_wait_ = std::chrono::seconds(wait->value_or(30));
    EVAC_ASSIGN_OR_RETURN(cluster_, Cluster::connect(s));
    return Status::ok();
  }

  Result<json> capabilities() {
    return json{{"adapter_version", "evac-rbd 1"},
                {"capabilities",
                 {{"points_in_time", true}, {"test_copies", true}, {"reverse", true}, {"change_tracking", true},
                  {"cross_vm_consistency", true}, {"read_only_source", true}}}};
  }

  const json& req() const { return inv_.request; }
  std::string group_name() const {
    const json& g = req().at("group");
    return g.is_string() ? g.get<std::string>() : g.at("group").get<std::string>();
  }

  // The devices a request names ({"devices": [{key, source}]}).
  Result<std::vector<Device>> request_devices() {
    std::vector<Device> out;
    for (const json& d : req().value("devices", json::array())) {
      const json& src = d.at("source");
      if (src.value("type", "") != "network" || src.value("protocol", "") != "rbd")
        return unsupported("disk " + d.value("key", "") + " is not an rbd disk", "protect it with another engine");
      EVAC_ASSIGN_OR_RETURN(ImageName image, parse_image_name(src.value("name", "")));
      out.push_back(Device{d.value("key", ""), image, d.value("size_bytes", std::uint64_t{0})});
    }
    return out;
  }

  // The group's devices as this site last learnt them (await_pit and
  // prepare_reverse write them): the recovery half has nothing else.
  std::string state_file(const std::string& group, const std::string& what) const {
    return inv_.state_dir + "/" + group + "." + what + ".json";
  }
  Status save_state(const std::string& group, const std::string& what, const json& doc) {
    std::error_code ec;
    fs::create_directories(inv_.state_dir, ec);
    const std::string path = state_file(group, what), tmp = path + ".tmp";
    {
      std::ofstream out(tmp, std::ios::trunc);
      out << doc.dump();
      if (!out.flush()) return internal_error("cannot write " + tmp);
    }
    fs::rename(tmp, path, ec);
    if (ec) return internal_error("cannot rename " + tmp + ": " + ec.message());
    return Status::ok();
  }
  json load_state(const std::string& group, const std::string& what) const {
    std::ifstream in(state_file(group, what));
    if (!in) return json();
    std::stringstream text;
    text << in.rdbuf();
    return parse_json_or_discarded(text.str());
  }
  Status save_devices(const std::string& group, const std::vector<Device>& devices) {
    json list = json::array();
    for (const auto& d : devices) list.push_back({{"key", d.key}, {"image", d.image.spec()}, {"size_bytes", d.size_bytes}});
    return save_state(group, "devices", list);
  }
  Result<std::vector<Device>> known_devices(const std::string& group) {
    json list = load_state(group, "devices");
    std::vector<Device> out;
    if (!list.is_array()) return out;
    for (const json& d : list) {
      EVAC_ASSIGN_OR_RETURN(ImageName image, parse_image_name(d.value("image", "")));
      out.push_back(Device{d.value("key", ""), image, d.value("size_bytes", std::uint64_t{0})});
    }
    return out;
  }

  // ---------------------------------------------------- protected site ---
  Result<json> discover() {
    const json& spec = req().at("group");
    json devices = json::array();
    for (const json& vm : spec.at("vms")) {
      for (const json& disk : vm.at("disks")) {
        if (disk.value("device", "disk") == "cdrom") continue;
        const json& src = disk.value("source", json::object());
        const std::string what = "disk " + disk.value("target", "") + " of VM '" + vm.value("name", "") + "'";
        if (src.value("type", "") != "network" || src.value("protocol", "") != "rbd")
          return unsupported(what + " is not an rbd disk", "protect it in a group of another replication engine");
        EVAC_ASSIGN_OR_RETURN(ImageName name, parse_image_name(src.value("name", "")));
        EVAC_ASSIGN_OR_RETURN(auto image, cluster_->open(name));
        std::uint64_t size = 0;
        if (int r = image->size(&size); r < 0) return cluster_->error(r, "reading the size of " + name.spec());
        EVAC_RETURN_IF_ERROR(check_mirrored(*image, name, what));
        devices.push_back({{"vm_uuid", vm.value("uuid", "")}, {"disk", disk.value("target", "")}, {"size_bytes", size}});
      }
    }
    return json{{"devices", devices}};
  }

  Status check_mirrored(librbd::Image& image, const ImageName& name, const std::string& what) {
    librbd::mirror_image_info_t info;
    if (int r = image.mirror_image_get_info(&info, sizeof info); r < 0)
      return cluster_->error(r, "reading the mirroring of " + name.spec());
    librbd::mirror_image_mode_t mode;
    if (info.state != RBD_MIRROR_IMAGE_ENABLED || image.mirror_image_get_mode(&mode) < 0 ||
        mode != RBD_MIRROR_IMAGE_MODE_SNAPSHOT)
      return failed_precondition(what + ": image " + name.spec() + " is not mirrored in snapshot mode",
                                 "rbd mirror image enable " + name.spec() + " snapshot, and wait for its first sync");
    if (!info.primary)
      return failed_precondition(what + ": image " + name.spec() + " is not primary at this site",
                                 "protect the group from the site whose image is primary");
    return Status::ok();
  }

  Result<json> snapshot() {
    const std::string group = group_name(), pit = req().at("pit").at("id");
    const std::string snap = snap_name(group, pit);
    EVAC_ASSIGN_OR_RETURN(auto devices, request_devices());
    std::vector<std::pair<std::unique_ptr<librbd::Image>, ImageName>> taken;
    // All user snapshots first (the instant), then the mirror snapshots
    // that carry them: the VMs stand paused through both.
    for (const auto& d : devices) {
      auto image = cluster_->open(d.image);
      Status st = image.is_ok() ? Status::ok() : image.status();
      if (st.is_ok())
        if (int r = (*image)->snap_create(snap.c_str()); r < 0) st = cluster_->error(r, "snapshot " + d.image.spec() + "@" + snap);
      if (!st.is_ok()) {
        for (auto& [img, name] : taken) (void)img->snap_remove(snap.c_str());  // nothing half-taken stays
        return st;
      }
      taken.emplace_back(std::move(*image), d.image);
    }
    for (auto& [img, name] : taken) {
      std::uint64_t id = 0;
      if (int r = img->mirror_image_create_snapshot(&id); r < 0) {
        for (auto& [i, n] : taken) (void)i->snap_remove(snap.c_str());
        return cluster_->error(r, "mirror snapshot of " + name.spec());
      }
    }
    return json::object();
  }

  // The user snapshots of `group` on an image, oldest first.
  std::vector<Snapshot> group_snaps(const std::vector<Snapshot>& all, const std::string& group) {
    std::vector<Snapshot> out;
    const std::string prefix = "evac." + group + ".";
    for (const auto& s : all)
      if (s.user && s.name.rfind(prefix, 0) == 0) out.push_back(s);
    return out;
  }

  Result<json> ship() {
    const std::string group = group_name(), pit = req().at("pit").at("id");
    const std::string snap = snap_name(group, pit);
    EVAC_ASSIGN_OR_RETURN(auto devices, request_devices());
    SyncProgress progress;
    for (const auto& d : devices) progress.bytes_total += d.size_bytes;
    // What the mirror snapshot carries: the extents changed since the
    // group's previous PIT (everything for the first).
    for (const auto& d : devices) {
      EVAC_ASSIGN_OR_RETURN(auto image, cluster_->open(d.image, snap));
      EVAC_ASSIGN_OR_RETURN(auto head, cluster_->open(d.image));
      EVAC_ASSIGN_OR_RETURN(auto snaps, cluster_->snapshots(*head, d.image));
      auto mine = group_snaps(snaps, group);
      std::string previous;
      for (const auto& s : mine)
        if (s.name != snap && instant_of(s.name.substr(s.name.rfind('.') + 1)) < instant_of(pit)) previous = s.name;
      std::uint64_t changed = 0;
      auto count = [](std::uint64_t, size_t len, int exists, void* arg) -> int {
        if (exists) *static_cast<std::uint64_t*>(arg) += len;
        return 0;
      };
      int r = image->diff_iterate2(previous.empty() ? nullptr : previous.c_str(), 0, d.size_bytes, true, false, count, &changed);
      if (r < 0) return cluster_->error(r, "reading what changed in " + d.image.spec());
      progress.bytes_scanned += d.size_bytes;
      progress.bytes_sent += changed;
      std::cerr << external::progress_line(progress) << std::endl;
    }
    return json{{"bytes_sent", progress.bytes_sent}};
  }

  Result<json> expire_pits() {
    const std::string group = group_name();
    const json& spec = req().at("group");
    std::vector<ImageName> images;
    for (const json& vm : spec.at("vms"))
      for (const json& disk : vm.at("disks"))
        if (disk.value("source", json::object()).value("protocol", "") == "rbd") {
          EVAC_ASSIGN_OR_RETURN(ImageName name, parse_image_name(disk["source"].value("name", "")));
          images.push_back(name);
        }
    for (const auto& name : images) {
      EVAC_ASSIGN_OR_RETURN(auto image, cluster_->open(name));
      for (const json& pit : req().at("pit_ids")) {
        const std::string snap = snap_name(group, pit.get<std::string>());
        int r = image->snap_remove(snap.c_str());
        if (r < 0 && r != -ENOENT) return cluster_->error(r, "removing " + name.spec() + "@" + snap);
      }
    }
    return json::object();
  }

  Result<json> prepare_failover() {
    for (const ImageName& name : spec_images()) {
      EVAC_ASSIGN_OR_RETURN(auto image, cluster_->open(name));
      librbd::mirror_image_info_t info;
      if (int r = image->mirror_image_get_info(&info, sizeof info); r < 0) return cluster_->error(r, "reading " + name.spec());
      if (!info.primary) continue;  // demoted already
      if (int r = image->mirror_image_demote(); r < 0) return cluster_->error(r, "demoting " + name.spec());
    }
    return json::object();
  }

  // release_source: the VMs come back to these same images (failback
  // promotes them here), so there is nothing to lift; check_read_only_source:
  // demoting needs only the images to be there.
  Result<json> check_sources() {
    for (const ImageName& name : spec_images()) EVAC_RETURN_IF_ERROR(cluster_->open(name).status());
    return json::object();
  }

  std::vector<ImageName> spec_images() {
    std::vector<ImageName> out;
    for (const json& vm : req().at("group").at("vms"))
      for (const json& disk : vm.at("disks")) {
        const json& src = disk.value("source", json::object());
        if (src.value("protocol", "") != "rbd") continue;
        if (auto name = parse_image_name(src.value("name", ""))) out.push_back(*name);
      }
    return out;
  }

  // ----------------------------------------------------- recovery site ---
  // The PITs complete on every device of the group: the user snapshot is
  // here and a complete mirror snapshot after it (or the image is primary).
  Result<std::vector<json>> complete_pits(const std::string& group, const std::vector<Device>& devices) {
    std::map<std::string, int> seen;  // pit id -> devices that have it complete
    std::map<std::string, std::uint64_t> sizes;
    for (const auto& d : devices) {
      EVAC_ASSIGN_OR_RETURN(auto image, cluster_->open(d.image));
      EVAC_ASSIGN_OR_RETURN(auto snaps, cluster_->snapshots(*image, d.image));
      librbd::mirror_image_info_t info;
      bool primary = image->mirror_image_get_info(&info, sizeof info) >= 0 && info.primary;
      std::uint64_t newest_complete = 0;
      for (const auto& s : snaps)
        if (s.mirror && s.mirror_non_primary && s.mirror_complete) newest_complete = std::max(newest_complete, s.id);
      for (const auto& s : group_snaps(snaps, group))
        if (primary || s.id < newest_complete) {
          const std::string pit = s.name.substr(s.name.rfind('.') + 1);
          ++seen[pit];
        }
      std::uint64_t size = 0;
      image->size(&size);
      sizes[d.key] = size;
    }
    std::vector<json> out;
    for (const auto& [pit, count] : seen) {
      if (count != static_cast<int>(devices.size())) continue;
      json disks = json::array();
      for (const auto& d : devices)
        disks.push_back({{"key", d.key}, {"path", "rbd:" + d.image.spec() + "@" + snap_name(group, pit)}, {"size_bytes", sizes[d.key]}});
      const std::int64_t ms = instant_of(pit);
      out.push_back({{"id", pit}, {"group", group}, {"created_at", ms / 1000}, {"created_at_ms", ms}, {"disks", disks}});
    }
    std::sort(out.begin(), out.end(), [](const json& a, const json& b) { return a["created_at_ms"] < b["created_at_ms"]; });
    return out;
  }

  Result<json> await_pit() {
    const std::string group = group_name(), pit = req().at("pit").at("id");
    EVAC_ASSIGN_OR_RETURN(auto devices, request_devices());
    EVAC_RETURN_IF_ERROR(save_devices(group, devices));
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(req().value("wait_seconds", 20));
    for (;;) {
      EVAC_ASSIGN_OR_RETURN(auto pits, complete_pits(group, devices));
      for (const auto& p : pits)
        if (p["id"] == pit) return json{{"complete", true}, {"pit", p}};
      if (std::chrono::steady_clock::now() >= deadline) return json{{"complete", false}};
      std::this_thread::sleep_for(std::chrono::milliseconds(250));
    }
  }

  Result<json> list_pits() {
    const std::string group = group_name();
    EVAC_ASSIGN_OR_RETURN(auto devices, known_devices(group));
    EVAC_ASSIGN_OR_RETURN(auto pits, complete_pits(group, devices));
    return json{{"pits", pits}};
  }

  // Copies: clones named evac-copy.<group>.<copy>.<image>, their owner and
  // PIT in the clone's metadata; a failover's live copy is the promoted
  // images themselves, recorded in this site's state.
  Result<std::vector<json>> list_copies(const std::string& group) {
    EVAC_ASSIGN_OR_RETURN(auto devices, known_devices(group));
    std::set<std::string> pools;
    for (const auto& d : devices) pools.insert(d.image.pool);
    std::map<std::string, json> copies;
    const std::string prefix = std::string(kCopyPrefix) + group + ".";
    for (const auto& pool : pools) {
      EVAC_ASSIGN_OR_RETURN(librados::IoCtx * io, cluster_->pool(pool));
      std::vector<std::string> names;
      if (int r = cluster_->rbd().list(*io, names); r < 0) return cluster_->error(r, "listing pool " + pool);
      for (const auto& n : names) {
        if (n.rfind(prefix, 0) != 0) continue;
        const std::string rest = n.substr(prefix.size());
        const std::string id = rest.substr(0, rest.find('.'));
        EVAC_ASSIGN_OR_RETURN(auto image, cluster_->open(ImageName{pool, n}));
        std::string owner, pit, key;
        image->metadata_get("evac.owner", &owner);
        image->metadata_get("evac.pit", &pit);
        image->metadata_get("evac.key", &key);
        std::uint64_t size = 0;
        image->size(&size);
        json& c = copies[id];
        if (c.is_null()) c = {{"id", id}, {"pit_id", pit}, {"owner", owner}, {"live", false}, {"disks", json::array()}};
        c["disks"].push_back({{"key", key}, {"path", "rbd:" + pool + "/" + n}, {"size_bytes", size}});
      }
    }
    std::vector<json> out;
    for (auto& [id, c] : copies) out.push_back(c);
    json live = load_state(group, "live");
    if (live.is_object()) out.push_back(live);
    return out;
  }

  Result<json> list_copies_answer() {
    EVAC_ASSIGN_OR_RETURN(auto copies, list_copies(group_name()));
    return json{{"copies", copies}};
  }

  Result<json> make_copy(bool live) {
    const std::string group = group_name(), owner = req().value("owner", "");
    std::string pit = req().value("pit_id", "");
    EVAC_ASSIGN_OR_RETURN(auto copies, list_copies(group));
    for (const auto& c : copies)
      if (!owner.empty() && c["owner"] == owner && c["live"] == live) return json{{"copy", c}};
    EVAC_ASSIGN_OR_RETURN(auto devices, known_devices(group));
    if (devices.empty()) return not_found("group '" + group + "' has no images known here", "run a cycle of the group first");
    EVAC_ASSIGN_OR_RETURN(auto pits, complete_pits(group, devices));
    if (pit.empty() && !pits.empty()) pit = pits.back()["id"];
    if (std::none_of(pits.begin(), pits.end(), [&](const json& p) { return p["id"] == pit; }))
      return not_found("group '" + group + "' has no complete point in time '" + pit + "' here");
    if (live) return promote(group, pit, owner, devices);
    EVAC_ASSIGN_OR_RETURN(json copy, clone_copy(group, pit, owner, devices, "t" + std::to_string(now_ms())));
    return json{{"copy", copy}};
  }

  Result<json> clone_copy(const std::string& group, const std::string& pit, const std::string& owner,
                          const std::vector<Device>& devices, const std::string& id) {
    json copy = {{"id", id}, {"pit_id", pit}, {"owner", owner}, {"live", false}, {"disks", json::array()}};
    std::vector<ImageName> made;
    auto undo = [&] {
      for (const auto& n : made)
        if (auto io = cluster_->pool(n.pool)) (void)cluster_->rbd().remove(**io, n.image.c_str());
    };
    for (const auto& d : devices) {
      const ImageName clone{d.image.pool, std::string(kCopyPrefix) + group + "." + id + "." + d.image.image};
      EVAC_ASSIGN_OR_RETURN(librados::IoCtx * io, cluster_->pool(d.image.pool));
      librbd::ImageOptions opts;
      opts.set(RBD_IMAGE_OPTION_CLONE_FORMAT, static_cast<uint64_t>(2));
      const std::string snap = snap_name(group, pit);
      if (int r = cluster_->rbd().clone3(*io, d.image.image.c_str(), snap.c_str(), *io, clone.image.c_str(), opts); r < 0) {
        undo();
        return cluster_->error(r, "cloning " + d.image.spec() + "@" + snap)
            .with_hint("format-2 clones need `ceph osd set-require-min-compat-client mimic` on this cluster");
      }
      made.push_back(clone);
      EVAC_ASSIGN_OR_RETURN(auto image, cluster_->open(clone));
      image->metadata_set("evac.owner", owner);
      image->metadata_set("evac.pit", pit);
      image->metadata_set("evac.key", d.key);
      std::uint64_t size = 0;
      image->size(&size);
      copy["disks"].push_back({{"key", d.key}, {"path", "rbd:" + clone.spec()}, {"size_bytes", size}});
    }
    return copy;
  }

  // Failover: each image promoted here (forced when the other cluster
  // never demoted it); the recovered VMs run on the images themselves
  // when they hold exactly the PIT, so reprotect ships deltas only.
  Result<json> promote(const std::string& group, const std::string& pit, const std::string& owner,
                       const std::vector<Device>& devices) {
    const std::string snap = snap_name(group, pit);
    bool all_at_pit = true;
    for (const auto& d : devices) {
      EVAC_RETURN_IF_ERROR(promote_image(d.image));
      std::uint64_t changed = 0;
      auto count = [](std::uint64_t, size_t len, int, void* arg) -> int {  // written or discarded alike
        *static_cast<std::uint64_t*>(arg) += len;
        return 0;
      };
      // From the PIT's snapshot to the image's head: nothing written after it?
      EVAC_ASSIGN_OR_RETURN(auto head, cluster_->open(d.image));
      if (int r = head->diff_iterate2(snap.c_str(), 0, d.size_bytes ? d.size_bytes : UINT64_MAX / 2, true, false, count, &changed); r < 0)
        return cluster_->error(r, "comparing " + d.image.spec() + " with " + snap);
      if (changed != 0) all_at_pit = false;
    }
    json copy;
    if (all_at_pit) {
      copy = {{"id", "live." + pit}, {"pit_id", pit}, {"owner", owner}, {"live", true}, {"disks", json::array()}};
      for (const auto& d : devices)
        copy["disks"].push_back({{"key", d.key}, {"path", "rbd:" + d.image.spec()}, {"size_bytes", d.size_bytes}});
    } else {
      // An older PIT than the images hold: the VMs run on clones of it (a
      // reprotect then copies them in full).
      EVAC_ASSIGN_OR_RETURN(copy, clone_copy(group, pit, owner, devices, "live" + std::to_string(now_ms())));
      copy["live"] = true;
    }
    EVAC_RETURN_IF_ERROR(save_state(group, "live", copy));
    return json{{"copy", copy}};
  }

  Status promote_image(const ImageName& name) {
    const auto deadline = std::chrono::steady_clock::now() + promote_wait_;
    for (int attempt = 0;; ++attempt) {
      EVAC_ASSIGN_OR_RETURN(auto image, cluster_->open(name));
      librbd::mirror_image_info_t info;
      if (int r = image->mirror_image_get_info(&info, sizeof info); r < 0) return cluster_->error(r, "reading " + name.spec());
      if (info.primary) return Status::ok();
      int r = image->mirror_image_promote(false);
      if (r == 0) return Status::ok();
      // Not demoted at the other site (yet): wait for its demotion to
      // arrive, then force (the other site is gone, or evac fenced it).
      if (std::chrono::steady_clock::now() >= deadline) {
        r = image->mirror_image_promote(true);
        if (r == 0) return Status::ok();
        return cluster_->error(r, "promoting " + name.spec() + " (forced)");
      }
      std::this_thread::sleep_for(std::chrono::seconds(1));
    }
  }

  Result<json> drop_test_copy() {
    const std::string group = group_name(), id = req().at("copy_id");
    EVAC_ASSIGN_OR_RETURN(auto copies, list_copies(group));
    for (const auto& c : copies) {
      if (c["id"] != id) continue;
      if (c["live"] == true)
        return failed_precondition("copy " + id + " holds recovered VMs' disks", "a failover's copy is not a test's");
      for (const auto& d : c["disks"]) {
        EVAC_ASSIGN_OR_RETURN(ImageName name, parse_image_name(d["path"].get<std::string>().substr(4)));
        EVAC_ASSIGN_OR_RETURN(librados::IoCtx * io, cluster_->pool(name.pool));
        int r = cluster_->rbd().remove(*io, name.image.c_str());
        if (r < 0 && r != -ENOENT) return cluster_->error(r, "removing " + name.spec());
      }
    }
    return json::object();
  }

  // Reprotect, at the former protected site: its images stop being
  // sources. After a planned migration they were demoted and follow
  // already; after a disaster they still say primary (split brain):
  // demote them and ask rbd-mirror to copy them again from the other site.
  Result<json> prepare_reverse() {
    const std::string group = group_name();
    EVAC_ASSIGN_OR_RETURN(auto devices, request_devices());
    EVAC_RETURN_IF_ERROR(save_devices(group, devices));
    for (const auto& d : devices) {
      EVAC_ASSIGN_OR_RETURN(auto image, cluster_->open(d.image));
      librbd::mirror_image_info_t info;
      if (int r = image->mirror_image_get_info(&info, sizeof info); r < 0) return cluster_->error(r, "reading " + d.image.spec());
      if (!info.primary) continue;
      if (int r = image->mirror_image_demote(); r < 0) return cluster_->error(r, "demoting " + d.image.spec());
      if (int r = image->mirror_image_resync(); r < 0) return cluster_->error(r, "asking a resync of " + d.image.spec());
    }
    return json::object();
  }

  // Reprotect, at the new protected site: the PITs (user snapshots) are
  // history; the live copy's images belong to the VMs now.
  Result<json> release_replicas() {
    const std::string group = group_name();
    EVAC_ASSIGN_OR_RETURN(auto devices, known_devices(group));
    json out = {{"flattened", json::array()}, {"released_copies", json::array()}, {"removed_pits", json::array()},
                {"kept_pits", json::array()}};
    std::set<std::string> removed, kept;
    for (const auto& d : devices) {
      EVAC_ASSIGN_OR_RETURN(auto image, cluster_->open(d.image));
      EVAC_ASSIGN_OR_RETURN(auto snaps, cluster_->snapshots(*image, d.image));
      for (const auto& s : group_snaps(snaps, group)) {
        const std::string pit = s.name.substr(s.name.rfind('.') + 1);
        int r = image->snap_remove(s.name.c_str());
        if (r == -EBUSY) kept.insert(pit);
        else if (r < 0 && r != -ENOENT) return cluster_->error(r, "removing " + d.image.spec() + "@" + s.name);
        else removed.insert(pit);
      }
    }
    for (const auto& p : removed)
      if (!kept.count(p)) out["removed_pits"].push_back(p);
    for (const auto& p : kept) out["kept_pits"].push_back(p);
    if (!kept.empty()) out["kept_because"] = "clones (test copies) still read them";
    json live = load_state(group, "live");
    if (live.is_object()) {
      out["released_copies"].push_back(live["id"]);
      std::error_code ec;
      fs::remove(state_file(group, "live"), ec);
    }
    return out;
  }

  const external::Invocation& inv_;
  std::unique_ptr<Cluster> cluster_;
  std::chrono::seconds promote_wait_{30};
};

}  // namespace

Result<json> run_operation(const external::Invocation& invocation) {
  try {
    return Adapter(invocation).run();
  } catch (const json::exception& e) {
    return invalid_argument(std::string("the request is not what protocol 1 says: ") + e.what());
  }
}

}  // namespace evac::rbd
