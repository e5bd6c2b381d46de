// Starting runs of recovery plans (evac plan test|...|failback) and
// following, acknowledging, reporting, cancelling and resuming them (evac run).
#include "cli/commands/run_commands.h"

#include <CLI/CLI.hpp>

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <map>
#include <memory>
#include <set>
#include <thread>

#include "cli/apply.h"
#include "cli/progress.h"

namespace evac::cli {
namespace {
using nlohmann::json;

std::string format_ms(const json& ms) { return ms.is_number() ? format_time(ms.get<std::int64_t>() / 1000) : "-"; }

std::string step_duration(const json& s) {
  if (!s["started_at_ms"].is_number() || !s["ended_at_ms"].is_number()) return "";
  double secs = static_cast<double>(s["ended_at_ms"].get<std::int64_t>() - s["started_at_ms"].get<std::int64_t>()) / 1000.0;
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1f s", secs);
  return buf;
}

// A run as an operator reads it: what, who, how it stands, then each step.
void print_run(const Globals& g, const json& j) {
  if (g.format() != Format::kTable) {
    print_object(std::cout, j, g.format());
    return;
  }
  print_object(std::cout, j, Format::kTable,
               {field("RUN", "id"), field("PLAN", "plan"), field("OPERATION", "operation"), field("STATE", "state"),
                field("STARTED-BY", "started_by"), time_column("STARTED", "created_at"), time_column("ENDED", "ended_at"),
                Column{"PITS", [](const json& r) {
                         std::string out;
                         for (const auto& grp : r.value("groups", json::array()))
                           if (!grp.value("pit", "").empty())
                             out += (out.empty() ? "" : ", ") + grp.value("name", "") + ": " + grp.value("pit", "");
                         return out.empty() ? std::string("-") : out;
                       }},
                field("ERROR", "error")});
  std::cout << "\n";
  print_list(std::cout, j.value("steps", json::array()), Format::kTable,
             {field("#", "idx"), field("STEP", "name"), Column{"STATE", step_state},
              Column{"STARTED", [](const json& s) { return format_ms(s["started_at_ms"]); }},
              Column{"TOOK", step_duration}, field("ERROR", "error")});
}

// Follows a run until it ends: one line per step that starts, ends or
// waits, then the outcome. Exit status: 0 if the run succeeded.
int follow_run(const Globals& g, const std::string& id) {
  auto client = connect(g, std::chrono::seconds(30));
  if (!client)
    return report_error_or_usage(client.status());
  std::map<int, std::string> seen;  // step -> state last printed
  std::set<int> told_overdue;
  // A running step with progress (a reprotect's resync) gets a line every
  // 30 s after its first 30, so a short one says nothing more.
  std::map<int, std::chrono::steady_clock::time_point> progress_told;
  int failures = 0;
  bool told_waiting = false;
  for (;;) {
    auto run = client->call("GET", "/api/v1/runs/" + path_part(id), std::nullopt);
    if (!run) {
      // evacd restarting (or the link) is no reason to stop following.
      if (run.status().code() != StatusCode::kUnavailable || ++failures > 60) return report(run.status());
      std::this_thread::sleep_for(std::chrono::seconds(1));
      continue;
    }
    failures = 0;
    for (const auto& s : (*run)["steps"]) {
      int idx = s["idx"];
      std::string state = s["state"];
      if (state == "running" && s.contains("overdue_s") && told_overdue.insert(idx).second)
        std::cout << "    step " << idx << " (" << s.value("name", "") << ") is past its " << s.value("timeout_s", 0)
                  << " s timeout: a call to " << (s.value("resource", "").empty() ? "a provider or peer" : s.value("resource", ""))
                  << " has not returned, and evac cannot interrupt it; check that side (libvirtd, the peer's evacd)"
                  << std::endl;
      if (state == "running" && s.contains("progress")) {
        const auto now = std::chrono::steady_clock::now();
        auto told = progress_told.find(idx);
        if (told == progress_told.end() || now - told->second >= std::chrono::seconds(30)) {
          if (told != progress_told.end())
            std::cout << "    step " << idx << ": " << format_sync_progress(s["progress"]) << std::endl;
          progress_told[idx] = now;
        }
      }
      if (state == "pending" || seen[idx] == state) continue;
      seen[idx] = state;
      std::string line = format_ms(state == "running" || state == "waiting" ? s["started_at_ms"] : s["ended_at_ms"]) + "  " + state;
      line.resize(std::max<std::size_t>(line.size() + 1, 33), ' ');
      line += s.value("name", "");
      if (!step_duration(s).empty() && state != "running") line += " (" + step_duration(s) + ")";
      std::cout << line << "\n";
      if (state == "failed" && !s.value("error", "").empty()) std::cout << "    error: " << s.value("error", "") << "\n";
      std::cout << std::flush;
    }
    std::string state = (*run)["state"];
    if (state == "waiting" && !told_waiting) {
      std::cout << "run " << id << " waits for an operator: `evac run ack " << id << "` when done" << std::endl;
      told_waiting = true;
    }
    if (state != "waiting") told_waiting = false;
    if (state == "succeeded" || state == "failed" || state == "cancelled") {
      std::cout << "run " << id << " (" << (*run)["operation"].get<std::string>() << " of plan '"
                << (*run)["plan"].get<std::string>() << "') " << state << "\n";
      if (state == "failed") {
        std::cerr << "error: " << (*run).value("error", "a step failed") << "\n"
                  << "hint: fix the cause, then `evac run resume " << id << "`, or `evac run cancel " << id << "`\n";
        return kFailed;
      }
      return state == "succeeded" ? kOk : kFailed;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(500));
  }
}

}  // namespace

void add_run_commands(CLI::App& app, Globals& g, int& rc, CLI::App* plan) {
  // evac plan test|cleanup|migrate|failover|reprotect|failback NAME
  struct Op {
    const char* name;
    const char* help;
    bool destructive;
  };
  static const Op ops[] = {
      {"test", "Recover the plan's VMs as test copies on isolated test networks; production is untouched", false},
      {"cleanup", "Remove everything a test left: test VMs and test copies", false},
      {"migrate", "Planned migration: sync, shut down at the protected site, final sync, recover here (no data loss)", true},
      {"failover", "Disaster recovery with the protected site gone: recover the newest (or --pit) point in time", true},
      {"reprotect", "After a recovery, here: the former protected site's copies become placeholders, replication runs back to it (only changed blocks)", false},
      {"failback", "At the original site, after a reprotect: migrate back (no data loss), then reprotect", true},
  };
  static std::string op_plan, op_confirm, op_pit;
  static bool op_follow = false;
  for (const auto& op : ops) {
    auto* sub = plan->add_subcommand(op.name, op.help);
    sub->add_option("name", op_plan, "Plan name")->required();
    sub->add_flag("--follow", op_follow, "Show each step as it runs, until the run ends");
    if (op.destructive) sub->add_option("--confirm", op_confirm, "The plan's name again: this changes which site runs the VMs")->required();
    if (std::string(op.name) == "test" || std::string(op.name) == "failover")
      sub->add_option("--pit", op_pit, "Recover this point in time instead of the newest");
    std::string operation = op.name;
    sub->callback([&g, &rc, operation] {
      json body = {{"operation", operation}};
      if (!op_confirm.empty()) body["confirm"] = op_confirm;
      if (!op_pit.empty()) body["pit"] = op_pit;
      std::string id;
      rc = call_and_print(g, "POST", "/api/v1/plans/" + path_part(op_plan) + "/runs", body, [&](const json& j) {
        id = j.value("id", "");
        if (op_follow && g.format() == Format::kTable) {
          std::cout << "run " << id << ": " << operation << " of plan '" << op_plan << "', " << j.value("steps", json::array()).size()
                    << " steps" << std::endl;
          return;
        }
        if (g.format() != Format::kTable) return print_object(std::cout, j, g.format());
        std::cout << "started run " << id << ": " << operation << " of plan '" << op_plan << "', "
                  << j.value("steps", json::array()).size() << " steps\n"
                  << "follow it with `evac run show " << id << " --follow`\n";
      });
      if (rc == kOk && op_follow) rc = follow_run(g, id);
    });
  }

  auto* run = app.add_subcommand("run", "Runs of recovery plans: follow, acknowledge prompts, cancel, resume");
  run->require_subcommand(1);
  static std::string list_plan;
  auto* list = run->add_subcommand("list", "List runs, newest first");
  list->add_option("--plan", list_plan, "Only this plan's runs");
  list->callback([&] {
    rc = call_and_print(g, "GET", "/api/v1/runs" + (list_plan.empty() ? std::string() : "?plan=" + path_part(list_plan)), std::nullopt,
                        as_list(g, {field("RUN", "id"), field("PLAN", "plan"), field("OPERATION", "operation"),
                                    field("STATE", "state"), field("STARTED-BY", "started_by"),
                                    time_column("STARTED", "created_at"), time_column("ENDED", "ended_at")}));
  });
  static std::string show_id;
  static bool show_follow = false;
  auto* show = run->add_subcommand("show", "Show a run and its steps");
  show->add_option("id", show_id, "Run id")->required();
  show->add_flag("--follow", show_follow, "Print each step as it starts and ends, until the run ends");
  show->callback([&] {
    if (show_follow && g.format() == Format::kTable) {
      rc = follow_run(g, show_id);
      return;
    }
    rc = call_and_print(g, "GET", "/api/v1/runs/" + path_part(show_id), std::nullopt, [&](const json& j) { print_run(g, j); });
  });
  static std::string act_id;
  static int ack_step = -1;
  auto* ack = run->add_subcommand("ack", "Acknowledge the prompt a run waits at, so it goes on");
  ack->add_option("id", act_id, "Run id")->required();
  ack->add_option("--step", ack_step, "The prompt's step number, when several wait");
  ack->callback([&] {
    json body = json::object();
    if (ack_step >= 0) body["step"] = ack_step;
    rc = call_and_print(g, "POST", "/api/v1/runs/" + path_part(act_id) + "/ack", body,
                        as_message(g, [](const json& j) { return "acknowledged; run " + j.value("acknowledged", "") + " goes on"; }));
  });
  static std::string report_id, report_format = "html", report_out;
  auto* report = run->add_subcommand("report", "A run's report: every step, achieved RTO and RPO, who ran it, the plan");
  report->add_option("id", report_id, "Run id")->required();
  report->add_option("--format", report_format, "html (a page an auditor reads), json or csv")
      ->check(CLI::IsMember({"html", "json", "csv"}))
      ->capture_default_str();
  report->add_option("--out", report_out, "Write it to this file instead of standard output");
  report->callback([&] {
    auto client = connect(g);
    if (!client) {
      rc = report_error_or_usage(client.status());
      return;
    }
    auto body = client->call_bytes("GET", "/api/v1/runs/" + path_part(report_id) + "/report?format=" + report_format, "");
    if (!body) {
      rc = evac::cli::report(body.status());
      return;
    }
    std::string text = *body;
    if (report_format == "json") text = json::parse(text, nullptr, false).dump(2) + "\n";
    if (report_out.empty()) {
      std::cout << text;
    } else {
      std::ofstream out(report_out, std::ios::binary | std::ios::trunc);
      out << text;
      if (!out) {
        rc = evac::cli::report(invalid_argument("cannot write " + report_out, "check the folder exists and is writable"));
        return;
      }
      std::cout << "wrote the " << report_format << " report of run " << report_id << " to " << report_out << "\n";
    }
    rc = kOk;
  });
  for (const char* verb : {"cancel", "resume"}) {
    auto* sub = run->add_subcommand(verb, std::string(verb) == "cancel" ? "Start no more steps of a run (those running finish)"
                                                                         : "Retry a failed run's failed steps and go on");
    sub->add_option("id", act_id, "Run id")->required();
    std::string v = verb;
    sub->callback([&g, &rc, v] {
      rc = call_and_print(g, "POST", "/api/v1/runs/" + path_part(act_id) + "/" + v, json::object(),
                          as_message(g, [v](const json&) { return "run " + act_id + (v == "cancel" ? " cancelled" : " resumed"); }));
    });
  }
}

}  // namespace evac::cli
