// evac events list: the site's alarms and notable events, newest first.
#include "cli/commands/event_commands.h"

#include <CLI/CLI.hpp>

#include <memory>

#include "cli/apply.h"

namespace evac::cli {
namespace {

struct EventListOptions {
  std::string group;
  int limit = 100;
};

}  // namespace

void add_event_commands(CLI::App& app, Globals& g, int& rc) {
  auto* events = app.add_subcommand("events", "Alarms and notable events: RPO breaches and recoveries, failed cycles");
  events->require_subcommand(1);
  auto o = std::make_shared<EventListOptions>();
  auto* list = events->add_subcommand("list", "List events, newest first");
  list->add_option("--group", o->group, "Only this protection group's");
  list->add_option("--limit", o->limit, "At most this many (1-1000)")->capture_default_str();
  list->callback([&g, &rc, o] {
    std::string path = "/api/v1/events?limit=" + std::to_string(o->limit);
    if (!o->group.empty()) path += "&group=" + path_part(o->group);
    rc = call_and_print(g, "GET", path, std::nullopt,
                        as_list(g, {field("ID", "id"), time_column("AT", "at"), field("SEVERITY", "severity"),
                                    field("KIND", "kind"), field("GROUP", "group"), field("COUNT", "count"),
                                    time_column("LAST", "last_at"), field("MESSAGE", "message")}));
  });
}

}  // namespace evac::cli
