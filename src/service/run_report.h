// Run reports: what an auditor reads to see that a recovery (or a test of
// one) happened as the plan said, and how long it took.
//
// One JSON document is the report; CSV and HTML are renderings of it:
//   run       who ran which operation of which plan, when, how it ended
//   rto       achieved recovery time: from the run's first step to the end
//             of the last power-on, heartbeat or check step that passed
//   rpo       per group, the point in time recovered and its age when the
//             run started (a migration's final sync comes after the VMs
//             stopped: nothing written is lost)
//   steps     every step with its times, attempts, result and error
//   plan      the plan as it was when the run started
//   ip_customization
//             with IP rules: per VM, the addresses moved, or why none were
//             (the step failed or did not run, the plan leaves it off)
#pragma once

#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "engine/run_engine.h"
#include "store/store.h"

namespace evac {

nlohmann::json run_report(const RunRow& run, const std::vector<engine::Step>& steps);
// The ip_customization section from the plan document and the steps.
nlohmann::json ip_customization(const nlohmann::json& plan, const std::vector<engine::Step>& steps);
// One row per step, with the run's facts repeated on each (a spreadsheet
// filters them without a join).
std::string report_csv(const nlohmann::json& report);
// A self-contained page (inline style, no scripts).
std::string report_html(const nlohmann::json& report);

}  // namespace evac
