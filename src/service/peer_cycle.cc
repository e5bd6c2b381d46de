#include "service/peer_cycle.h"

#include <cstdint>
#include <limits>
#include <optional>
#include <string>

#include "core/json_decode.h"

namespace evac {

using nlohmann::json;

namespace {

// One answer of the sync call as ReplicationService::follow_cycle writes
// it: {cycle, done: false, progress} while the cycle runs (progress: the
// peer's sync_progress, or null), the PIT's to_json with {cycle, done: true}
// once it ended. What is followed here is read typed and bounded; the
// PIT's other keys are not refused: they are not read here (the PIT was
// committed here, at the recovery site, and is read from this site's own
// store when it is recovered).
struct SyncAnswer {
  bool done = true;
  std::optional<std::uint64_t> cycle;
  std::string pit;
  std::optional<std::int64_t> created_at;
  json progress;
};

constexpr const char* kAnswerHint =
    "the protected site answered what no evacd of this version sends: check the evacd there (its version, its log)";

Result<SyncAnswer> sync_answer_from_json(const json& j) {
  auto f = JsonFields::of(j, "the protected site's answer to a sync");
  if (!f) return f.status().with_hint(kAnswerHint);
  auto done = f->boolean("done");
  auto cycle = f->integer_as<std::uint64_t>("cycle", 0, std::numeric_limits<std::int64_t>::max());
  auto id = f->text("id", 256);
  auto created_at = f->integer("created_at", 0, std::numeric_limits<std::int64_t>::max() / 1000);
  const json* progress = f->value("progress");
  for (const Status& s : {done.status(), cycle.status(), id.status(), created_at.status()})
    if (!s) return s.with_hint(kAnswerHint);
  SyncAnswer out;
  out.done = done->value_or(true);  // an answer without it is the PIT
  out.cycle = *cycle;
  if (out.done) {
    if (!id->has_value() || (*id)->empty()) return f->missing("id").with_hint(kAnswerHint);
    out.pit = **id;
    out.created_at = *created_at;
  } else {
    // The next call follows this cycle: it must be named.
    if (!out.cycle) return f->missing("cycle").with_hint(kAnswerHint);
    if (progress && !progress->is_object())
      return invalid_argument("field 'progress' of the protected site's answer to a sync must be an object",
                              kAnswerHint);
    if (progress) out.progress = *progress;
  }
  return out;
}

}  // namespace

Result<json> follow_peer_cycle(const PeerSyncCall& call, const NextWait& next_wait, std::chrono::milliseconds margin,
                               int forgotten_retries, const OnPeerProgress& on_progress) {
  std::optional<std::uint64_t> cycle;  // the cycle the peer gave (none yet: the next call asks for one)
  int forgotten = 0;
  for (;;) {
    auto wait = next_wait();
    if (!wait) return wait.status();
    json body{{"wait_ms", wait->count()}};
    if (cycle) body["cycle"] = *cycle;
    auto r = call(body, *wait + margin);
    if (!r && cycle && r.status().code() == StatusCode::kNotFound && ++forgotten <= forgotten_retries) {
      cycle.reset();
      continue;
    }
    if (!r) return r.status();
    auto answer = sync_answer_from_json(*r);
    if (!answer) return answer.status();
    // It answers about the cycle it was asked to follow, never another.
    if (cycle && answer->cycle && *answer->cycle != *cycle)
      return invalid_argument("the protected site answered about cycle " + std::to_string(*answer->cycle) +
                                  " while cycle " + std::to_string(*cycle) + " was followed",
                              kAnswerHint);
    if (answer->done)
      return json{{"pit", answer->pit},
                  {"created_at", answer->created_at ? json(*answer->created_at) : json()},
                  {"cycle", answer->cycle ? json(*answer->cycle) : json()}};
    cycle = answer->cycle;
    if (on_progress) on_progress(answer->progress);
  }
}

}  // namespace evac
