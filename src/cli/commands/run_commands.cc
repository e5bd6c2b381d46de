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

// evac plan test|cleanup|migrate|failover|reprotect|failback NAME
struct Op {
  const char* name;
  const char* help;
  bool destructive;
};
constexpr Op kOps[] = {
    {"test", "Recover the plan's VMs as test copies on isolated test networks; production is untouched", false},
    {"cleanup", "Remove everything a test left: test VMs and test copies", false},
    {"migrate", "Planned migration: sync, shut down at the protected site, final sync, recover here (no data loss)", true},
    {"failover", "Disaster recovery with the protected site gone: recover the newest (or --pit) point in time", true},
    {"reprotect", "After a recovery, here: the former protected site's copies become placeholders, replication runs back to it (only changed blocks)", false},
    {"failback", "At the original site, after a reprotect: migrate back (no data loss), then reprotect", true},
};

struct RunStartOptions {
  std::string plan, confirm, pit;
  bool follow = false;
};

struct RunListOptions {
  std::string plan;
};

struct RunShowOptions {
  std::string id;
  bool follow = false;
};

struct RunAckOptions {
  std::string id;
  int step = -1;
};

struct RunReportOptions {
  std::string id, format = "html", out;
};

struct RunIdOptions {  // cancel, resume
  std::string id;
};

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

void add_run_start(CLI::App& plan, const Op& op, Globals& g, int& rc) {
  auto o = std::make_shared<RunStartOptions>();
  auto* sub = plan.add_subcommand(op.name, op.help);
  sub->add_option("name", o->plan, "Plan name")->required();
  sub->add_flag("--follow", o->follow, "Show each step as it runs, until the run ends");
  if (op.destructive) sub->add_option("--confirm", o->confirm, "The plan's name again: this changes which site runs the VMs")->required();
  if (std::string(op.name) == "test" || std::string(op.name) == "failover")
    sub->add_option("--pit", o->pit, "Recover this point in time instead of the newest");
  std::string operation = op.name;
  sub->callback([&g, &rc, o, operation] {
    json body = {{"operation", operation}};
    if (!o->confirm.empty()) body["confirm"] = o->confirm;
    if (!o->pit.empty()) body["pit"] = o->pit;
    std::string id;
    rc = call_and_print(g, "POST", "/api/v1/plans/" + path_part(o->plan) + "/runs", body, [&](const json& j) {
      id = j.value("id", "");
      if (o->follow && g.format() == Format::kTable) {
        std::cout << "run " << id << ": " << operation << " of plan '" << o->plan << "', " << j.value("steps", json::array()).size()
                  << " steps" << std::endl;
        return;
      }
      if (g.format() != Format::kTable) return print_object(std::cout, j, g.format());
      std::cout << "started run " << id << ": " << operation << " of plan '" << o->plan << "', "
                << j.value("steps", json::array()).size() << " steps\n"
                << "follow it with `evac run show " << id << " --follow`\n";
    });
    if (rc == kOk && o->follow) rc = follow_run(g, id);
  });
}

void add_run_list(CLI::App& run, Globals& g, int& rc) {
  auto o = std::make_shared<RunListOptions>();
  auto* list = run.add_subcommand("list", "List runs, newest first");
  list->add_option("--plan", o->plan, "Only this plan's runs");
  list->callback([&g, &rc, o] {
    rc = call_and_print(g, "GET", "/api/v1/runs" + (o->plan.empty() ? std::string() : "?plan=" + path_part(o->plan)), std::nullopt,
                        as_list(g, {field("RUN", "id"), field("PLAN", "plan"), field("OPERATION", "operation"),
                                    field("STATE", "state"), field("STARTED-BY", "started_by"),
                                    time_column("STARTED", "created_at"), time_column("ENDED", "ended_at")}));
  });
}

