#include "replication/builtin/builtin_protocol.h"

#include <algorithm>

#include "core/json_decode.h"
#include "core/replication_json.h"

namespace evac::builtin {
using nlohmann::json;

namespace {

json device_json(const ReplicatedDevice& d) {
  return {{"vm_uuid", d.vm_uuid}, {"vm_name", d.vm_name},       {"disk", d.disk},
          {"format", d.format},   {"replica_dir", d.replica_dir}, {"size_bytes", d.size_bytes},
          {"seed", d.seed}};
}

}  // namespace

json to_json(const CycleBeginRequest& r) {
  json disks = json::array();
  for (const auto& d : r.disks) disks.push_back(device_json(d));
  return {{"cycle_id", r.cycle_id}, {"disks", std::move(disks)}};
}

Result<CycleBeginRequest> cycle_begin_from_json(const json& j) {
  auto f = JsonFields::of(j, "the start of a cycle");
  if (!f) return f.status();
  auto cycle_id = f->required_text("cycle_id", kMaxIdLength);
  auto disks = f->required_list("disks");
  for (const Status& s : {cycle_id.status(), disks.status(), f->finish()})
    if (!s) return s;
  CycleBeginRequest out;
  out.cycle_id = *cycle_id;
  for (const json& item : **disks) {
    auto d = JsonFields::of(item, "a disk of the start of a cycle");
    if (!d) return d.status();
    auto vm_uuid = d->required_text("vm_uuid", kMaxIdLength);
    auto vm_name = d->text("vm_name", kMaxIdLength);
    auto disk = d->required_text("disk", kMaxIdLength);
    auto format = d->text("format", 64);
    // May be empty: the pool check names the mapping to fix.
    auto replica_dir = d->required(d->text("replica_dir"), "replica_dir");
    auto size = d->required(d->integer_as<std::uint64_t>("size_bytes", 0, kMaxPeerBytes), "size_bytes");
    auto seed = d->text("seed");
    for (const Status& s : {vm_uuid.status(), vm_name.status(), disk.status(), format.status(), replica_dir.status(),
                            size.status(), seed.status(), d->finish()})
      if (!s) return s;
    ReplicatedDevice device{*vm_uuid, vm_name->value_or(""), *disk, {}, format->value_or(""), *replica_dir,
                            *size, seed->value_or("")};
    // Before anything is staged or allocated for it (a hash per block).
    EVAC_RETURN_IF_ERROR(check_disk_size(excerpt(device.key()), device.size_bytes));
    out.disks.push_back(std::move(device));
  }
  return out;
}

json to_json(const CycleCommitRequest& r) {
  json digests = json::array();
  for (const auto& d : r.digests) digests.push_back({{"key", d.key}, {"digest", d.digest_hex}});
  return {{"created_at", r.created_at_ms / 1000},
          {"created_at_ms", r.created_at_ms},
          {"bytes_sent", r.bytes_sent},
          {"keep_pits", r.retention.keep_last},
          {"keep_hourly", r.retention.keep_hourly},
          {"keep_daily", r.retention.keep_daily},
          {"digests", std::move(digests)}};
}

Result<CycleCommitRequest> cycle_commit_from_json(const json& j) {
  auto f = JsonFields::of(j, "the commit of a cycle");
  if (!f) return f.status();
  auto created_at = f->required(f->integer("created_at", 0, kMaxUnixSeconds), "created_at");
  auto created_at_ms = f->integer("created_at_ms", 0, kMaxUnixMillis);
  auto bytes_sent = f->integer_as<std::uint64_t>("bytes_sent", 0, kMaxPeerBytes);
  // The bounds an operator's settings have (a PIT count far beyond them,
  // narrowed, could delete the group's history).
  auto keep_pits = f->integer_as<int>("keep_pits", 1, kMaxKeptPits);
  auto keep_hourly = f->integer_as<int>("keep_hourly", 0, kMaxKeptPits);
  auto keep_daily = f->integer_as<int>("keep_daily", 0, kMaxKeptPits);
  auto digests = f->required_list("digests");
  for (const Status& s : {created_at.status(), created_at_ms.status(), bytes_sent.status(), keep_pits.status(),
                          keep_hourly.status(), keep_daily.status(), digests.status(), f->finish()})
    if (!s) return s;
  CycleCommitRequest out;
  // The instant to the millisecond; a site older than that sends seconds.
  out.created_at_ms = created_at_ms->value_or(*created_at * 1000);
  if (out.created_at_ms / 1000 != *created_at)
    return invalid_argument("the commit of a cycle: created_at_ms " + std::to_string(out.created_at_ms) +
                                " is not within created_at " + std::to_string(*created_at),
                            "created_at is created_at_ms in whole seconds");
  out.bytes_sent = bytes_sent->value_or(0);
  out.retention = RetentionPolicy{keep_pits->value_or(RetentionPolicy{}.keep_last),
                                  keep_hourly->value_or(RetentionPolicy{}.keep_hourly),
                                  keep_daily->value_or(RetentionPolicy{}.keep_daily)};
  for (const json& item : **digests) {
    auto d = JsonFields::of(item, "a digest of the commit of a cycle");
    if (!d) return d.status();
    auto key = d->required_text("key", kMaxDiskKeyLength);
    auto digest = d->required_text("digest", 256);
    for (const Status& s : {key.status(), digest.status(), d->finish()})
      if (!s) return s;
    out.digests.push_back({*key, *digest});
  }
  return out;
}


namespace {

// The routes' paths below the engine's prefix, as the channel calls them.
std::string cycles_path(const std::string& group) { return group + "/cycles"; }
std::string cycle_path(const std::string& group, const std::string& cycle) { return cycles_path(group) + "/" + cycle; }

class LinkChannel : public ReplicaChannel {
 public:
  explicit LinkChannel(ReplicationPeerLink& link) : link_(link) {}

