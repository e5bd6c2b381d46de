// The adapter's side of evac's external adapter protocol (docs/adapters.md),
// for adapters written in C++ (evac-rbd-adapter): the request read
// strictly from stdin, one answer on stdout, progress lines on stderr.
#pragma once

#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "core/replication_adapter.h"
#include "core/status.h"

namespace evac::external {

struct Invocation {
  std::string operation;
  std::string kind;
  std::string site_name;
  std::string state_dir;
  nlohmann::json settings;
  nlohmann::json request;
};

// The envelope, checked: protocol 1, a known operation, every field typed.
Result<Invocation> read_invocation(std::string_view text);
// The one line an adapter prints on stdout.
std::string result_answer(const nlohmann::json& result);
std::string error_answer(const Status& status);
// A progress line for stderr.
std::string progress_line(const SyncProgress& progress);

}  // namespace evac::external
