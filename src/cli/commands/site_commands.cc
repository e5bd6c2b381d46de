// evac site: this site's identity, its pairings and what it keeps of its peers.
#include "cli/commands/site_commands.h"

#include <CLI/CLI.hpp>

#include <memory>

#include "cli/apply.h"

namespace evac::cli {
namespace {
using nlohmann::json;

struct PairingTokenOptions {
  std::string ttl = "15m";
};

struct PairOptions {
  std::string token, url;
};

struct UnpairOptions {
  std::string site;
  bool lost = false;
};

void add_site_pairing_token(CLI::App& site, Globals& g, int& rc) {
  auto o = std::make_shared<PairingTokenOptions>();
  auto* token = site.add_subcommand("pairing-token", "Create a one-time token that lets another site pair with this one");
  token->add_option("--ttl", o->ttl, "How long the token stays valid, with its unit: 90s, 15m, 1h")->capture_default_str();
  token->callback([&g, &rc, o] {
    if (Status s = check_duration_flag("--ttl", o->ttl); !s) {
      rc = usage_error(s.message(), s.hint());
      return;
    }
    rc = call_and_print(g, "POST", "/api/v1/pairing-tokens", json{{"ttl", o->ttl}}, as_message(g, [](const json& j) {
      return j.value("token", "") + "\n\nRedeem it at the other site within its lifetime (until " +
             format_time(j.value("expires_at", std::int64_t{0})) + "):\n  evac site pair " + j.value("token", "");
    }));
  });
}

void add_site_pair(CLI::App& site, Globals& g, int& rc) {
  auto o = std::make_shared<PairOptions>();
  auto* pair = site.add_subcommand("pair", "Pair this site with the site that issued TOKEN (mutual TLS from then on)");
  pair->add_option("token", o->token, "Token from `evac site pairing-token` at the other site")->required();
  pair->add_option("--url", o->url, "Reach the other site at this URL instead of the one in the token");
  pair->callback([&g, &rc, o] {
    json body = {{"token", o->token}};
    if (!o->url.empty()) body["url"] = o->url;
    rc = call_and_print(g, "POST", "/api/v1/pairings", body, as_message(g, [](const json& j) {
      return "paired with site '" + j.value("site", "") + "' at " + j.value("url", "");
    }));
  });
}

void add_site_unpair(CLI::App& site, Globals& g, int& rc) {
  auto o = std::make_shared<UnpairOptions>();
  auto* unpair = site.add_subcommand("unpair", "Unpair a site (refused while protection groups use it)");
  unpair->add_option("site", o->site, "The paired site's name")->required();
  unpair->add_flag("--lost", o->lost,
                   "The site is gone for good: its groups recovered here stop being its (their VMs' disks are "
                   "consolidated and the replicas here released), so they can be protected toward another site");
  unpair->callback([&g, &rc, o] {
    rc = call_and_print(g, "DELETE", "/api/v1/pairings/" + path_part(o->site) + (o->lost ? "?lost=true" : ""),
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

}  // namespace

void add_site_commands(CLI::App& app, Globals& g, int& rc) {
  auto* site = app.add_subcommand("site", "This site, its pairing with other sites and their health");
  site->require_subcommand(1);
  site->add_subcommand("show", "Show this site's identity")->callback([&g, &rc] {
    rc = call_and_print(g, "GET", "/api/v1/site", std::nullopt, as_object(g));
  });
  site->add_subcommand("status", "Show paired sites: connected, or unreachable since when")->callback([&g, &rc] {
    rc = call_and_print(g, "GET", "/api/v1/pairings", std::nullopt,
                        as_list(g, {field("SITE", "site"), field("URL", "url"), field("STATE", "state"),
                                    time_column("LAST-SEEN", "last_seen_at"),
                                    time_column("UNREACHABLE-SINCE", "unreachable_since"), field("LAST-ERROR", "last_error")}));
  });
  site->add_subcommand("copies", "What this site keeps of its peers' protection, for recoveries without them")->callback([&g, &rc] {
    rc = call_and_print(g, "GET", "/api/v1/peer-copies", std::nullopt,
                        as_list(g, {field("SITE", "site"), field("VERSION", "version"), time_column("RECEIVED", "received_at"),
                                    Column{"GROUPS", [](const json& j) { return std::to_string(j["document"]["groups"].size()); }},
                                    Column{"MAPPINGS", [](const json& j) { return std::to_string(j["document"]["mappings"].size()); }}}));
  });
  add_site_pairing_token(*site, g, rc);
  add_site_pair(*site, g, rc);
  add_site_unpair(*site, g, rc);
}

}  // namespace evac::cli