  Status begin_cycle(const std::string& group, const std::string& cycle_id,
                     const std::vector<ReplicatedDevice>& disks) override {
    return link_.call("POST", cycles_path(group), to_json(CycleBeginRequest{cycle_id, disks})).status();
  }
  Result<std::optional<std::string>> manifest(const std::string& group, const std::string& key) override {
    auto slash = key.find('/');
    auto bytes = link_.call_bytes("GET", group + "/manifests/" + key.substr(0, slash) + "/" + key.substr(slash + 1), "");
    if (!bytes) return bytes.status();
    if (bytes->empty()) return std::optional<std::string>();
    return std::optional<std::string>(std::move(*bytes));
  }
  Status send_batch(const std::string& group, const std::string& cycle_id, const std::string& batch) override {
    return link_.call_bytes("POST", cycle_path(group, cycle_id) + "/blocks", batch).status();
  }
  Result<PointInTime> commit_cycle(const std::string& group, const std::string& cycle_id,
                                   const std::vector<DiskDigest>& digests, std::int64_t created_at_ms,
                                   std::uint64_t bytes_sent, const RetentionPolicy& retention) override {
    auto r = link_.call("POST", cycle_path(group, cycle_id) + "/commit",
                        to_json(CycleCommitRequest{digests, created_at_ms, bytes_sent, retention}));
    if (!r) return r.status();
    auto pit = pit_from_json(*r);
    if (!pit) return pit.status().with_context("site '" + link_.site() + "'");
    return pit;
  }
  Status abort_cycle(const std::string& group, const std::string& cycle_id) override {
    return link_.call("DELETE", cycle_path(group, cycle_id), std::nullopt).status();
  }
  Result<std::vector<PointInTime>> list_pits(const std::string& group) override {
    auto r = link_.call("GET", group + "/pits", std::nullopt);
    if (!r) return r.status();
    auto pits = pits_from_json(*r);
    if (!pits) return pits.status().with_context("site '" + link_.site() + "'");
    return pits;
  }

