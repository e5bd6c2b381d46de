#include "service/replication_service.h"

#include <algorithm>
#include <chrono>
#include <filesystem>

namespace evac {
using nlohmann::json;

json to_json(const PointInTime& pit) {
  json disks = json::array();
  for (const auto& d : pit.disks) disks.push_back({{"key", d.key}, {"path", d.path}, {"size_bytes", d.size_bytes}});
  return {{"id", pit.id}, {"group", pit.group}, {"created_at", pit.created_at}, {"bytes_sent", pit.bytes_sent}, {"disks", disks},
          {"cycle_id", pit.cycle_id}};
}

Result<PointInTime> pit_from_json(const json& j) {
  try {
    PointInTime pit;
    j.at("id").get_to(pit.id);
    j.at("group").get_to(pit.group);
    j.at("created_at").get_to(pit.created_at);
    pit.bytes_sent = j.value("bytes_sent", std::uint64_t{0});
    pit.cycle_id = j.value("cycle_id", std::string());
    for (const auto& d : j.at("disks")) pit.disks.push_back({d.at("key"), d.at("path"), d.value("size_bytes", std::uint64_t{0})});
    return pit;
  } catch (const json::exception& e) {
    return invalid_argument(std::string("malformed point in time: ") + e.what());
  }
}

namespace {

json device_json(const ReplicatedDevice& d) {
  return {{"vm_uuid", d.vm_uuid}, {"vm_name", d.vm_name},       {"disk", d.disk},
          {"format", d.format},   {"replica_dir", d.replica_dir}, {"size_bytes", d.size_bytes}};
}

}  // namespace

// The ReplicaChannel to one paired site, over its mutual-TLS API.
class ReplicationService::PeerChannel : public builtin::ReplicaChannel {
 public:
  PeerChannel(PeerTransport& transport, PeerRecord peer) : transport_(transport), peer_(std::move(peer)) {}

  Status begin_cycle(const std::string& group, const std::string& cycle_id,
                     const std::vector<ReplicatedDevice>& disks) override {
    json body = {{"cycle_id", cycle_id}, {"disks", json::array()}};
    for (const auto& d : disks) body["disks"].push_back(device_json(d));
    return call("POST", base(group) + "/cycles", body).status();
  }
  Result<std::optional<std::string>> manifest(const std::string& group, const std::string& key) override {
    auto slash = key.find('/');
    auto bytes = transport_.call_bytes(endpoint(), "GET",
                                       base(group) + "/manifests/" + key.substr(0, slash) + "/" + key.substr(slash + 1), "");
    if (!bytes) return with_site(bytes.status());
    if (bytes->empty()) return std::optional<std::string>();
    return std::optional<std::string>(std::move(*bytes));
  }
  Status send_batch(const std::string& group, const std::string& cycle_id, const std::string& batch) override {
    auto r = transport_.call_bytes(endpoint(), "POST", base(group) + "/cycles/" + cycle_id + "/blocks", batch);
    return r ? Status::ok() : with_site(r.status());
  }
  Result<PointInTime> commit_cycle(const std::string& group, const std::string& cycle_id,
                                   const std::vector<builtin::DiskDigest>& digests, std::int64_t created_at,
                                   std::uint64_t bytes_sent, int keep_pits) override {
    json body = {{"created_at", created_at}, {"bytes_sent", bytes_sent}, {"keep_pits", keep_pits}, {"digests", json::array()}};
    for (const auto& d : digests) body["digests"].push_back({{"key", d.key}, {"digest", d.digest_hex}});
    auto r = call("POST", base(group) + "/cycles/" + cycle_id + "/commit", body);
    if (!r) return r.status();
    return pit_from_json(*r);
  }
  Status abort_cycle(const std::string& group, const std::string& cycle_id) override {
    return call("DELETE", base(group) + "/cycles/" + cycle_id, std::nullopt).status();
  }
  Result<std::vector<PointInTime>> list_pits(const std::string& group) override {
    auto r = call("GET", base(group) + "/pits", std::nullopt);
    if (!r) return r.status();
    std::vector<PointInTime> out;
    for (const auto& j : *r) {
      auto pit = pit_from_json(j);
      if (!pit) return pit.status();
      out.push_back(std::move(*pit));
    }
    return out;
  }

 private:
  static std::string base(const std::string& group) { return "/api/v1/peer/replication/" + group; }
  PeerEndpoint endpoint() const { return PeerEndpoint{peer_.url, peer_.pin}; }
  Status with_site(const Status& s) const { return s.with_context("site '" + peer_.site + "'"); }
  Result<json> call(const std::string& method, const std::string& path, const std::optional<json>& body) {
    auto r = transport_.call(endpoint(), method, path, body);
    if (!r) return with_site(r.status());
    return r;
  }

