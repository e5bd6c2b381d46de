// FakePeerTransport: routes site-to-site calls straight into other
// in-process sites' ApiRouters, presenting the caller's pin as if it were a
// TLS client certificate. Sites can be "cut off" to simulate a dead peer.
// A test may look at each call before it is routed (before_each_call): to
// restart the site it goes to, say, at an exact point of a conversation.
#pragma once

#include <atomic>
#include <functional>
#include <map>
#include <set>

#include "api/router.h"
#include "peer/peer_transport.h"

namespace evac::testing {

class FakePeerTransport : public PeerTransport {
 public:
  explicit FakePeerTransport(std::string caller_pin) : caller_pin_(std::move(caller_pin)) {}

  void connect(const std::string& url, const std::string& pin, ApiRouter* router) { sites_[url] = {pin, router}; }
  void cut(const std::string& url) { cut_.insert(url); }
  void heal(const std::string& url) { cut_.erase(url); }
  int calls() const { return calls_; }
  // Called with each call's method, path and body in the caller's thread,
  // before it is routed: it may connect() the URL to another router. Set
  // it while no call is under way.
  using CallHook = std::function<void(const std::string& method, const std::string& path, const std::string& body)>;
  void before_each_call(CallHook hook) { hook_ = std::move(hook); }

  Result<nlohmann::json> call(const PeerEndpoint& peer, const std::string& method, const std::string& path,
                              const std::optional<nlohmann::json>& body) override {
    return route(peer, method, path, body ? body->dump() : "");
  }

  Result<std::string> call_bytes(const PeerEndpoint& peer, const std::string& method, const std::string& path,
                                 const std::string& body, std::chrono::milliseconds) override {
    bytes_sent_ += body.size();
    auto r = route(peer, method, path, body);
    if (!r) return r.status();
    if (!r->is_binary()) return r->dump();
    return std::string(r->get_binary().begin(), r->get_binary().end());
  }
  std::uint64_t bytes_sent() const { return bytes_sent_; }

 private:
  Result<nlohmann::json> route(const PeerEndpoint& peer, const std::string& method, const std::string& path,
                               const std::string& body) {
    ++calls_;
    if (hook_) hook_(method, path, body);
    auto it = sites_.find(peer.url);
    if (it == sites_.end() || cut_.count(peer.url)) return unavailable("cannot reach " + peer.url + " (fake network)");
    if (it->second.pin != peer.pin) return permission_denied("pinned key does not match at " + peer.url);
    ApiRequest req{method, path, {}, body, "", caller_pin_};
    ApiResponse resp = it->second.router->handle(req);
    if (resp.status >= 300)
      return Status(status_code_from_name(resp.body.value("code", "internal")).value_or(StatusCode::kInternal),
                    resp.body.value("message", ""), resp.body.value("hint", ""));
    return resp.body;
  }

  struct Site {
    std::string pin;
    ApiRouter* router;
  };
  std::string caller_pin_;
  std::map<std::string, Site> sites_;
  std::set<std::string> cut_;
  CallHook hook_;
  // Steps of a run and replication cycles call from their own threads.
  std::atomic<int> calls_ = 0;
  std::atomic<std::uint64_t> bytes_sent_ = 0;
};

}  // namespace evac::testing
