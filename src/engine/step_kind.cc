#include "engine/step_kind.h"

#include <array>
#include <cstddef>

namespace evac::engine {
namespace {

// Timeouts: a provider or peer call (copies, VMs, power, ownership) gets
// 600 s; what bounds itself gets 0.
constexpr std::array kKinds = {
    //           kind                          name                  timeout provider ends_rto
    StepKindInfo{StepKind::kPrompt,            "prompt",             0,   false, false},
    StepKindInfo{StepKind::kBarrier,           "barrier",            0,   false, false},
    StepKindInfo{StepKind::kReadiness,         "readiness",          300, false, false},
    StepKindInfo{StepKind::kCreateTestCopy,    "create_test_copy",   600, false, false},
    StepKindInfo{StepKind::kRegisterTestVm,    "register_test_vm",   600, true,  false},
    StepKindInfo{StepKind::kRemoveTestVm,      "remove_test_vm",     600, true,  false},
    StepKindInfo{StepKind::kDropTestCopies,    "drop_test_copies",   600, false, false},
    StepKindInfo{StepKind::kSyncProtected,     "sync_protected",     0,   false, false},
    // A graceful shutdown waits up to 300 s within it.
    StepKindInfo{StepKind::kShutdownProtected, "shutdown_protected", 900, false, false},
    StepKindInfo{StepKind::kHandover,          "handover",           600, false, false},
    StepKindInfo{StepKind::kPromote,           "promote",            600, false, false},
    StepKindInfo{StepKind::kTakeOwnership,     "take_ownership",     600, false, false},
    StepKindInfo{StepKind::kRecoverVm,         "recover_vm",         600, true,  false},
    StepKindInfo{StepKind::kPowerOn,           "power_on",           600, true,  true},
    StepKindInfo{StepKind::kWaitForGuest,      "wait_for_guest",     60,  true,  true},
    StepKindInfo{StepKind::kCustomizeIp,       "customize_ip",       120, true,  false},
    StepKindInfo{StepKind::kCheck,             "check",              0,   true,  true},
    StepKindInfo{StepKind::kHostCommand,       "host_command",       0,   false, false},
    StepKindInfo{StepKind::kGuestCommand,      "guest_command",      0,   true,  false},
    StepKindInfo{StepKind::kFlattenDisks,      "flatten_disks",      0,   false, false},
    StepKindInfo{StepKind::kReleaseReplicas,   "release_replicas",   0,   false, false},
    StepKindInfo{StepKind::kReprotectPeer,     "reprotect_peer",     600, false, false},
    StepKindInfo{StepKind::kProtectHere,       "protect_here",       600, false, false},
    StepKindInfo{StepKind::kSyncReverse,       "sync_reverse",       0,   false, false},
};

// The table is indexed by the enum: a row out of place is a build error.
constexpr bool rows_in_enum_order() {
  for (std::size_t i = 0; i < kKinds.size(); ++i)
    if (static_cast<std::size_t>(kKinds[i].kind) != i) return false;
  return true;
}
static_assert(rows_in_enum_order(), "kKinds rows must follow StepKind's order");
static_assert(kKinds.size() == static_cast<std::size_t>(StepKind::kSyncReverse) + 1, "a StepKind has no row");

}  // namespace

const StepKindInfo& step_kind_info(StepKind kind) { return kKinds[static_cast<std::size_t>(kind)]; }

std::string_view step_kind_name(StepKind kind) { return step_kind_info(kind).name; }

std::optional<StepKind> step_kind_from_name(std::string_view name) {
  for (const auto& k : kKinds)
    if (k.name == name) return k.kind;
  return std::nullopt;
}

}  // namespace evac::engine
