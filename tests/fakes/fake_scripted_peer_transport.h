// FakeScriptedPeerTransport: a paired site that answers what each test
// scripts ("METHOD path" -> answer), and keeps what it was asked.
#pragma once

#include <algorithm>
#include <chrono>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "peer/peer_transport.h"

namespace evac::testing {

class FakeScriptedPeerTransport : public PeerTransport {
 public:
  std::map<std::string, nlohmann::json> answers;
  std::vector<std::string> asked;
  Result<nlohmann::json> call(const PeerEndpoint&, const std::string& method, const std::string& path,
                              const std::optional<nlohmann::json>&) override {
    asked.push_back(method + " " + path);
    auto it = answers.find(method + " " + path);
    if (it == answers.end()) return unavailable("no scripted answer to " + method + " " + path);
    return it->second;
  }
  Result<std::string> call_bytes(const PeerEndpoint& peer, const std::string& method, const std::string& path,
                                 const std::string&, std::chrono::milliseconds) override {
    auto r = call(peer, method, path, std::nullopt);
    if (!r) return r.status();
    return r->dump();
  }
  int times_asked(const std::string& call) const { return static_cast<int>(std::count(asked.begin(), asked.end(), call)); }
};

}  // namespace evac::testing
