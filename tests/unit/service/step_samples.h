// A run's step as the engine keeps it, for the run report's and the run
// service's cases.
#pragma once

#include <cstdint>
#include <string>
#include <utility>

#include "engine/run_engine.h"

namespace evac {

inline engine::Step step(int idx, std::string name, std::string kind, std::int64_t start_ms, std::int64_t end_ms,
                         engine::StepState state = engine::StepState::kSucceeded) {
  engine::Step s;
  s.idx = idx;
  s.spec.name = std::move(name);
  s.spec.kind = engine::step_kind_from_name(kind).value();
  s.state = state;
  s.attempts = 1;
  s.started_at_ms = start_ms;
  s.ended_at_ms = end_ms;
  return s;
}

}  // namespace evac
