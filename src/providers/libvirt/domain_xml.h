// Translation between libvirt's XML documents and evac's neutral model.
//
// Pure functions over strings, with no libvirt connection, so the mapping
// rules can be read (and tested) in one place.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/model.h"
#include "core/status.h"

namespace evac::libvirt {

// evac marks its placeholders with domain metadata in its own namespace:
//   <metadata><evac:placeholder xmlns:evac="https://evac.dev/xmlns/placeholder/1"
//       group="..." source-site="..." source-uuid="..."/></metadata>
inline constexpr std::string_view kPlaceholderNamespace = "https://evac.dev/xmlns/placeholder/1";
inline constexpr std::string_view kPlaceholderPrefix = "evac";

struct PlaceholderMarker {
  std::string group;
  std::string source_site;
  std::string source_uuid;
};

// A disk whose source is a storage volume (<disk type='volume'>): its path
// is only known to the pool, so the provider resolves it.
struct VolumeSource {
  std::size_t disk_index = 0;  // into DomainDescription::vm.disks
  std::string pool;
  std::string volume;
};

struct DomainDescription {
  // Name, UUID, vCPUs, memory, firmware, disks and NICs. Provider, power
  // state, storage pools of file disks and the native document are the
  // caller's to fill: they are not in the XML.
  VmInfo vm;
  std::optional<PlaceholderMarker> placeholder;
  std::vector<VolumeSource> volume_sources;
};

Result<DomainDescription> parse_domain_xml(std::string_view xml);

// Name, UUID, bridge and isolation; `active` is the caller's to fill.
Result<NetworkInfo> parse_network_xml(std::string_view xml);

// Name, UUID, type and target path; state and sizes are the caller's.
Result<StoragePoolInfo> parse_storage_pool_xml(std::string_view xml);

// The domain XML that registers `spec` as a placeholder: the protected VM's
// own libvirt definition when it has one, else a minimal one built from the
// neutral fields; renamed, without a UUID (libvirt assigns a new one), with
// the recovery site's disk paths and networks from the spec, without
// security labels, and marked with evac's placeholder metadata.
Result<std::string> placeholder_domain_xml(const PlaceholderSpec& spec);

}  // namespace evac::libvirt
