#include "service/peer_cycle.h"

#include <cstdint>

namespace evac {

using nlohmann::json;

Result<json> follow_peer_cycle(const PeerSyncCall& call, const NextWait& next_wait, std::chrono::milliseconds margin,
                               int forgotten_retries, const OnPeerProgress& on_progress) {
  json cycle;  // the cycle the peer gave (null: none yet, so the next call asks for one)
  int forgotten = 0;
  for (;;) {
    auto wait = next_wait();
    if (!wait) return wait.status();
    json body{{"wait_ms", wait->count()}};
    if (!cycle.is_null()) body["cycle"] = cycle;
    auto r = call(body, *wait + margin);
    if (!r && !cycle.is_null() && r.status().code() == StatusCode::kNotFound && ++forgotten <= forgotten_retries) {
      cycle = nullptr;
      continue;
    }
    if (!r) return r.status();
    if (r->value("done", true))
      return json{{"pit", r->value("id", "")}, {"created_at", r->value("created_at", json())}, {"cycle", r->value("cycle", json())}};
    cycle = r->value("cycle", std::uint64_t{0});
    if (on_progress) on_progress(r->value("progress", json()));
  }
}

}  // namespace evac
