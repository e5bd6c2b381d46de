// The wire of evac's external adapter protocol (docs/adapters.md): what
// evac writes on an adapter's stdin, and the strict decoding of what the
// adapter answers on stdout and reports on stderr. An adapter is another
// program: every byte it prints is hostile until decoded here.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/replication_adapter.h"
#include "core/status.h"

namespace evac::external {

inline constexpr int kProtocolVersion = 1;

// Every operation of protocol 1, in the order docs/adapters.md lists them.
inline constexpr const char* kOperations[] = {
    "capabilities", "discover",         "snapshot",       "ship",           "await_pit",
    "expire_pits",  "list_pits",        "create_test_copy", "drop_test_copy", "list_test_copies",
    "prepare_failover", "release_source", "check_read_only_source", "failover", "prepare_reverse",
    "release_replicas", "verify"};
bool is_operation(std::string_view name);

// Where the adapter runs: the envelope's "site".
struct InvocationSite {
  std::string name;       // this site's name
  std::string state_dir;  // a folder of evacd's state the adapter may keep its own state in
};

// The request document: {"protocol", "operation", "kind", "site":
// {"name", "state_dir"}, "settings", "request"}.
nlohmann::json envelope(std::string_view operation, std::string_view kind, const InvocationSite& site,
                        const nlohmann::json& settings, nlohmann::json request);

// Decodes an adapter's stdout: {"protocol": 1, "result": {...}} is the
// result object; {"protocol": 1, "error": {"code", "message", "action"}}
// becomes that Status. Anything else (not JSON, another protocol, both or
// neither, unknown keys) is kFailedPrecondition naming what was wrong.
Result<nlohmann::json> decode_answer(std::string_view stdout_text);

// A stderr line: {"progress": {...}} gives SyncProgress, {"log": {"level",
// "message"}} a log line; anything else is plain text.
struct StderrReport {
  std::optional<SyncProgress> progress;
  std::optional<std::pair<std::string, std::string>> log;  // level, message
};
StderrReport decode_stderr_line(std::string_view line);

// An answer that decoded as JSON but not as the operation's result: the
// adapter's fault, said so, with the cause (which names the field).
Status malformed_answer(const Status& cause);

nlohmann::json to_json(const ReplicationGroupSpec& spec);
nlohmann::json to_json(const TestCopy& copy);

// Result decoders: each refuses unknown keys and names the field at fault.
Result<ReplicationCapabilities> capabilities_from_json(const nlohmann::json& result);
// discover's devices, checked against `spec` (every one names a disk of a VM
// of the group, none twice) and completed from it (name, source, format).
Result<std::vector<ReplicatedDevice>> devices_from_json(const nlohmann::json& result, const ReplicationGroupSpec& spec);
Result<TestCopy> test_copy_from_json(const nlohmann::json& j);
Result<std::vector<TestCopy>> test_copies_from_json(const nlohmann::json& result);
Result<ReleasedReplicas> released_from_json(const nlohmann::json& result);
Result<PitVerification> verification_from_json(const nlohmann::json& result);
Result<SyncProgress> progress_from_json(const nlohmann::json& j);

// await_pit's answer: the PIT once complete at the recovery site, progress
// until then.
struct AwaitAnswer {
  bool complete = false;
  std::optional<PointInTime> pit;
  std::optional<SyncProgress> progress;
};
Result<AwaitAnswer> await_answer_from_json(const nlohmann::json& result);

}  // namespace evac::external