  PeerTransport& transport_;
  PeerRecord peer_;
};

ReplicationService::ReplicationService(SiteService& site, PeerTransport& transport, const std::string& state_dir)
    : site_(site),
      transport_(transport),
      pits_(std::make_unique<builtin::PitStore>(state_dir + "/replication")),
      receiver_(std::make_unique<builtin::ReplicaReceiver>(*pits_)),
      backup_dir_(state_dir + "/backup") {
  std::error_code ec;
  std::filesystem::create_directories(state_dir + "/replication", ec);
  // A cycle of running VMs cut short by a crash may have left them paused:
  // resume them now rather than at the group's next sync. A hypervisor that
  // is down now gets the same treatment at that next sync.
  (void)builtin::recover_interrupted_cycles(backup_dir_, "", change_tracking_lookup());
}

ReplicationService::~ReplicationService() = default;

builtin::ChangeTrackingLookup ReplicationService::change_tracking_lookup() {
  return [this](const std::string& provider) -> ChangeTracking* {
    auto p = site_.provider(provider);
    return p ? (*p)->change_tracking() : nullptr;
  };
}

Result<ReplicationGroupSpec> ReplicationService::group_spec(const GroupRecord& group, const PeerRecord& peer) {
  ReplicationGroupSpec spec;
  spec.group = group.name;
  spec.protected_site = group.protected_site;
  spec.recovery_site = group.recovery_site;
  spec.keep_pits = group.keep_pits;
  std::vector<std::string> uuids;
  for (const auto& gvm : group.vms) uuids.push_back(gvm.vm_uuid);
  auto vms = site_.find_vms(uuids);
  if (!vms) return vms.status().with_context("group '" + group.name + "'");
  spec.vms = std::move(*vms);
  // Storage mappings name pools; the recovery site says where they are.
  auto inventory = transport_.call(PeerEndpoint{peer.url, peer.pin}, "GET", "/api/v1/peer/inventory", std::nullopt);
  if (!inventory) return inventory.status().with_context("site '" + peer.site + "'");
  auto mappings = site_.store().list_mappings(peer.site);
  if (!mappings) return mappings.status();
  for (const auto& m : *mappings) {
    if (m.kind != MappingKind::kStorage) continue;
    for (const auto& p : (*inventory)["providers"])
      for (const auto& pool : p.value("storage_pools", json::array()))
        if (pool.value("name", "") == m.target) spec.replica_dirs[m.source] = pool.value("path", "");
  }
  return spec;
}

Result<PointInTime> ReplicationService::sync_group(const std::string& name) {
  auto group = site_.get_group(name);
  if (!group) return group.status();
  if (group->protected_site != site_.identity().name)
    return failed_precondition("site '" + site_.identity().name + "' does not protect group '" + name + "'",
                               "sync it at its protected site, '" + group->protected_site + "'");
  auto peer = site_.store().find_peer(group->recovery_site);
  if (!peer) return peer.status();
  if (!peer->has_value()) return failed_precondition("recovery site '" + group->recovery_site + "' is not paired");
  {
    std::lock_guard lock(syncing_mu_);
    if (!syncing_.insert(name).second)
      return failed_precondition("a sync of group '" + name + "' is already running", "wait for it to finish");
  }
  struct Done {
    ReplicationService* self;
    std::string name;
    ~Done() {
      std::lock_guard lock(self->syncing_mu_);
      self->syncing_.erase(name);
    }
  } done{this, name};
  auto spec = group_spec(*group, **peer);
  if (!spec) return spec.status();
  PeerChannel channel(transport_, **peer);
  builtin::SyncOptions options;
  options.work_dir = backup_dir_;
  builtin::BuiltinReplicator replicator(channel, nullptr, change_tracking_lookup(), options);
  return replicator.sync_now(*spec, nullptr);
}

Result<std::vector<PointInTime>> ReplicationService::group_pits(const std::string& name) {
  auto group = site_.get_group(name);
  if (!group) return group.status();
  auto peer = site_.store().find_peer(group->recovery_site);
  if (!peer) return peer.status();
  if (!peer->has_value()) return failed_precondition("recovery site '" + group->recovery_site + "' is not paired");
  PeerChannel channel(transport_, **peer);
  return channel.list_pits(name);
}

json ReplicationService::group_replication_status(const GroupRecord& group) {
  json status = {{"rpo_seconds", group.rpo_seconds}, {"pits", 0}, {"newest_pit", nullptr}, {"lag_seconds", nullptr},
                 {"rpo_met", false}};
  auto pits = group_pits(group.name);
  if (!pits) {
    status["error"] = pits.status().message();
    return status;
  }
  status["pits"] = pits->size();
  if (pits->empty()) return status;
  const PointInTime& newest = pits->back();
  std::int64_t now =
      std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count();
  std::int64_t lag = std::max<std::int64_t>(0, now - newest.created_at);
  status["newest_pit"] = {{"id", newest.id}, {"created_at", newest.created_at}};
  status["lag_seconds"] = lag;
  status["rpo_met"] = lag <= group.rpo_seconds;
  return status;
}

// ---- recovery site ---------------------------------------------------------------------

Status ReplicationService::check_caller_protects(const PeerRecord& caller, const std::string& group) {
  auto copy = site_.store().find_peer_copy(caller.site);
  if (!copy) return copy.status();
  if (copy->has_value()) {
    auto doc = json::parse((*copy)->document, nullptr, false);
    for (const auto& g : doc.value("groups", json::array()))
      if (g.value("name", "") == group && g.value("recovery_site", "") == site_.identity().name) return Status::ok();
  }
  return permission_denied("site '" + caller.site + "' does not protect a group '" + group + "' to site '" +
                               site_.identity().name + "'",
                           "create the group at the protected site first; its configuration reaches this site with it");
}

Result<json> ReplicationService::handle_begin(const PeerRecord& caller, const std::string& group, const json& body) {
  EVAC_RETURN_IF_ERROR(check_caller_protects(caller, group));
  std::vector<ReplicatedDevice> disks;
  try {
    for (const auto& d : body.at("disks"))
      disks.push_back(ReplicatedDevice{d.at("vm_uuid"), d.value("vm_name", ""), d.at("disk"), "", d.value("format", ""),
                                       d.at("replica_dir"), d.at("size_bytes")});
  } catch (const json::exception& e) {
    return invalid_argument(std::string("malformed cycle request: ") + e.what());
  }
  // A paired site chooses where its replicas go only among this site's own
  // storage pools: the folder is a trust boundary, not a parameter.
  auto pools = site_.list_storage_pools(std::nullopt);
  if (!pools) return pools.status();
  for (const auto& d : disks) {
    bool is_pool = std::any_of(pools->begin(), pools->end(), [&](const StoragePoolInfo& p) {
      return !p.path.empty() && p.path == d.replica_dir;
    });
    if (!is_pool)
      return permission_denied("replica folder '" + d.replica_dir + "' of disk " + d.key() +
                                   " is not a storage pool of site '" + site_.identity().name + "'",
                               "map the disk's storage pool to a pool of this site (`evac mapping create storage ...`)");
  }
  EVAC_RETURN_IF_ERROR(receiver_->begin_cycle(group, body.value("cycle_id", ""), disks));
  return json{{"cycle_id", body.value("cycle_id", "")}};
}

Result<json> ReplicationService::handle_manifest(const PeerRecord& caller, const std::string& group, const std::string& key) {
  EVAC_RETURN_IF_ERROR(check_caller_protects(caller, group));
  auto manifest = receiver_->manifest(group, key);
  if (!manifest) return manifest.status();
  std::string bytes = manifest->value_or("");
  return json::binary(std::vector<std::uint8_t>(bytes.begin(), bytes.end()));
}

Result<json> ReplicationService::handle_batch(const PeerRecord& caller, const std::string& group, const std::string& cycle,
                                              const std::string& bytes) {
  EVAC_RETURN_IF_ERROR(check_caller_protects(caller, group));
  EVAC_RETURN_IF_ERROR(receiver_->apply_batch(group, cycle, bytes));
  return json{{"applied", bytes.size()}};
}

Result<json> ReplicationService::handle_commit(const PeerRecord& caller, const std::string& group, const std::string& cycle,
                                               const json& body) {
  EVAC_RETURN_IF_ERROR(check_caller_protects(caller, group));
  std::vector<builtin::DiskDigest> digests;
  try {
    for (const auto& d : body.at("digests")) digests.push_back({d.at("key"), d.at("digest")});
    auto pit = receiver_->commit_cycle(group, cycle, digests, body.at("created_at"), body.value("bytes_sent", std::uint64_t{0}),
                                       body.value("keep_pits", 24));
    if (!pit) return pit.status();
    return to_json(*pit);
  } catch (const json::exception& e) {
    return invalid_argument(std::string("malformed commit: ") + e.what());
  }
}

Result<json> ReplicationService::handle_abort(const PeerRecord& caller, const std::string& group, const std::string& cycle) {
  EVAC_RETURN_IF_ERROR(check_caller_protects(caller, group));
  EVAC_RETURN_IF_ERROR(receiver_->abort_cycle(group, cycle));
  return json{{"aborted", cycle}};
}

Result<json> ReplicationService::handle_pits(const PeerRecord& caller, const std::string& group) {
  EVAC_RETURN_IF_ERROR(check_caller_protects(caller, group));
  auto pits = receiver_->list_pits(group);
  if (!pits) return pits.status();
  json out = json::array();
  for (const auto& p : *pits) out.push_back(to_json(p));
  return out;
}

}  // namespace evac
