// evac group: protection groups, how their replication stands, and their
// points in time at the recovery site.
#include "cli/commands/group_commands.h"

#include <CLI/CLI.hpp>

#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <iostream>
#include <memory>
#include <thread>

#include "cli/apply.h"
#include "cli/progress.h"
#include "core/duration.h"

namespace evac::cli {
namespace {
using nlohmann::json;

struct GroupCreateOptions {
  std::string name, rpo = "15m", peer, max_rate, replication = "builtin";
  std::vector<std::string> vms;
  int keep_pits = 24, keep_hourly = 0, keep_daily = 0;
};

struct GroupNameOptions {  // show, pits
  std::string name;
};

struct GroupVmOptions {  // add-vm, remove-vm
  std::string group, vm;
};

struct GroupSyncOptions {
  std::string name;
  bool follow = false;
};

struct GroupSetOptions {
  std::string name, max_rate;
  std::optional<int> keep_pits, keep_hourly, keep_daily;
};

struct GroupVerifyOptions {
  std::string name, pit;
};

struct GroupDeleteOptions {
  std::string name;
  bool force = false;
};

const std::vector<Column> kGroupColumns = {
    field("NAME", "name"),
    field("PROTECTED", "protected_site"),
    field("RECOVERY", "recovery_site"),
    Column{"STANDING",
           [](const json& x) {
             // protected, recovered_here, fenced_here, live_elsewhere: where its live copy runs.
             const json& s = x.value("standing", json::object());
             std::string state = s.value("state", "");
             if (state == "protected" || state.empty()) return state;
             return state + " (live at " + s.value("live_at", "?") + ")";
           }},
    field("RPO", "rpo"),
    field("KEEP-PITS", "keep_pits"),
    field("VMS", "vms")};

std::string sync_outcome(const json& j) {
  std::string out = "point in time " + j.value("id", "") + " of group '" + j.value("group", "") + "' complete: " +
                    std::to_string(j["disks"].size()) + " disks, " +
                    std::to_string(j.value("bytes_sent", std::uint64_t{0})) + " bytes sent";
  if (const auto w = j.find("warnings"); w != j.end() && w->is_array())
    for (const auto& text : *w)
      if (text.is_string()) out += "\nwarning: " + text.get<std::string>();
  return out;
}

void print_group(const Globals& g, const json& j) {
  std::vector<Column> columns = kGroupColumns;
  columns.push_back(Column{"THINNING", [](const json& x) {
                             int hourly = x.value("keep_hourly", 0), daily = x.value("keep_daily", 0);
                             if (hourly == 0 && daily == 0) return std::string("none (the newest KEEP-PITS only)");
                             return "plus the newest of each of the last " + std::to_string(hourly) + " hours and " +
                                    std::to_string(daily) + " days";
                           }});
  columns.push_back(field("MAX-RATE", "max_rate"));
  columns.push_back(field("ENGINE", "replication_engine"));
  columns.push_back(field("WHERE", "standing.text"));
  if (j.contains("replication") && !j["replication"].value("active", true)) {
    columns.push_back(Column{"REPLICATION", [](const json& x) {
                               return "none here: " + x["replication"].value("inactive_reason", std::string());
                             }});
  } else if (j.contains("replication")) {
    columns.push_back(Column{"LAST-PIT", [](const json& x) {
                               const json& r = x["replication"];
                               if (r["newest_pit"].is_null()) return std::string("none yet: run `evac group sync`");
                               std::string held = r["pits"].is_number()
                                                      ? std::to_string(r["pits"].get<std::size_t>()) + " retained"
                                                      : "count unknown: recovery site unreachable";
                               return format_time(r["newest_pit"]["created_at"].get<std::int64_t>()) + " (" + held + ")";
                             }});
    columns.push_back(Column{"LAG", [](const json& x) {
                               const json& r = x["replication"];
                               if (!r["lag_seconds"].is_number()) return std::string("-");
                               std::string since = r.value("lag_since", "") == "group_created" ? " since the group was created" : "";
                               return format_duration(std::chrono::seconds(r["lag_seconds"].get<std::int64_t>())) + since +
                                      (r["rpo_met"].get<bool>() ? " (within RPO)" : " (RPO BREACHED)");
                             }});
    columns.push_back(Column{"LAST-SUCCESS", [](const json& x) {
                               const json& s = x["replication"]["last_success"];
                               if (s.is_null()) return std::string("-");
                               char secs[32];
                               std::snprintf(secs, sizeof secs, "%.1fs", s["duration_seconds"].get<double>());
                               return format_time(s["finished_at"].is_number() ? s["finished_at"].get<std::int64_t>() : 0) +
                                      ": " + format_bytes(s["bytes_sent"].get<double>()) + " sent in " + secs;
                             }});
    columns.push_back(Column{"LAST-FAILURE", [](const json& x) {
                               const json& r = x["replication"];
                               if (r["last_failure"].is_null()) return std::string("-");
                               std::string streak = r.value("consecutive_failures", 0) > 0
                                                        ? " (" + std::to_string(r.value("consecutive_failures", 0)) + " in a row)"
                                                        : " (since recovered)";
                               return format_time(r["last_failure"]["at"].get<std::int64_t>()) + streak + ": " +
                                      r["last_failure"].value("error", "");
                             }});
    columns.push_back(Column{"FULL-READ", [](const json& x) {
                               // Change tracking is trusted between full reads of every block.
                               const json& r = x["replication"];
                               std::string last = r["last_full_read_at"].is_number()
                                                      ? "last " + format_time(r["last_full_read_at"].get<std::int64_t>())
                                                      : "none yet";
                               if (!r["full_read_due_at"].is_number()) return last + " (periodic full reads off)";
                               return last + ", next due " + format_time(r["full_read_due_at"].get<std::int64_t>());
                             }});
    columns.push_back(Column{"SYNC", [](const json& x) {
                               const json& r = x["replication"];
                               if (r["sync"].value("running", false)) return format_sync_progress(r["sync"]);
                               if (!r.value("schedules", true)) return std::string("idle (schedules off: sync by hand)");
                               if (r["next_cycle_at"].is_number())
                                 return "idle, next cycle " + format_time(r["next_cycle_at"].get<std::int64_t>());
                               return std::string("idle");
                             }});
    if (j["replication"].contains("peer_error"))
      columns.push_back(Column{"RECOVERY-SITE", [](const json& x) {
                                 return "cannot list its PITs: " + x["replication"]["peer_error"].get<std::string>();
                               }});
  }
  print_object(std::cout, j, g.format(), columns);
  if (g.format() != Format::kTable) return;
  std::cout << "\n";
  print_list(std::cout, j["vms"], Format::kTable,
             {field("VM", "name"), field("UUID", "uuid"), field("PROVIDER", "provider"),
              field("PLACEHOLDER", "placeholder_uuid")});
}

// Starts a cycle of the group and waits for its point in time. The server
// holds each call at most a few minutes (202, done: false, with the cycle
// still running), so a long cycle is followed in as many calls as it takes.
Result<json> sync_and_wait(HttpsClient& client, const std::string& name) {
  const std::string path = "/api/v1/groups/" + path_part(name) + "/sync?wait=true";
  auto r = client.call("POST", path, json::object());
  while (r && !r->value("done", true))
    r = client.call("POST", path + "&cycle=" + std::to_string(r->value("cycle", std::uint64_t{0})), json::object());
  return r;
}

// `evac group sync NAME --follow`: the blocking sync call runs on a thread
// while this one polls the group's replication state and redraws one line
// (a terminal) or prints a line every few seconds (a log or a pipe).
int follow_sync(const Globals& g, const std::string& name) {
  auto waiter = connect(g, std::chrono::minutes(10));  // each call is answered within 5 minutes
  if (!waiter)
    return report_error_or_usage(waiter.status());
  auto poller = connect(g, std::chrono::seconds(30));
  if (!poller) return report(poller.status());
  std::optional<Result<json>> outcome;
  std::atomic<bool> done{false};
  std::thread sync([&] {
    // An exception must not leave a thread: it would abort the process.
    try {
      outcome = sync_and_wait(*waiter, name);
    } catch (const std::exception& e) {
      outcome.emplace(internal_error(std::string("unexpected failure: ") + e.what()));
    }
    done = true;
  });
  const bool tty = ::isatty(STDOUT_FILENO) == 1;
  const auto period = tty ? std::chrono::seconds(1) : std::chrono::seconds(5);
  auto next_poll = std::chrono::steady_clock::now() + std::chrono::milliseconds(300);
  bool drawn = false;
  while (!done) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    if (done || std::chrono::steady_clock::now() < next_poll) continue;
    next_poll = std::chrono::steady_clock::now() + period;
    auto state = poller->call("GET", "/api/v1/groups/" + path_part(name) + "/replication", std::nullopt);
    if (!state || !(*state)["sync"].value("running", false)) continue;
    std::string line = format_sync_progress((*state)["sync"]);
    if (tty) {
      std::cout << "\r\033[K" << line << std::flush;
      drawn = true;
    } else {
      std::cout << line << std::endl;
    }
  }
  sync.join();
  if (drawn) std::cout << "\r\033[K" << std::flush;
  if (!*outcome) return report(outcome->status());
  as_message(g, sync_outcome)(**outcome);
  return kOk;
}

void add_group_create(CLI::App& group, Globals& g, int& rc) {
  auto o = std::make_shared<GroupCreateOptions>();
  auto* create = group.add_subcommand("create", "Protect VMs as a group; registers their placeholders at the recovery site");
  create->add_option("name", o->name, "Group name")->required();
  create->add_option("--vm", o->vms, "A VM to protect (name, UUID or PROVIDER/NAME); repeat for several")->required();
  create->add_option("--rpo", o->rpo, "Recovery point objective, with its unit: 90s, 15m, 1h, 1d")->capture_default_str();
  create->add_option("--keep-pits", o->keep_pits, "Points in time to retain at the recovery site")->capture_default_str();
  create->add_option("--keep-hourly", o->keep_hourly, "Also keep the newest point in time of each of the last N hours")
      ->capture_default_str();
  create->add_option("--keep-daily", o->keep_daily, "Also keep the newest point in time of each of the last N days")
      ->capture_default_str();
  create->add_option("--peer", o->peer, "Recovery site (default: the only paired site)");
  create->add_option("--max-rate", o->max_rate, "Limit the bytes per second its cycles send, e.g. 50MiB/s (default: unlimited)");
  create->add_option("--adapter,--replication", o->replication,
                     "Replication adapter (engine) its disks replicate with: builtin, or the kind of an adapter "
                     "configured at both sites (rbd, ...); fixed once the group exists")
      ->capture_default_str();
  create->callback([&g, &rc, o] {
    if (Status s = check_duration_flag("--rpo", o->rpo); !s) {
      rc = usage_error(s.message(), s.hint());
      return;
    }
    json body = {{"name", o->name},
                 {"vms", o->vms},
                 {"rpo", o->rpo},
                 {"keep_pits", o->keep_pits},
                 {"keep_hourly", o->keep_hourly},
                 {"keep_daily", o->keep_daily}};
    if (!o->peer.empty()) body["recovery_site"] = o->peer;
    if (!o->max_rate.empty()) body["max_rate"] = o->max_rate;
    // The default is the site's too: left out, an evacd from before engine
    // kinds still takes the request.
    if (o->replication != "builtin") body["replication_engine"] = o->replication;
    rc = call_and_print(g, "POST", "/api/v1/groups", body, [&](const json& j) { print_group(g, j); });
  });
}

void add_group_show(CLI::App& group, Globals& g, int& rc) {
  auto o = std::make_shared<GroupNameOptions>();
  auto* show = group.add_subcommand("show", "Show a protection group and its VMs");
  show->add_option("name", o->name, "Group name")->required();
  show->callback([&g, &rc, o] {
    rc = call_and_print(g, "GET", "/api/v1/groups/" + path_part(o->name), std::nullopt, [&](const json& j) { print_group(g, j); });
  });
}

void add_group_add_vm(CLI::App& group, Globals& g, int& rc) {
  auto o = std::make_shared<GroupVmOptions>();
  auto* add_vm = group.add_subcommand("add-vm", "Protect one more VM in a group");
  add_vm->add_option("group", o->group, "Group name")->required();
  add_vm->add_option("vm", o->vm, "VM name, UUID or PROVIDER/NAME")->required();
  add_vm->callback([&g, &rc, o] {
    rc = call_and_print(g, "POST", "/api/v1/groups/" + path_part(o->group) + "/vms", json{{"vm", o->vm}},
                        [&](const json& j) { print_group(g, j); });
  });
}

void add_group_remove_vm(CLI::App& group, Globals& g, int& rc) {
  auto o = std::make_shared<GroupVmOptions>();
  auto* remove_vm = group.add_subcommand("remove-vm", "Stop protecting a VM; removes its placeholder");
  remove_vm->add_option("group", o->group, "Group name")->required();
  remove_vm->add_option("vm", o->vm, "VM name or UUID")->required();
  remove_vm->callback([&g, &rc, o] {
    rc = call_and_print(g, "DELETE", "/api/v1/groups/" + path_part(o->group) + "/vms/" + path_part(o->vm), std::nullopt,
                        [&](const json& j) { print_group(g, j); });
  });
}

void add_group_sync(CLI::App& group, Globals& g, int& rc) {
  auto o = std::make_shared<GroupSyncOptions>();
  auto* sync = group.add_subcommand("sync", "Replicate the group now: one cycle, a new point in time at the recovery site");
  sync->add_option("name", o->name, "Group name")->required();
  sync->add_flag("--follow", o->follow, "Show the cycle's progress (bytes, rate, ETA) while it runs");
  sync->callback([&g, &rc, o] {
    if (o->follow) {
      rc = follow_sync(g, o->name);
      return;
    }
    // Waits for a cycle that started after this request (a running one is
    // followed by one more), as a planned migration's final sync needs.
    auto client = connect(g, std::chrono::minutes(10));  // each call is answered within 5 minutes
    if (!client) {
      rc = report_error_or_usage(client.status());
      return;
    }
    auto result = sync_and_wait(*client, o->name);
    if (!result) {
      rc = report(result.status());
      return;
    }
    as_message(g, sync_outcome)(*result);
    rc = kOk;
  });
}

void add_group_set(CLI::App& group, Globals& g, int& rc) {
  auto o = std::make_shared<GroupSetOptions>();
  auto* set = group.add_subcommand("set", "Change a group's operational settings");
  set->add_option("name", o->name, "Group name")->required();
  set->add_option("--max-rate", o->max_rate, "Bytes per second its cycles may send, e.g. 50MiB/s; 0 or none: unlimited");
  set->add_option("--keep-pits", o->keep_pits, "Newest points in time to retain at the recovery site");
  set->add_option("--keep-hourly", o->keep_hourly, "Also keep the newest point in time of each of the last N hours");
  set->add_option("--keep-daily", o->keep_daily, "Also keep the newest point in time of each of the last N days");
  set->callback([&g, &rc, o] {
    json body = json::object();
    if (!o->max_rate.empty()) body["max_rate"] = o->max_rate;
    if (o->keep_pits) body["keep_pits"] = *o->keep_pits;
    if (o->keep_hourly) body["keep_hourly"] = *o->keep_hourly;
    if (o->keep_daily) body["keep_daily"] = *o->keep_daily;
    if (body.empty()) {
      rc = usage_error("nothing to change", "pass --max-rate, --keep-pits, --keep-hourly or --keep-daily");
      return;
    }
    rc = call_and_print(g, "PUT", "/api/v1/groups/" + path_part(o->name) + "/settings", body,
                        as_message(g, [](const json& j) {
                          return "group '" + j.value("name", "") + "': max rate " + j.value("max_rate", "") +
                                 ", keeps the newest " + std::to_string(j.value("keep_pits", 0)) + " points in time" +
                                 (j.value("keep_hourly", 0) + j.value("keep_daily", 0) > 0
                                      ? " plus the newest of each of the last " +
                                            std::to_string(j.value("keep_hourly", 0)) + " hours and " +
                                            std::to_string(j.value("keep_daily", 0)) + " days"
                                      : "");
                        }));
  });
}

void add_group_pits(CLI::App& group, Globals& g, int& rc) {
  auto o = std::make_shared<GroupNameOptions>();
  auto* pits = group.add_subcommand("pits", "List the group's points in time at its recovery site");
  pits->add_option("name", o->name, "Group name")->required();
  pits->callback([&g, &rc, o] {
    rc = call_and_print(g, "GET", "/api/v1/groups/" + path_part(o->name) + "/pits", std::nullopt,
                        as_list(g, {field("ID", "id"),
                                    Column{"INSTANT",  // what the PIT captures, to the millisecond
                                           [](const json& j) {
                                             if (j.contains("created_at_ms") && j["created_at_ms"].is_number_integer())
                                               return format_time_ms(j["created_at_ms"].get<std::int64_t>());
                                             return j.contains("created_at") && j["created_at"].is_number_integer()
                                                        ? format_time(j["created_at"].get<std::int64_t>())
                                                        : std::string("-");
                                           }},
                                    Column{"AGE",  // the writes a recovery to it now would lose, at most
                                           [](const json& j) {
                                             if (!j.contains("age_seconds") || !j["age_seconds"].is_number())
                                               return std::string("-");
                                             char buf[32];
                                             std::snprintf(buf, sizeof buf, "%.3f s", j["age_seconds"].get<double>());
                                             return std::string(buf);
                                           }},
                                    Column{"DISKS", [](const json& j) { return std::to_string(j["disks"].size()); }},
                                    field("BYTES-SENT", "bytes_sent")}));
  });
}

void add_group_verify(CLI::App& group, Globals& g, int& rc) {
  auto o = std::make_shared<GroupVerifyOptions>();
  auto* verify = group.add_subcommand(
      "verify",
      "Re-read a point in time and compare every block with the source hashes its cycle recorded (exit 1 on mismatch)");
  verify->add_option("name", o->name, "Group name")->required();
  verify->add_option("--pit", o->pit, "Point in time to verify (default: the newest)");
  verify->callback([&g, &rc, o] {
    bool mismatch = false;
    std::string path = "/api/v1/groups/" + path_part(o->name) + "/verify";
    if (!o->pit.empty()) path += "?pit=" + path_part(o->pit);
    rc = call_and_print(g, "POST", path, json::object(), [&](const json& j) {
      mismatch = !j.value("ok", false);
      as_message(g, [](const json& v) {
        std::string out = "point in time " + v.value("pit", "") + " of group '" + v.value("group", "") + "': ";
        out += v.value("ok", false) ? "every block matches the source"
                                    : std::to_string(v.value("blocks_mismatched", std::uint64_t{0})) +
                                          " blocks differ from the source";
        for (const auto& d : v.value("disks", json::array())) {
          out += "\n  " + d.value("key", "") + ": " + std::to_string(d.value("blocks_checked", std::uint64_t{0})) +
                 " blocks checked, " + std::to_string(d.value("blocks_mismatched", std::uint64_t{0})) + " differ";
          for (const auto& off : d.value("first_mismatches", json::array()))
            out += "\n    at byte " + std::to_string(off.get<std::uint64_t>());
        }
        if (!v.value("ok", false))
          out += "\nhint: recover from an older point in time that verifies, and look at the recovery site's storage";
        return out;
      })(j);
    });
    if (rc == 0 && mismatch) rc = 1;
  });
}

void add_group_delete(CLI::App& group, Globals& g, int& rc) {
  auto o = std::make_shared<GroupDeleteOptions>();
  auto* del = group.add_subcommand("delete", "Delete a group; removes its placeholders at the recovery site");
  del->add_option("name", o->name, "Group name")->required();
  del->add_flag("--force", o->force, "Delete even if the recovery site cannot be reached (lists placeholders left there)");
  del->callback([&g, &rc, o] {
    rc = call_and_print(g, "DELETE", "/api/v1/groups/" + path_part(o->name) + (o->force ? "?force=true" : ""), std::nullopt,
                        as_message(g, [](const json& j) {
                          std::string s = "deleted protection group '" + j.value("deleted", "") + "'";
                          for (const auto& left : j.value("left_behind", json::array()))
                            s += "\nwarning: could not remove " + left.get<std::string>() + ": remove it there by hand";
                          return s;
                        }));
  });
}

}  // namespace

void add_group_commands(CLI::App& app, Globals& g, int& rc) {
  auto* group = app.add_subcommand("group", "Protection groups: VMs that replicate and recover together");
  group->require_subcommand(1);
  add_group_create(*group, g, rc);
  group->add_subcommand("list", "List protection groups")->callback([&g, &rc] {
    rc = call_and_print(g, "GET", "/api/v1/groups", std::nullopt, as_list(g, kGroupColumns));
  });
  add_group_show(*group, g, rc);
  add_group_add_vm(*group, g, rc);
  add_group_remove_vm(*group, g, rc);
  add_group_sync(*group, g, rc);
  add_group_set(*group, g, rc);
  add_group_pits(*group, g, rc);
  add_group_verify(*group, g, rc);
  add_group_delete(*group, g, rc);
}

}  // namespace evac::cli
