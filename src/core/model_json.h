// JSON form of the inventory model: the REST API and the site-to-site
// channel both use it, so it lives next to the model.
#pragma once

#include <nlohmann/json.hpp>

#include "core/json_decode.h"
#include "core/model.h"
#include "core/status.h"

namespace evac {

void to_json(nlohmann::json& j, const DiskInfo& d);
void from_json(const nlohmann::json& j, DiskInfo& d);
void to_json(nlohmann::json& j, const NicInfo& n);
void from_json(const nlohmann::json& j, NicInfo& n);
void to_json(nlohmann::json& j, const VmInfo& v);
void from_json(const nlohmann::json& j, VmInfo& v);
void to_json(nlohmann::json& j, const NetworkInfo& n);
void from_json(const nlohmann::json& j, NetworkInfo& n);
void to_json(nlohmann::json& j, const StoragePoolInfo& p);
void from_json(const nlohmann::json& j, StoragePoolInfo& p);
void to_json(nlohmann::json& j, const PlaceholderSpec& s);
void from_json(const nlohmann::json& j, PlaceholderSpec& s);
void to_json(nlohmann::json& j, const PlaceholderInfo& p);
void from_json(const nlohmann::json& j, PlaceholderInfo& p);

// A paired site's request for a placeholder, as to_json(PlaceholderSpec)
// writes it, read strictly (json_decode.h): every field typed and bounded,
// unknown keys refused at every level.
Result<PlaceholderSpec> placeholder_spec_from_json(const nlohmann::json& j);
// A disk's source ({"type", "path", "protocol", "name"}) read as strictly.
Result<DiskSource> strict_disk_source(const nlohmann::json& j);

}  // namespace evac
