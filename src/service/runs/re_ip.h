// Re-addressing a recovered guest (the plan's IP rules), as a shell script
// its guest agent runs: addresses, default gateway and DNS, in the running
// guest and in its network configuration files.
#pragma once

#include <map>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/compute_provider.h"
#include "core/model.h"
#include "core/plan.h"
#include "core/status.h"

namespace evac {

// A shell function for the guest, `evac_persist OLD NEW`: every network
// configuration file under `root` (the guest's own: "") that names the
// address OLD names NEW instead; prints "persisted FILE" for each one.
std::string guest_config_rewriter(std::string_view root);

// What re-addressing one recovered guest takes: a shell script for its
// agent (empty when no address moves) and the moves it makes
// [{interface, mac, from, to}].
struct ReIpScript {
  std::string script;
  nlohmann::json changed = nlohmann::json::array();
};

// `nics` are the VM's NICs as defined at this site, `source_networks` maps
// this site's networks to the protected site's (the names the rules use),
// `interfaces` what the guest reports. A NIC a rule covers whose MAC the
// guest does not show is kFailedPrecondition.
Result<ReIpScript> re_ip_script(const std::string& vm_name, const std::vector<NicInfo>& nics,
                                const std::map<std::string, std::string>& source_networks,
                                const std::vector<IpRule>& rules, const std::vector<GuestInterface>& interfaces);

}  // namespace evac
