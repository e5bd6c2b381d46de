#include "core/replication_json.h"

#include "core/json_decode.h"

namespace evac {
using nlohmann::json;

json to_json(const PointInTime& pit) {
  json disks = json::array();
  for (const auto& d : pit.disks) disks.push_back({{"key", d.key}, {"path", d.path}, {"size_bytes", d.size_bytes}});
  return {{"id", pit.id},
          {"group", pit.group},
          {"created_at", pit.created_at},
          {"created_at_ms", pit.created_at_ms},
          {"bytes_sent", pit.bytes_sent},
          {"disks", disks},
          {"cycle_id", pit.cycle_id}};
}

json to_json(const PitVerification& v) {
  json disks = json::array();
  std::uint64_t mismatched = 0;
  for (const auto& d : v.disks) {
    disks.push_back({{"key", d.key},
                     {"blocks_checked", d.blocks_checked},
                     {"blocks_mismatched", d.blocks_mismatched},
                     {"first_mismatches", d.first_mismatches}});
    mismatched += d.blocks_mismatched;
  }
  return {{"group", v.group}, {"pit", v.pit_id}, {"ok", v.ok()}, {"blocks_mismatched", mismatched}, {"disks", disks}};
}

Result<PointInTime> pit_from_json(const json& j) {
  auto f = JsonFields::of(j, "a point in time");
  if (!f) return f.status();
  auto id = f->required_text("id", kMaxIdLength);
  auto group = f->required_text("group", kMaxGroupNameLength);
  auto created_at = f->required(f->integer("created_at", 0, kMaxUnixSeconds), "created_at");
  auto created_at_ms = f->integer("created_at_ms", 0, kMaxUnixMillis);
  auto bytes_sent = f->integer_as<std::uint64_t>("bytes_sent", 0, kMaxPeerBytes);
  auto cycle_id = f->text("cycle_id", kMaxIdLength);
  auto disks = f->required_list("disks");
  for (const Status& s : {id.status(), group.status(), created_at.status(), created_at_ms.status(), bytes_sent.status(),
                          cycle_id.status(), disks.status(), f->finish()})
    if (!s) return s;
  PointInTime pit;
  pit.id = *id;
  pit.group = *group;
  pit.created_at = *created_at;
  // A site older than the millisecond instant sends seconds only.
  pit.created_at_ms = created_at_ms->value_or(pit.created_at * 1000);
  if (pit.created_at_ms / 1000 != pit.created_at)
    return invalid_argument("point in time " + excerpt(pit.id) + ": created_at_ms " +
                            std::to_string(pit.created_at_ms) + " is not within created_at " +
                            std::to_string(pit.created_at));
  pit.bytes_sent = bytes_sent->value_or(0);
  pit.cycle_id = cycle_id->value_or("");
  for (const json& item : **disks) {
    auto d = JsonFields::of(item, "a disk of a point in time");
    if (!d) return d.status();
    auto key = d->required_text("key", kMaxDeviceKeyLength);
    auto path = d->required(d->text("path"), "path");
    auto size = d->integer_as<std::uint64_t>("size_bytes", 0, kMaxPeerBytes);
    for (const Status& s : {key.status(), path.status(), size.status(), d->finish()})
      if (!s) return s;
    pit.disks.push_back({*key, *path, size->value_or(0)});
  }
  return pit;
}

json to_json(const std::vector<PointInTime>& pits) {
  json out = json::array();
  for (const auto& p : pits) out.push_back(to_json(p));
  return out;
}

Result<std::vector<PointInTime>> pits_from_json(const json& j) {
  if (!j.is_array())
    return invalid_argument("the points in time of a group are not a list",
                            "the recovery site answered what no evacd of this version sends");
  std::vector<PointInTime> out;
  for (const auto& item : j) {
    EVAC_ASSIGN_OR_RETURN(PointInTime pit, pit_from_json(item));
    out.push_back(std::move(pit));
  }
  return out;
}

}  // namespace evac
