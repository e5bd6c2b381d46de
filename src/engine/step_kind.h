// What a run's step does, as one closed set: every kind a plan compiles to,
// with the facts the engine, the compiler, the runner and the report need
// about it in one table (step_kind.cc), so adding a kind is one row there
// and one handler, not a string spelled in five files.
//
// A kind's name is what the store keeps (run_step_specs.kind) and what the
// API and reports show; names never change once released, or stored runs
// could not be resumed.
#pragma once

#include <optional>
#include <string_view>

namespace evac::engine {

enum class StepKind {
  // The engine's own: no runner is called.
  kPrompt,   // waits for an operator's ack
  kBarrier,  // a point in the graph ("Priority 1 VMs are up")
  // Every operation starts here.
  kReadiness,
  // test and cleanup
  kCreateTestCopy,
  kRegisterTestVm,
  kRemoveTestVm,
  kDropTestCopies,
  // migrate and failover, storage and ownership
  kSyncProtected,
  kShutdownProtected,
  kHandover,
  kPromote,
  kTakeOwnership,
  kRecoverVm,
  // the power-on phase, per VM
  kPowerOn,
  kWaitForGuest,
  kCustomizeIp,
  kCheck,
  kHostCommand,
  kGuestCommand,
  // after a recovery
  kFlattenDisks,
  kReleaseReplicas,
  kReprotectPeer,
  kProtectHere,
  kSyncReverse,
};

struct StepKindInfo {
  StepKind kind;
  std::string_view name;  // stored and shown: "power_on"
  // The engine's bound on the step, every attempt included, in seconds; 0:
  // none of its own (the step bounds itself: a cycle, a command with the
  // plan's timeout, an operator's prompt). kWaitForGuest's is its plan
  // timeout plus this (see default_step_timeout_s).
  int default_timeout_s;
  // Calls the compute provider of its VM: such steps hold the provider
  // (EngineOptions::per_resource_limit) while they run.
  bool calls_provider;
  // Its success means a VM is back: a run's RTO ends with the last of them.
  bool ends_rto;
};

const StepKindInfo& step_kind_info(StepKind kind);
std::string_view step_kind_name(StepKind kind);
// nullopt for a name no kind has (a store written by a newer evac, or
// damaged): the caller refuses it, saying which.
std::optional<StepKind> step_kind_from_name(std::string_view name);

}  // namespace evac::engine
