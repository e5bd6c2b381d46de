// follow_peer_cycle against a scripted peer (a fake: each call's answer is
// written in advance, and each call's body is kept to check what was asked).
#include "service/peer_cycle.h"

#include <deque>
#include <vector>

#include <gtest/gtest.h>

namespace evac {
namespace {

using nlohmann::json;
using std::chrono::milliseconds;

class FakePeerSync {
 public:
  void answer(Result<json> r) { answers_.push_back(std::move(r)); }
  PeerSyncCall call() {
    return [this](const json& body, milliseconds answer_within) -> Result<json> {
      bodies.push_back(body);
      within.push_back(answer_within);
      if (answers_.empty()) return internal_error("the fake peer was called more often than scripted");
      auto r = std::move(answers_.front());
      answers_.pop_front();
      return r;
    };
  }
  std::vector<json> bodies;
  std::vector<milliseconds> within;

 private:
  std::deque<Result<json>> answers_;
};

NextWait every(milliseconds wait) {
  return [wait]() -> Result<milliseconds> { return wait; };
}

json going(std::uint64_t cycle) { return json{{"cycle", cycle}, {"done", false}}; }
json ended(std::uint64_t cycle, const std::string& pit) {
  return json{{"cycle", cycle}, {"done", true}, {"id", pit}, {"created_at", 1700000000}};
}

TEST(FollowPeerCycle, HandsOnTheProgressOfEachAnswerThatSaysStillGoing) {
  FakePeerSync peer;
  json waiting = going(7);
  waiting["progress"] = nullptr;  // queued behind another cycle
  json half = going(7);
  half["progress"] = {{"running", true}, {"cycle", 7}, {"bytes_scanned", 50}, {"bytes_total", 100}};
  peer.answer(waiting);
  peer.answer(half);
  peer.answer(ended(7, "pit-7"));
  std::vector<json> told;
  auto r = follow_peer_cycle(peer.call(), every(milliseconds(20'000)), milliseconds(15'000), 3,
                             [&](const json& progress) { told.push_back(progress); });
  ASSERT_TRUE(r.is_ok()) << r.status().to_string();
  ASSERT_EQ(told.size(), 2u) << "one per answer that said still going, none for the PIT";
  EXPECT_TRUE(told[0].is_null());
  EXPECT_EQ(told[1]["bytes_scanned"], 50);
}

TEST(FollowPeerCycle, AsksForACycleThenFollowsItUntilItsPit) {
  FakePeerSync peer;
  peer.answer(going(4));
  peer.answer(going(4));
  peer.answer(ended(4, "pit-4"));
  auto r = follow_peer_cycle(peer.call(), every(milliseconds(20'000)), milliseconds(15'000));
  ASSERT_TRUE(r.is_ok()) << r.status().to_string();
  EXPECT_EQ((*r)["pit"], "pit-4");
  EXPECT_EQ((*r)["cycle"], 4);
  EXPECT_EQ((*r)["created_at"], 1700000000);
  ASSERT_EQ(peer.bodies.size(), 3u);
  EXPECT_FALSE(peer.bodies[0].contains("cycle")) << "the first call asks for a cycle";
  EXPECT_EQ(peer.bodies[1]["cycle"], 4) << "later calls follow it, never start another";
  EXPECT_EQ(peer.bodies[2]["cycle"], 4);
  EXPECT_EQ(peer.bodies[1]["wait_ms"], 20'000);
  EXPECT_EQ(peer.within[1], milliseconds(35'000)) << "each call may take its wait and the margin";
}

// evacd at the protected site restarted mid-cycle: it no longer knows the
// cycle, and the sync it owes is asked for again.
TEST(FollowPeerCycle, ACycleThePeerForgotIsAskedForAgain) {
  FakePeerSync peer;
  peer.answer(going(7));
  peer.answer(not_found("no cycle 7 of group 'g1' was asked for here"));
  peer.answer(going(1));
  peer.answer(ended(1, "pit-9"));
  auto r = follow_peer_cycle(peer.call(), every(milliseconds(50)), milliseconds(10));
  ASSERT_TRUE(r.is_ok()) << r.status().to_string();
  EXPECT_EQ((*r)["pit"], "pit-9");
  ASSERT_EQ(peer.bodies.size(), 4u);
  EXPECT_EQ(peer.bodies[1]["cycle"], 7);
  EXPECT_FALSE(peer.bodies[2].contains("cycle")) << "a new cycle, not the forgotten one";
  EXPECT_EQ(peer.bodies[3]["cycle"], 1);
}

TEST(FollowPeerCycle, APeerThatKeepsForgettingFailsTheSyncAfterTheRetries) {
  FakePeerSync peer;
  for (int i = 0; i < 4; ++i) {
    peer.answer(going(2));
    peer.answer(not_found("no cycle 2 of group 'g1' was asked for here"));
  }
  auto r = follow_peer_cycle(peer.call(), every(milliseconds(50)), milliseconds(10), 3);
  EXPECT_EQ(r.status().code(), StatusCode::kNotFound);
  EXPECT_EQ(peer.bodies.size(), 8u) << "three new cycles asked for after the first was forgotten, then no more";
}

TEST(FollowPeerCycle, OtherErrorsEndTheFollowAtOnce) {
  {
    // A group the peer does not know, on the first call: nothing to retry.
    FakePeerSync peer;
    peer.answer(not_found("no group 'g1'"));
    auto r = follow_peer_cycle(peer.call(), every(milliseconds(50)), milliseconds(10));
    EXPECT_EQ(r.status().code(), StatusCode::kNotFound);
    EXPECT_EQ(peer.bodies.size(), 1u);
  }
  {
    // The cycle itself failed at the protected site.
    FakePeerSync peer;
    peer.answer(going(3));
    peer.answer(failed_precondition("the disk of web01 could not be read"));
    auto r = follow_peer_cycle(peer.call(), every(milliseconds(50)), milliseconds(10));
    EXPECT_EQ(r.status().code(), StatusCode::kFailedPrecondition);
    EXPECT_EQ(r.status().message(), "the disk of web01 could not be read");
    EXPECT_EQ(peer.bodies.size(), 2u);
  }
}

TEST(FollowPeerCycle, TheStepRunningOutOfTimeEndsTheFollow) {
  FakePeerSync peer;
  peer.answer(going(5));
  int waits = 0;
  NextWait two_waits = [&]() -> Result<milliseconds> {
    if (++waits > 1) return failed_precondition("step 'Synchronize storage' ran out of its 60 s");
    return milliseconds(20);
  };
  auto r = follow_peer_cycle(peer.call(), two_waits, milliseconds(10));
  EXPECT_EQ(r.status().code(), StatusCode::kFailedPrecondition);
  EXPECT_EQ(peer.bodies.size(), 1u) << "no call once the step has no time left";
}

// Every answer is read typed and bounded before it is followed: a cycle
// that is no number (nlohmann's value() threw on it, in a run's thread), a
// done that is no boolean, a PIT without its id, progress that is no
// object, or an answer about another cycle than the one followed, ends the
// sync with a clear error instead.
TEST(FollowPeerCycle, AnAnswerOfTheWrongShapeEndsTheFollowWithAClearError) {
  struct Case {
    json answer;
    std::string says;
  };
  json no_id = ended(4, "pit-4");
  no_id.erase("id");
  json progress_text = going(4);
  progress_text["progress"] = "half way";
  const std::vector<Case> cases = {
      {json{{"cycle", "4"}, {"done", false}}, "field 'cycle' of the protected site's answer to a sync must be a whole number"},
      {json{{"cycle", -4}, {"done", false}}, "field 'cycle' of the protected site's answer to a sync is -4, out of range"},
      {json{{"cycle", 4}, {"done", "no"}}, "field 'done' of the protected site's answer to a sync must be"},
      {json{{"done", false}}, "field 'cycle' of the protected site's answer to a sync is required"},
      {no_id, "field 'id' of the protected site's answer to a sync is required"},
      {progress_text, "field 'progress' of the protected site's answer to a sync must be an object"},
      {json::array({4}), "the protected site's answer to a sync must be a JSON object"},
  };
  for (const auto& c : cases) {
    FakePeerSync peer;
    peer.answer(c.answer);
    auto r = follow_peer_cycle(peer.call(), every(milliseconds(50)), milliseconds(10));
    ASSERT_FALSE(r.is_ok()) << c.answer.dump();
    EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument) << c.answer.dump();
    EXPECT_NE(r.status().message().find(c.says), std::string::npos) << r.status().message();
    EXPECT_NE(r.status().hint().find("no evacd of this version sends"), std::string::npos) << r.status().hint();
    EXPECT_EQ(peer.bodies.size(), 1u) << "not asked again";
  }
  // Following cycle 4, an answer about cycle 5 is not taken for it.
  FakePeerSync peer;
  peer.answer(going(4));
  peer.answer(ended(5, "pit-5"));
  auto r = follow_peer_cycle(peer.call(), every(milliseconds(50)), milliseconds(10));
  EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(r.status().message(), "the protected site answered about cycle 5 while cycle 4 was followed");
}

}  // namespace
}  // namespace evac