 private:
  ReplicationPeerLink& link_;
};

json raw(const std::string& bytes) { return json::binary(std::vector<std::uint8_t>(bytes.begin(), bytes.end())); }

}  // namespace

std::unique_ptr<ReplicaChannel> link_channel(ReplicationPeerLink& link) { return std::make_unique<LinkChannel>(link); }

std::vector<ReplicationPeerRoute> receiver_routes(ReplicaReceiver& receiver, const ReplicationSiteContext& site) {
  auto pool_folders = site.storage_pool_folders;
  const std::string site_name = site.site_name;
  std::vector<ReplicationPeerRoute> routes;
  routes.push_back({"POST", "{group}/cycles", "Begin a replication cycle", true, false,
                    [&receiver, pool_folders, site_name](const ReplicationPeerRequest& r) -> Result<json> {
                      EVAC_ASSIGN_OR_RETURN(json body, parse_json(r.body, "the request body"));
                      EVAC_ASSIGN_OR_RETURN(CycleBeginRequest request, cycle_begin_from_json(body));
                      // A paired site chooses where its replicas go only among this
                      // site's own storage pools: the folder is a trust boundary.
                      std::vector<std::string> pools;
                      if (pool_folders) {
                        EVAC_ASSIGN_OR_RETURN(pools, pool_folders());
                      }
                      for (const auto& d : request.disks) {
                        bool is_pool = !d.replica_dir.empty() &&
                                       std::find(pools.begin(), pools.end(), d.replica_dir) != pools.end();
                        if (!is_pool)
                          return permission_denied(
                              "replica folder '" + excerpt(d.replica_dir) + "' of disk " + excerpt(d.key()) +
                                  " is not a storage pool of site '" + site_name + "'",
                              "map the disk's storage pool to a pool of this site (`evac mapping create storage ...`)");
                      }
                      EVAC_RETURN_IF_ERROR(receiver.begin_cycle(r.params[0], request.cycle_id, request.disks));
                      return json{{"cycle_id", request.cycle_id}};
                    }});
  routes.push_back({"GET", "{group}/manifests/{vm}/{disk}", "A disk's manifest in the newest point in time", false, false,
                    [&receiver](const ReplicationPeerRequest& r) -> Result<json> {
                      EVAC_ASSIGN_OR_RETURN(auto manifest, receiver.manifest(r.params[0], r.params[1] + "/" + r.params[2]));
                      return raw(manifest.value_or(""));
                    }});
  routes.push_back({"POST", "{group}/cycles/{cycle}/blocks", "A batch of changed blocks", false, true,
                    [&receiver](const ReplicationPeerRequest& r) -> Result<json> {
                      EVAC_RETURN_IF_ERROR(receiver.apply_batch(r.params[0], r.params[1], r.body));
                      return json{{"applied", r.body.size()}};
                    }});
  routes.push_back({"POST", "{group}/cycles/{cycle}/commit", "Commit a cycle (its digests)", true, false,
                    [&receiver](const ReplicationPeerRequest& r) -> Result<json> {
                      EVAC_ASSIGN_OR_RETURN(json body, parse_json(r.body, "the request body"));
                      // Read whole before anything changes: retention acts on the commit.
                      EVAC_ASSIGN_OR_RETURN(CycleCommitRequest request, cycle_commit_from_json(body));
                      EVAC_ASSIGN_OR_RETURN(PointInTime pit,
                                            receiver.commit_cycle(r.params[0], r.params[1], request.digests,
                                                                  request.created_at_ms, request.bytes_sent,
                                                                  request.retention));
                      return to_json(pit);
                    }});
  routes.push_back({"DELETE", "{group}/cycles/{cycle}", "Abort a cycle", false, false,
                    [&receiver](const ReplicationPeerRequest& r) -> Result<json> {
                      EVAC_RETURN_IF_ERROR(receiver.abort_cycle(r.params[0], r.params[1]));
                      return json{{"aborted", r.params[1]}};
                    }});
  routes.push_back({"GET", "{group}/pits", "Points in time held here for a group", false, false,
                    [&receiver](const ReplicationPeerRequest& r) -> Result<json> {
                      EVAC_ASSIGN_OR_RETURN(auto pits, receiver.list_pits(r.params[0]));
                      return to_json(pits);
                    }});
  return routes;
}

}  // namespace evac::builtin
