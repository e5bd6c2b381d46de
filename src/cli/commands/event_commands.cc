// evac events list: the site's alarms and notable events, newest first.
#include "cli/commands/event_commands.h"

#include <CLI/CLI.hpp>

#include <memory>

#include "cli/apply.h"

namespace evac::cli {
namespace {
using nlohmann::json;

}  // namespace

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

}  // namespace evac::cli
