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

// Parses a JSON value into T, turning a shape error into a Status that names
// what was expected instead of letting an exception escape.
template <typename T>
Result<T> decode_json(const nlohmann::json& j, std::string_view what) {
  try {
    return j.get<T>();
  } catch (const std::exception& e) {  // nlohmann's shape errors, and out-of-range numbers
    return invalid_argument(std::string(what) + " is malformed: " + e.what(),
                            "see /api/v1/openapi.json for the expected shape");
  }
}

}  // namespace evac