void add_run_show(CLI::App& run, Globals& g, int& rc) {
  auto o = std::make_shared<RunShowOptions>();
  auto* show = run.add_subcommand("show", "Show a run and its steps");
  show->add_option("id", o->id, "Run id")->required();
  show->add_flag("--follow", o->follow, "Print each step as it starts and ends, until the run ends");
  show->callback([&g, &rc, o] {
    if (o->follow && g.format() == Format::kTable) {
      rc = follow_run(g, o->id);
      return;
    }
    rc = call_and_print(g, "GET", "/api/v1/runs/" + path_part(o->id), std::nullopt, [&](const json& j) { print_run(g, j); });
  });
}

void add_run_ack(CLI::App& run, Globals& g, int& rc) {
  auto o = std::make_shared<RunAckOptions>();
  auto* ack = run.add_subcommand("ack", "Acknowledge the prompt a run waits at, so it goes on");
  ack->add_option("id", o->id, "Run id")->required();
  ack->add_option("--step", o->step, "The prompt's step number, when several wait");
  ack->callback([&g, &rc, o] {
    json body = json::object();
    if (o->step >= 0) body["step"] = o->step;
    rc = call_and_print(g, "POST", "/api/v1/runs/" + path_part(o->id) + "/ack", body,
                        as_message(g, [](const json& j) { return "acknowledged; run " + j.value("acknowledged", "") + " goes on"; }));
  });
}

void add_run_report(CLI::App& run, Globals& g, int& rc) {
  auto o = std::make_shared<RunReportOptions>();
  auto* report_cmd = run.add_subcommand("report", "A run's report: every step, achieved RTO and RPO, who ran it, the plan");
  report_cmd->add_option("id", o->id, "Run id")->required();
  report_cmd->add_option("--format", o->format, "html (a page an auditor reads), json or csv")
      ->check(CLI::IsMember({"html", "json", "csv"}))
      ->capture_default_str();
  report_cmd->add_option("--out", o->out, "Write it to this file instead of standard output");
  report_cmd->callback([&g, &rc, o] {
    auto client = connect(g);
    if (!client) {
      rc = report_error_or_usage(client.status());
      return;
    }
    auto body = client->call_bytes("GET", "/api/v1/runs/" + path_part(o->id) + "/report?format=" + o->format, "");
    if (!body) {
      rc = report(body.status());
      return;
    }
    std::string text = *body;
    if (o->format == "json") text = json::parse(text, nullptr, false).dump(2) + "\n";
    if (o->out.empty()) {
      std::cout << text;
    } else {
      std::ofstream out(o->out, std::ios::binary | std::ios::trunc);
      out << text;
      if (!out) {
        rc = report(invalid_argument("cannot write " + o->out, "check the folder exists and is writable"));
        return;
      }
      std::cout << "wrote the " << o->format << " report of run " << o->id << " to " << o->out << "\n";
    }
    rc = kOk;
  });
}

void add_run_control(CLI::App& run, const std::string& verb, Globals& g, int& rc) {
  auto o = std::make_shared<RunIdOptions>();
  auto* sub = run.add_subcommand(verb, verb == "cancel" ? "Start no more steps of a run (those running finish)"
                                                        : "Retry a failed run's failed steps and go on");
  sub->add_option("id", o->id, "Run id")->required();
  sub->callback([&g, &rc, o, verb] {
    rc = call_and_print(g, "POST", "/api/v1/runs/" + path_part(o->id) + "/" + verb, json::object(),
                        as_message(g, [o, verb](const json&) { return "run " + o->id + (verb == "cancel" ? " cancelled" : " resumed"); }));
  });
}

}  // namespace

void add_run_commands(CLI::App& app, Globals& g, int& rc, CLI::App* plan) {
  for (const auto& op : kOps) add_run_start(*plan, op, g, rc);

  auto* run = app.add_subcommand("run", "Runs of recovery plans: follow, acknowledge prompts, cancel, resume");
  run->require_subcommand(1);
  add_run_list(*run, g, rc);
  add_run_show(*run, g, rc);
  add_run_ack(*run, g, rc);
  add_run_report(*run, g, rc);
  for (const char* verb : {"cancel", "resume"}) add_run_control(*run, verb, g, rc);
}

}  // namespace evac::cli
