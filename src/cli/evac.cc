// evac: the operator's command line. It talks only to evacd's REST API.
//
// Exit codes: 0 the operation succeeded; 1 it failed (the message says why
// and what to do); 2 the command line itself was wrong.
#include <CLI/CLI.hpp>

#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <cstdio>
#include <new>
#include <map>
#include <set>
#include <fstream>
#include <iostream>
#include <optional>
#include <thread>

#include "cli/apply.h"
#include "cli/cli_config.h"
#include "cli/output.h"
#include "cli/progress.h"
#include "core/duration.h"
#include "core/model.h"
#include "net/https_client.h"

namespace evac::cli {
namespace {
using nlohmann::json;

constexpr int kOk = 0;
constexpr int kFailed = 1;
constexpr int kUsage = 2;

struct Globals {
  std::string config_path = default_config_path();
  std::string context;
  std::string url, token, token_file, pin;
  std::string output = "table";
  Format format() const { return output == "json" ? Format::kJson : output == "yaml" ? Format::kYaml : Format::kTable; }
};

int report(const Status& s) {
  std::cerr << "error: " << s.message() << "\n";
  if (!s.hint().empty()) std::cerr << "hint: " << s.hint() << "\n";
  return kFailed;
}

int usage_error(const std::string& message, const std::string& hint) {
  std::cerr << "error: " << message << "\n";
  if (!hint.empty()) std::cerr << "hint: " << hint << "\n";
  return kUsage;
}

// A token or pin file's first line. Read within a bound: a wrong path (a
// device, a huge file without newlines) must not take the memory.
Result<std::string> read_first_line(const std::string& path) {
  constexpr std::size_t kMaxLine = 64 * 1024;
  std::ifstream in(path, std::ios::binary);
  if (!in)
    return invalid_argument("cannot read " + path, "check the path and that you may read it (tokens are mode 0600)");
  std::string line;
  char c;
  while (line.size() <= kMaxLine && in.get(c) && c != '\n') line += c;
  if (line.size() > kMaxLine)
    return invalid_argument(path + " does not start with a line of at most 64 KiB",
                            "name the file that holds the token or the pin (a single line)");
  if (line.empty() && !in) return invalid_argument("cannot read " + path, "check the path and that it is not empty");
  while (!line.empty() && (line.back() == '\r' || line.back() == ' ')) line.pop_back();
  return line;
}

// A duration given on the command line, with its unit: a bare "15" could
// mean seconds or minutes, and the site refuses it too.
Status check_duration_flag(const std::string& flag, const std::string& value) {
  const bool bare = !value.empty() && std::all_of(value.begin(), value.end(), [](unsigned char c) { return std::isdigit(c); });
  if (bare)
    return invalid_argument(flag + " " + value + " has no unit: write " + value + "s or " + value + "m",
                            "durations take a unit: s, m, h or d, as in 90s, 15m, 1h30m or 2d");
  auto d = parse_duration(value);
  if (!d) return invalid_argument(flag + ": " + d.status().message(), d.status().hint());
  return Status::ok();
}

// Which site the command talks to: flags first, then the named or current context.
Result<HttpsClient> connect(const Globals& g, std::chrono::milliseconds timeout = std::chrono::hours(1)) {
  Context ctx;
  auto cfg = load_cli_config(g.config_path);
  if (!cfg) return cfg.status();
  std::string name = g.context.empty() ? cfg->current : g.context;
  if (!name.empty()) {
    auto it = cfg->contexts.find(name);
    if (it == cfg->contexts.end())
      return invalid_argument("no context named '" + name + "' in " + g.config_path, "list them with `evac context list`");
    ctx = it->second;
  }
  if (!g.url.empty()) ctx.url = g.url;
  if (!g.token.empty()) ctx.token = g.token;
  if (!g.token_file.empty()) {
    auto t = read_first_line(g.token_file);
    if (!t) return t.status();
    ctx.token = *t;
  }
  if (!g.pin.empty()) ctx.pin = g.pin;
  if (ctx.url.empty())
    return invalid_argument("no site to talk to",
                            "add one with `evac context add NAME --url https://HOST:PORT --token-file FILE --pin-file FILE`, "
                            "or pass --url, --token and --pin");
  if (ctx.pin.empty())
    return invalid_argument("no key pin for " + ctx.url,
                            "evac only talks to a site it can recognise: pass --pin (the site's state_dir/pin file holds it)");
  HttpsClientOptions options;
  options.base_url = ctx.url;
  options.server_pin = ctx.pin;
  options.bearer_token = ctx.token;
  // A dead site is caught by the connect timeout; this bounds a call that
  // connected (a sync waits for its cycle, which may take long).
  options.timeout = timeout;
  return HttpsClient(options);
}

// A failed connect: a missing context or pin is the command line's fault
// (exit 2), an unreachable site is not (exit 1).
int report_error_or_usage(const Status& s) {
  return s.code() == StatusCode::kInvalidArgument ? usage_error(s.message(), s.hint()) : report(s);
}

// Runs one API call and renders its result; the common body of most commands.
int call_and_print(const Globals& g, const std::string& method, const std::string& path,
                   const std::optional<json>& body, const std::function<void(const json&)>& render) {
  auto client = connect(g);
  if (!client) return report_error_or_usage(client.status());
  auto result = client->call(method, path, body);
  if (!result) return report(result.status());
  render(*result);
  return kOk;
}

std::function<void(const json&)> as_list(const Globals& g, std::vector<Column> columns) {
  return [&g, columns](const json& j) { print_list(std::cout, j, g.format(), columns); };
}
std::function<void(const json&)> as_object(const Globals& g, std::vector<Column> columns = {}) {
  return [&g, columns](const json& j) { print_object(std::cout, j, g.format(), columns); };
}
std::function<void(const json&)> as_message(const Globals& g, std::function<std::string(const json&)> text) {
  return [&g, text](const json& j) {
    if (g.format() == Format::kTable)
      std::cout << text(j) << "\n";
    else
      print_object(std::cout, j, g.format());
  };
}

Column time_column(std::string header, std::string key) {
  return Column{std::move(header), [key](const json& j) {
                  return j.contains(key) && j[key].is_number() ? format_time(j[key].get<std::int64_t>()) : std::string("-");
                }};
}

// A NIC's attachment as mappings name it: "prod", "bridge:br0", "direct:eth1".
std::string nic_attachment(const json& nic) {
  NicInfo n;
  n.network = nic.value("network", "");
  n.type = nic.value("type", "");
  return attachment_of(n).key();
}

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
  return "point in time " + j.value("id", "") + " of group '" + j.value("group", "") + "' complete: " +
         std::to_string(j["disks"].size()) + " disks, " + std::to_string(j.value("bytes_sent", std::uint64_t{0})) +
         " bytes sent";
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

// ---- command groups -------------------------------------------------------------

void add_context_commands(CLI::App& app, Globals& g, int& rc) {
  auto* ctx = app.add_subcommand("context", "Manage the sites this CLI talks to (~/.config/evac/config.yaml)");
  ctx->require_subcommand(1);

  auto* add = ctx->add_subcommand("add", "Add or replace a context: a site's URL, token and key pin");
  static std::string name, url, token, token_file, pin, pin_file;
  static bool use = false;
  add->add_option("name", name, "Context name, e.g. the site's name")->required();
  add->add_option("--url", url, "The site's evacd URL, https://HOST:PORT")->required();
  add->add_option("--token", token, "Bearer token");
  add->add_option("--token-file", token_file, "File holding the bearer token (the site's state_dir/admin.token)");
  add->add_option("--pin", pin, "The site's TLS key pin, sha256//...");
  add->add_option("--pin-file", pin_file, "File holding the pin (the site's state_dir/pin)");
  add->add_flag("--use", use, "Make it the current context");
  add->callback([&] {
    auto cfg = load_cli_config(g.config_path);
    if (!cfg) { rc = report(cfg.status()); return; }
    Context c{url, token, pin};
    if (!token_file.empty()) {
      auto t = read_first_line(token_file);
      if (!t) { rc = report(t.status()); return; }
      c.token = *t;
    }
    if (!pin_file.empty()) {
      auto p = read_first_line(pin_file);
      if (!p) { rc = report(p.status()); return; }
      c.pin = *p;
    }
    if (c.token.empty() || c.pin.empty()) {
      rc = usage_error("a context needs a token and a pin", "pass --token or --token-file, and --pin or --pin-file");
      return;
    }
    if (c.url.rfind("https://", 0) != 0) {
      rc = usage_error("the URL must start with https://", "for example --url https://127.0.0.1:8441");
      return;
    }
    cfg->contexts[name] = c;
    if (use || cfg->current.empty()) cfg->current = name;
    if (Status s = save_cli_config(g.config_path, *cfg); !s) { rc = report(s); return; }
    std::cout << "context '" << name << "' saved" << (cfg->current == name ? " and in use" : "") << "\n";
  });

  auto* use_cmd = ctx->add_subcommand("use", "Make a context the current one");
  static std::string use_name;
  use_cmd->add_option("name", use_name, "Context name")->required();
  use_cmd->callback([&] {
    auto cfg = load_cli_config(g.config_path);
    if (!cfg) { rc = report(cfg.status()); return; }
    if (!cfg->contexts.count(use_name)) {
      rc = report(not_found("no context named '" + use_name + "'", "list them with `evac context list`"));
      return;
    }
    cfg->current = use_name;
    if (Status s = save_cli_config(g.config_path, *cfg); !s) { rc = report(s); return; }
    std::cout << "now using context '" << use_name << "'\n";
  });

  ctx->add_subcommand("list", "List contexts")->callback([&] {
    auto cfg = load_cli_config(g.config_path);
    if (!cfg) { rc = report(cfg.status()); return; }
    json items = json::array();
    for (const auto& [n, c] : cfg->contexts)
      items.push_back({{"name", n}, {"url", c.url}, {"pin", c.pin}, {"current", n == cfg->current}});
    print_list(std::cout, items, g.format(), {field("NAME", "name"), field("URL", "url"), field("CURRENT", "current")});
  });
}

void add_site_commands(CLI::App& app, Globals& g, int& rc) {
  auto* site = app.add_subcommand("site", "This site, its pairing with other sites and their health");
  site->require_subcommand(1);
  site->add_subcommand("show", "Show this site's identity")->callback([&] {
    rc = call_and_print(g, "GET", "/api/v1/site", std::nullopt, as_object(g));
  });
  site->add_subcommand("status", "Show paired sites: connected, or unreachable since when")->callback([&] {
    rc = call_and_print(g, "GET", "/api/v1/pairings", std::nullopt,
                        as_list(g, {field("SITE", "site"), field("URL", "url"), field("STATE", "state"),
                                    time_column("LAST-SEEN", "last_seen_at"),
                                    time_column("UNREACHABLE-SINCE", "unreachable_since"), field("LAST-ERROR", "last_error")}));
  });
  site->add_subcommand("copies", "What this site keeps of its peers' protection, for recoveries without them")->callback([&] {
    rc = call_and_print(g, "GET", "/api/v1/peer-copies", std::nullopt,
                        as_list(g, {field("SITE", "site"), field("VERSION", "version"), time_column("RECEIVED", "received_at"),
                                    Column{"GROUPS", [](const json& j) { return std::to_string(j["document"]["groups"].size()); }},
                                    Column{"MAPPINGS", [](const json& j) { return std::to_string(j["document"]["mappings"].size()); }}}));
  });
  auto* token = site->add_subcommand("pairing-token", "Create a one-time token that lets another site pair with this one");
  static std::string ttl = "15m";
  token->add_option("--ttl", ttl, "How long the token stays valid, with its unit: 90s, 15m, 1h")->capture_default_str();
  token->callback([&] {
    if (Status s = check_duration_flag("--ttl", ttl); !s) {
      rc = usage_error(s.message(), s.hint());
      return;
    }
    rc = call_and_print(g, "POST", "/api/v1/pairing-tokens", json{{"ttl", ttl}}, as_message(g, [](const json& j) {
      return j.value("token", "") + "\n\nRedeem it at the other site within its lifetime (until " +
             format_time(j.value("expires_at", std::int64_t{0})) + "):\n  evac site pair " + j.value("token", "");
    }));
  });
  auto* pair = site->add_subcommand("pair", "Pair this site with the site that issued TOKEN (mutual TLS from then on)");
  static std::string pair_token, pair_url;
  pair->add_option("token", pair_token, "Token from `evac site pairing-token` at the other site")->required();
  pair->add_option("--url", pair_url, "Reach the other site at this URL instead of the one in the token");
  pair->callback([&] {
    json body = {{"token", pair_token}};
    if (!pair_url.empty()) body["url"] = pair_url;
    rc = call_and_print(g, "POST", "/api/v1/pairings", body, as_message(g, [](const json& j) {
      return "paired with site '" + j.value("site", "") + "' at " + j.value("url", "");
    }));
  });
  auto* unpair = site->add_subcommand("unpair", "Unpair a site (refused while protection groups use it)");
  static std::string unpair_site;
  static bool unpair_lost = false;
  unpair->add_option("site", unpair_site, "The paired site's name")->required();
  unpair->add_flag("--lost", unpair_lost,
                   "The site is gone for good: its groups recovered here stop being its (their VMs' disks are "
                   "consolidated and the replicas here released), so they can be protected toward another site");
  unpair->callback([&] {
    rc = call_and_print(g, "DELETE", "/api/v1/pairings/" + path_part(unpair_site) + (unpair_lost ? "?lost=true" : ""),
                        std::nullopt, as_message(g, [](const json& j) {
                          std::string text = "unpaired site '" + j.value("unpaired", "") + "'";
                          if (!j.value("lost", false)) return text;
                          text += " as lost for good";
                          for (const auto& grp : j.value("groups", json::array())) {
                            text += "\n  group '" + grp.value("group", "") + "': live here, no longer protected; " +
                                    std::to_string(grp.value("removed_pits", json::array()).size()) + " PIT(s) released";
                            if (grp.contains("kept_because")) text += "; kept: " + grp.value("kept_because", "");
                          }
                          for (const auto& plan : j.value("plans", json::array())) {
                            const std::string name = plan.get<std::string>();
                            text += "\n  plan '" + name + "' recovers them from the lost site: carry it to their next "
                                    "recovery site (`evac get plan " + name + " -o yaml`, then `evac apply -f` there once "
                                    "they are protected toward it), then delete it here";
                          }
                          return text;
                        }));
  });
}

void add_inventory_commands(CLI::App& app, Globals& g, int& rc) {
  auto* inv = app.add_subcommand("inventory", "What the site's compute providers hold");
  inv->require_subcommand(1);
  static std::string provider;
  auto query = [&]() { return provider.empty() ? std::string() : "?provider=" + path_part(provider); };
  inv->add_subcommand("providers", "Compute providers and whether they answer")->callback([&] {
    rc = call_and_print(g, "GET", "/api/v1/inventory/providers", std::nullopt,
                        as_list(g, {field("NAME", "name"), field("KIND", "kind"), field("URI", "uri"),
                                    field("REACHABLE", "reachable"), field("ERROR", "error.message")}));
  });
  auto* vms = inv->add_subcommand("vms", "VMs with their state, sizes, disks and networks");
  vms->add_option("--provider", provider, "Only this compute provider");
  vms->callback([&] {
    rc = call_and_print(g, "GET", "/api/v1/inventory/vms" + query(), std::nullopt,
                        as_list(g, {field("NAME", "name"), field("PROVIDER", "provider"), field("STATE", "state"),
                                    field("VCPUS", "vcpus"),
                                    Column{"MEMORY", [](const json& j) {
                                             return std::to_string(j.value("memory_kib", std::uint64_t{0}) / 1024) + " MiB";
                                           }},
                                    Column{"DISKS", [](const json& j) { return std::to_string(j["disks"].size()); }},
                                    Column{"NETWORKS",
                                           [](const json& j) {
                                             std::string s;
                                             for (const auto& n : j["nics"]) s += (s.empty() ? "" : ",") + nic_attachment(n);
                                             return s.empty() ? std::string("-") : s;
                                           }},
                                    field("PLACEHOLDER", "is_placeholder")}));
  });
  auto* vm = inv->add_subcommand("vm", "One VM in full");
  static std::string vm_name;
  vm->add_option("name", vm_name, "Name, UUID or PROVIDER/NAME")->required();
  vm->callback([&] {
    rc = call_and_print(g, "GET", "/api/v1/inventory/vms/" + path_part(vm_name), std::nullopt, [&](const json& j) {
      json shown = j;
      if (g.format() == Format::kTable) shown.erase("native");
      print_object(std::cout, shown, g.format());
      if (g.format() != Format::kTable) return;
      std::cout << "\n";
      print_list(std::cout, j["disks"], Format::kTable,
                 {field("DISK", "target"), field("PATH", "path"), field("FORMAT", "format"), field("POOL", "storage_pool")});
      std::cout << "\n";
      print_list(std::cout, j["nics"], Format::kTable,
                 {field("MAC", "mac"), Column{"NETWORK", [](const json& n) { return nic_attachment(n); }}, field("TYPE", "type")});
    });
  });
  auto* nets = inv->add_subcommand("networks", "Networks");
  nets->add_option("--provider", provider, "Only this compute provider");
  nets->callback([&] {
    rc = call_and_print(g, "GET", "/api/v1/inventory/networks" + query(), std::nullopt,
                        as_list(g, {field("NAME", "name"), field("KIND", "kind"), field("PROVIDER", "provider"), field("BRIDGE", "bridge"),
                                    field("ACTIVE", "active"), field("ISOLATED", "isolated"),
                                    field("JUDGED-FROM", "isolation")}));
  });
  auto* pools = inv->add_subcommand("pools", "Storage pools");
  pools->add_option("--provider", provider, "Only this compute provider");
  pools->callback([&] {
    rc = call_and_print(g, "GET", "/api/v1/inventory/storage-pools" + query(), std::nullopt,
                        as_list(g, {field("NAME", "name"), field("PROVIDER", "provider"), field("TYPE", "type"),
                                    field("PATH", "path"), field("ACTIVE", "active")}));
  });
}

void add_mapping_commands(CLI::App& app, Globals& g, int& rc) {
  auto* mapping = app.add_subcommand("mapping", "Inventory mappings: which resource at the recovery site stands for one here");
  mapping->require_subcommand(1);
  auto* create = mapping->add_subcommand("create", "Map a network, storage pool or compute provider to the recovery site");
  static std::string kind, source, target, test_network, peer;
  create->add_option("kind", kind, "network, storage or compute")->required()->check(CLI::IsMember({"network", "storage", "compute"}));
  create->add_option("source", source, "Resource at this (protected) site")->required();
  create->add_option("target", target, "Resource at the recovery site")->required();
  create->add_option("--test-network", test_network, "Network mappings: the isolated network test recoveries attach to");
  create->add_option("--peer", peer, "Recovery site (default: the only paired site)");
  create->callback([&] {
    json body = {{"kind", kind}, {"source", source}, {"target", target}};
    if (!test_network.empty()) body["test_network"] = test_network;
    if (!peer.empty()) body["peer_site"] = peer;
    rc = call_and_print(g, "POST", "/api/v1/mappings", body, as_message(g, [](const json& j) {
      std::string s = "mapping " + std::to_string(j.value("id", 0)) + ": " + j.value("kind", "") + " " + j.value("source", "") +
                      " -> " + j.value("peer_site", "") + "/" + j.value("target", "");
      if (!j.value("test_network", "").empty()) s += " (tests: " + j.value("test_network", "") + ")";
      return s;
    }));
  });
  mapping->add_subcommand("list", "List inventory mappings")->callback([&] {
    rc = call_and_print(g, "GET", "/api/v1/mappings", std::nullopt,
                        as_list(g, {field("ID", "id"), field("KIND", "kind"), field("SOURCE", "source"),
                                    field("PEER", "peer_site"), field("TARGET", "target"), field("TEST-NETWORK", "test_network")}));
  });
  auto* del = mapping->add_subcommand("delete", "Delete a mapping (refused while a protected VM uses it)");
  static std::string id;
  del->add_option("id", id, "Mapping id from `evac mapping list`")->required();
  del->callback([&] {
    rc = call_and_print(g, "DELETE", "/api/v1/mappings/" + path_part(id), std::nullopt,
                        as_message(g, [](const json&) { return std::string("mapping deleted"); }));
  });
}

void add_group_commands(CLI::App& app, Globals& g, int& rc) {
  auto* group = app.add_subcommand("group", "Protection groups: VMs that replicate and recover together");
  group->require_subcommand(1);
  auto* create = group->add_subcommand("create", "Protect VMs as a group; registers their placeholders at the recovery site");
  static std::string name, rpo = "15m", peer, max_rate;
  static std::vector<std::string> vms;
  static int keep_pits = 24, keep_hourly = 0, keep_daily = 0;
  create->add_option("name", name, "Group name")->required();
  create->add_option("--vm", vms, "A VM to protect (name, UUID or PROVIDER/NAME); repeat for several")->required();
  create->add_option("--rpo", rpo, "Recovery point objective, with its unit: 90s, 15m, 1h, 1d")->capture_default_str();
  create->add_option("--keep-pits", keep_pits, "Points in time to retain at the recovery site")->capture_default_str();
  create->add_option("--keep-hourly", keep_hourly, "Also keep the newest point in time of each of the last N hours")
      ->capture_default_str();
  create->add_option("--keep-daily", keep_daily, "Also keep the newest point in time of each of the last N days")
      ->capture_default_str();
  create->add_option("--peer", peer, "Recovery site (default: the only paired site)");
  create->add_option("--max-rate", max_rate, "Limit the bytes per second its cycles send, e.g. 50MiB/s (default: unlimited)");
  create->callback([&] {
    if (Status s = check_duration_flag("--rpo", rpo); !s) {
      rc = usage_error(s.message(), s.hint());
      return;
    }
    json body = {{"name", name},           {"vms", vms},
                 {"rpo", rpo},             {"keep_pits", keep_pits},
                 {"keep_hourly", keep_hourly}, {"keep_daily", keep_daily}};
    if (!peer.empty()) body["recovery_site"] = peer;
    if (!max_rate.empty()) body["max_rate"] = max_rate;
    rc = call_and_print(g, "POST", "/api/v1/groups", body, [&](const json& j) { print_group(g, j); });
  });
  group->add_subcommand("list", "List protection groups")->callback([&] {
    rc = call_and_print(g, "GET", "/api/v1/groups", std::nullopt, as_list(g, kGroupColumns));
  });
  auto* show = group->add_subcommand("show", "Show a protection group and its VMs");
  static std::string show_name;
  show->add_option("name", show_name, "Group name")->required();
  show->callback([&] {
    rc = call_and_print(g, "GET", "/api/v1/groups/" + path_part(show_name), std::nullopt, [&](const json& j) { print_group(g, j); });
  });
  auto* add_vm = group->add_subcommand("add-vm", "Protect one more VM in a group");
  static std::string add_group, add_vm_name;
  add_vm->add_option("group", add_group, "Group name")->required();
  add_vm->add_option("vm", add_vm_name, "VM name, UUID or PROVIDER/NAME")->required();
  add_vm->callback([&] {
    rc = call_and_print(g, "POST", "/api/v1/groups/" + path_part(add_group) + "/vms", json{{"vm", add_vm_name}},
                        [&](const json& j) { print_group(g, j); });
  });
  auto* remove_vm = group->add_subcommand("remove-vm", "Stop protecting a VM; removes its placeholder");
  static std::string rm_group, rm_vm;
  remove_vm->add_option("group", rm_group, "Group name")->required();
  remove_vm->add_option("vm", rm_vm, "VM name or UUID")->required();
  remove_vm->callback([&] {
    rc = call_and_print(g, "DELETE", "/api/v1/groups/" + path_part(rm_group) + "/vms/" + path_part(rm_vm), std::nullopt,
                        [&](const json& j) { print_group(g, j); });
  });
  auto* sync = group->add_subcommand("sync", "Replicate the group now: one cycle, a new point in time at the recovery site");
  static std::string sync_name;
  static bool follow = false;
  sync->add_option("name", sync_name, "Group name")->required();
  sync->add_flag("--follow", follow, "Show the cycle's progress (bytes, rate, ETA) while it runs");
  sync->callback([&] {
    if (follow) {
      rc = follow_sync(g, sync_name);
      return;
    }
    // Waits for a cycle that started after this request (a running one is
    // followed by one more), as a planned migration's final sync needs.
    auto client = connect(g, std::chrono::minutes(10));  // each call is answered within 5 minutes
    if (!client) {
      rc = report_error_or_usage(client.status());
      return;
    }
    auto result = sync_and_wait(*client, sync_name);
    if (!result) {
      rc = report(result.status());
      return;
    }
    as_message(g, sync_outcome)(*result);
    rc = kOk;
  });
  auto* set = group->add_subcommand("set", "Change a group's operational settings");
  static std::string set_name, set_max_rate;
  static std::optional<int> set_keep_pits, set_keep_hourly, set_keep_daily;
  set->add_option("name", set_name, "Group name")->required();
  set->add_option("--max-rate", set_max_rate, "Bytes per second its cycles may send, e.g. 50MiB/s; 0 or none: unlimited");
  set->add_option("--keep-pits", set_keep_pits, "Newest points in time to retain at the recovery site");
  set->add_option("--keep-hourly", set_keep_hourly, "Also keep the newest point in time of each of the last N hours");
  set->add_option("--keep-daily", set_keep_daily, "Also keep the newest point in time of each of the last N days");
  set->callback([&] {
    json body = json::object();
    if (!set_max_rate.empty()) body["max_rate"] = set_max_rate;
    if (set_keep_pits) body["keep_pits"] = *set_keep_pits;
    if (set_keep_hourly) body["keep_hourly"] = *set_keep_hourly;
    if (set_keep_daily) body["keep_daily"] = *set_keep_daily;
    if (body.empty()) {
      rc = usage_error("nothing to change", "pass --max-rate, --keep-pits, --keep-hourly or --keep-daily");
      return;
    }
    rc = call_and_print(g, "PUT", "/api/v1/groups/" + path_part(set_name) + "/settings", body,
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
  auto* pits = group->add_subcommand("pits", "List the group's points in time at its recovery site");
  static std::string pits_name;
  pits->add_option("name", pits_name, "Group name")->required();
  pits->callback([&] {
    rc = call_and_print(g, "GET", "/api/v1/groups/" + path_part(pits_name) + "/pits", std::nullopt,
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
  auto* verify = group->add_subcommand(
      "verify",
      "Re-read a point in time and compare every block with the source hashes its cycle recorded (exit 1 on mismatch)");
  static std::string verify_name, verify_pit;
  verify->add_option("name", verify_name, "Group name")->required();
  verify->add_option("--pit", verify_pit, "Point in time to verify (default: the newest)");
  verify->callback([&] {
    bool mismatch = false;
    std::string path = "/api/v1/groups/" + path_part(verify_name) + "/verify";
    if (!verify_pit.empty()) path += "?pit=" + path_part(verify_pit);
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
  auto* del = group->add_subcommand("delete", "Delete a group; removes its placeholders at the recovery site");
  static std::string del_name;
  static bool force = false;
  del->add_option("name", del_name, "Group name")->required();
  del->add_flag("--force", force, "Delete even if the recovery site cannot be reached (lists placeholders left there)");
  del->callback([&] {
    rc = call_and_print(g, "DELETE", "/api/v1/groups/" + path_part(del_name) + (force ? "?force=true" : ""), std::nullopt,
                        as_message(g, [](const json& j) {
                          std::string s = "deleted protection group '" + j.value("deleted", "") + "'";
                          for (const auto& left : j.value("left_behind", json::array()))
                            s += "\nwarning: could not remove " + left.get<std::string>() + ": remove it there by hand";
                          return s;
                        }));
  });
}

void add_event_commands(CLI::App& app, Globals& g, int& rc) {
  auto* events = app.add_subcommand("events", "Alarms and notable events: RPO breaches and recoveries, failed cycles");
  events->require_subcommand(1);
  auto* list = events->add_subcommand("list", "List events, newest first");
  static std::string group;
  static int limit = 100;
  list->add_option("--group", group, "Only this protection group's");
  list->add_option("--limit", limit, "At most this many (1-1000)")->capture_default_str();
  list->callback([&] {
    std::string path = "/api/v1/events?limit=" + std::to_string(limit);
    if (!group.empty()) path += "&group=" + path_part(group);
    rc = call_and_print(g, "GET", path, std::nullopt,
                        as_list(g, {field("ID", "id"), time_column("AT", "at"), field("SEVERITY", "severity"),
                                    field("KIND", "kind"), field("GROUP", "group"), field("COUNT", "count"),
                                    time_column("LAST", "last_at"), field("MESSAGE", "message")}));
  });
}

void add_placeholder_commands(CLI::App& app, Globals& g, int& rc) {
  auto* ph = app.add_subcommand("placeholder", "Placeholders this site holds for its peers' protected VMs");
  ph->require_subcommand(1);
  ph->add_subcommand("list", "List placeholders registered here")->callback([&] {
    rc = call_and_print(g, "GET", "/api/v1/placeholders", std::nullopt,
                        as_list(g, {field("NAME", "name"), field("UUID", "uuid"), field("PROVIDER", "provider"),
                                    field("GROUP", "group"), field("FROM-SITE", "source_site")}));
  });
}

// A plan as an operator reads it: what it covers, then each VM entry.
void print_plan(const Globals& g, const json& j) {
  if (g.format() != Format::kTable) {
    print_object(std::cout, j, g.format());
    return;
  }
  print_object(std::cout, j, Format::kTable,
               {field("NAME", "name"), field("DESCRIPTION", "description"), field("GROUPS", "groups"),
                field("ORDERING", "ordering"), time_column("UPDATED", "updated_at")});
  const json& vms = j.contains("vms") ? j["vms"] : json::array();
  std::cout << "\nVMs (" << vms.size() << " with settings; the groups' other VMs: tier 3, powered on, waited for):\n";
  if (vms.empty()) return;
  auto count = [](std::string header, std::vector<std::string> keys) {
    return Column{std::move(header), [keys](const json& v) {
                    std::size_t n = 0;
                    for (const auto& k : keys)
                      if (v.contains(k) && v[k].is_array()) n += v[k].size();
                    return std::to_string(n);
                  }};
  };
  print_list(std::cout, vms, Format::kTable,
             {field("VM", "vm"), field("TIER", "priority"), field("DEPENDS-ON", "depends_on"),
              field("STARTUP", "startup"), field("WAIT-FOR-GUEST", "wait_for_guest"), count("CHECKS", {"checks"}),
              count("ACTIONS", {"before_power_on", "after_power_on"})});
}

void add_plan_commands(CLI::App& app, Globals& g, int& rc) {
  auto* plan = app.add_subcommand("plan", "Recovery plans: the runbooks that test, migrate and fail over groups");
  plan->require_subcommand(1);
  auto* create = plan->add_subcommand("create", "Create a plan over protection groups (details: evac apply -f)");
  static std::string name, ordering = "strict-tiers", description;
  static std::vector<std::string> groups;
  create->add_option("name", name, "Plan name")->required();
  create->add_option("--group", groups, "A protection group the plan recovers; repeat for several")->required();
  create->add_option("--ordering", ordering, "strict-tiers (every VM of a tier up before the next) or dependencies")
      ->check(CLI::IsMember({"strict-tiers", "dependencies"}))
      ->capture_default_str();
  create->add_option("--description", description, "What the plan is for");
  create->callback([&] {
    json body = {{"name", name}, {"groups", groups}, {"ordering", ordering}, {"description", description}};
    rc = call_and_print(g, "POST", "/api/v1/plans", body, [&](const json& j) { print_plan(g, j); });
  });
  plan->add_subcommand("list", "List recovery plans")->callback([&] {
    rc = call_and_print(g, "GET", "/api/v1/plans", std::nullopt,
                        as_list(g, {field("NAME", "name"), field("GROUPS", "groups"), field("ORDERING", "ordering"),
                                    Column{"STATE", [](const json& p) {
                                             return !p.contains("ready") || p["ready"].is_null() ? std::string("unknown")
                                                    : p["ready"].get<bool>()                      ? std::string("ready")
                                                                                                  : std::string("not ready");
                                           }},
                                    Column{"VM-ENTRIES", [](const json& p) { return std::to_string(p.value("vms", json::array()).size()); }},
                                    field("STORED-AT", "stored_at"), time_column("UPDATED", "updated_at")}));
  });
  auto* show = plan->add_subcommand("show", "Show a plan");
  static std::string show_name;
  show->add_option("name", show_name, "Plan name")->required();
  show->callback([&] {
    rc = call_and_print(g, "GET", "/api/v1/plans/" + path_part(show_name), std::nullopt, [&](const json& j) { print_plan(g, j); });
  });
  auto* check = plan->add_subcommand("check", "Check, without side effects, everything a run of the plan here needs");
  static std::string check_name, check_operation;
  check->add_option("name", check_name, "Plan name")->required();
  check->add_option("--operation", check_operation,
                    "Answer for this run only (exit 0 when it would run): test, migrate, failover, reprotect, failback")
      ->check(CLI::IsMember({"test", "migrate", "failover", "reprotect", "failback"}));
  check->callback([&] {
    bool ready = false;
    rc = call_and_print(g, "GET", "/api/v1/plans/" + path_part(check_name) + "/readiness", std::nullopt, [&](const json& j) {
      const json ops = j.value("operations", json::object());
      ready = check_operation.empty() ? j.value("ready", false)
                                      : ops.contains(check_operation) && ops[check_operation].value("ready", false);
      if (g.format() != Format::kTable) {
        print_object(std::cout, j, g.format());
        return;
      }
      for (const auto& f : j.value("findings", json::array())) {
        std::vector<std::string> concerns = f.value("operations", std::vector<std::string>{});
        if (!check_operation.empty() && !concerns.empty() &&
            std::find(concerns.begin(), concerns.end(), check_operation) == concerns.end())
          continue;
        std::string sev = f.value("severity", "");
        std::string which;
        for (const auto& op : concerns) which += (which.empty() ? " [" : ", ") + op;
        if (!which.empty()) which += "]";
        std::cout << (sev == "ok" ? "ok      " : sev == "warning" ? "WARNING " : "ERROR   ") << f.value("check", "") << which
                  << ": " << f.value("message", "") << "\n";
        if (!f.value("hint", "").empty() && sev != "ok") std::cout << "        hint: " << f.value("hint", "") << "\n";
      }
      // What each run would do now.
      std::string verdicts;
      for (const auto& [op, v] : ops.items()) {
        if (!check_operation.empty() && op != check_operation) continue;
        verdicts += (verdicts.empty() ? "" : ", ") + op + " " +
                    (!v.value("applicable", false) ? "does not apply now" : v.value("ready", false) ? "ready" : "NOT READY");
      }
      if (!verdicts.empty()) std::cout << "runs: " << verdicts << "\n";
      std::cout << "plan '" << check_name << "' is " << (ready ? "ready" : "not ready")
                << (check_operation.empty() ? "" : " for " + check_operation) << "\n";
    });
    if (rc == kOk && !ready) rc = kFailed;
  });
  auto* del = plan->add_subcommand("delete", "Delete a plan (its groups stay protected)");
  static std::string del_name;
  del->add_option("name", del_name, "Plan name")->required();
  del->callback([&] {
    rc = call_and_print(g, "DELETE", "/api/v1/plans/" + path_part(del_name), std::nullopt,
                        as_message(g, [](const json& j) { return "deleted recovery plan '" + j.value("deleted", "") + "'"; }));
  });
}

// ---- runs -------------------------------------------------------------------------

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

// Declarative configuration: `evac apply -f FILE` sends each document to
// where it belongs, all or nothing (cli/apply.h); `evac get KIND NAME -o
// yaml` prints it back in the same form, so the two round-trip.
void add_declarative_commands(CLI::App& app, Globals& g, int& rc) {
  auto* apply = app.add_subcommand(
      "apply",
      "Create or update what YAML (or JSON) documents describe (kind: RecoveryPlan), all or nothing: every document is "
      "checked against the site before any is applied, and if the site still refuses one, those applied before it are "
      "rolled back. Says per document: created, replaced or unchanged");
  static std::string file;
  static bool dry_run = false;
  apply->add_option("-f,--file", file,
                    "A file ('-' for standard input), documents separated by ---; or a folder: its *.yaml, *.yml and "
                    "*.json files (not its subfolders'), in name order, applied as one set. At most 4 MiB in all")
      ->required();
  apply->add_flag("--dry-run", dry_run, "Check every document against the site and say what would change; change nothing");
  apply->callback([&] {
    DocumentBudget budget;
    auto docs = read_apply_input(file, std::cin, budget);
    if (!docs) {
      rc = usage_error(docs.status().message(), docs.status().hint());
      return;
    }
    if (docs->empty()) {
      rc = usage_error((file == "-" ? std::string("standard input") : file) + " holds no document",
                       "write one, starting with kind: RecoveryPlan");
      return;
    }
    if (Status s = check_kinds(*docs); !s) {
      rc = usage_error(s.message(), s.hint());
      return;
    }
    auto client = connect(g);
    if (!client) {
      rc = report_error_or_usage(client.status());
      return;
    }
    ApplyReport outcome = apply_documents(
        *docs,
        [&](const std::string& method, const std::string& path, const std::optional<json>& body) {
          return client->call(method, path, body);
        },
        dry_run);
    rc = print_apply_report(outcome, std::cout, std::cerr, g.format());
  });
  auto* get = app.add_subcommand("get", "Print a configuration object in the form `evac apply -f` takes");
  static std::string kind, get_name;
  get->add_option("kind", kind, "What to print: plan")->check(CLI::IsMember({"plan"}))->required();
  get->add_option("name", get_name, "Its name")->required();
  get->callback([&] {
    rc = call_and_print(g, "GET", "/api/v1/plans/" + path_part(get_name), std::nullopt, [&](const json& j) {
      json doc = j;
      doc["kind"] = "RecoveryPlan";
      if (g.format() == Format::kJson) std::cout << doc.dump(2) << "\n";
      else std::cout << to_yaml(doc);  // a table would not round-trip: YAML unless JSON was asked for
    });
  });
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"evac: site recovery orchestration. Talks to an evacd over its REST API."};
  app.require_subcommand(1);
  // Global options (-o, --context, ...) may follow the subcommand too.
  app.fallthrough();
  app.set_version_flag("--version", "evac 0.1.0");
  Globals g;
  int rc = kOk;
  app.add_option("--config", g.config_path, "CLI config file (contexts)")->capture_default_str();
  app.add_option("--context", g.context, "Use this context instead of the current one");
  app.add_option("--url", g.url, "Site URL, overriding the context");
  app.add_option("--token", g.token, "Bearer token, overriding the context");
  app.add_option("--token-file", g.token_file, "File holding the bearer token");
  app.add_option("--pin", g.pin, "The site's TLS key pin, overriding the context");
  app.add_option("-o,--output", g.output, "Output format: table, json or yaml")
      ->check(CLI::IsMember({"table", "json", "yaml"}))
      ->capture_default_str();

  add_context_commands(app, g, rc);
  add_site_commands(app, g, rc);
  add_inventory_commands(app, g, rc);
  add_mapping_commands(app, g, rc);
  add_group_commands(app, g, rc);
  add_placeholder_commands(app, g, rc);
  add_event_commands(app, g, rc);
  add_plan_commands(app, g, rc);
  add_run_commands(app, g, rc, app.get_subcommand("plan"));
  add_declarative_commands(app, g, rc);

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    int code = app.exit(e);
    return code == 0 ? kOk : kUsage;
  }
  return rc;
}

// Nothing escapes main: an exception is a bug or exhaustion, said plainly,
// with exit 1 rather than an abort and a core.
int guarded_main(int argc, char** argv) {
  try {
    return main(argc, argv);
  } catch (const std::bad_alloc&) {
    std::fputs("error: out of memory\nhint: evac limits what it reads from files (4 MiB, 100000 values); "
               "if this happened on an answer from evacd, report it as a bug\n",
               stderr);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: unexpected failure: %s\nhint: this is a bug in evac: report it with the command line\n",
                 e.what());
  } catch (...) {
    std::fputs("error: unexpected failure\nhint: this is a bug in evac: report it with the command line\n", stderr);
  }
  return kFailed;
}

}  // namespace evac::cli

int main(int argc, char** argv) { return evac::cli::guarded_main(argc, argv); }
