// evac mapping: inventory mappings from this site's resources to the recovery site's.
#include "cli/commands/mapping_commands.h"

#include <CLI/CLI.hpp>

#include <memory>

#include "cli/apply.h"

namespace evac::cli {
namespace {
using nlohmann::json;

struct MappingCreateOptions {
  std::string kind, source, target, test_network, peer;
};

struct MappingDeleteOptions {
  std::string id;
};

void add_mapping_create(CLI::App& mapping, Globals& g, int& rc) {
  auto o = std::make_shared<MappingCreateOptions>();
  auto* create = mapping.add_subcommand("create", "Map a network, storage pool or compute provider to the recovery site");
  create->add_option("kind", o->kind, "network, storage or compute")->required()->check(CLI::IsMember({"network", "storage", "compute"}));
  create->add_option("source", o->source, "Resource at this (protected) site")->required();
  create->add_option("target", o->target, "Resource at the recovery site")->required();
  create->add_option("--test-network", o->test_network, "Network mappings: the isolated network test recoveries attach to");
  create->add_option("--peer", o->peer, "Recovery site (default: the only paired site)");
  create->callback([&g, &rc, o] {
    json body = {{"kind", o->kind}, {"source", o->source}, {"target", o->target}};
    if (!o->test_network.empty()) body["test_network"] = o->test_network;
    if (!o->peer.empty()) body["peer_site"] = o->peer;
    rc = call_and_print(g, "POST", "/api/v1/mappings", body, as_message(g, [](const json& j) {
      std::string s = "mapping " + std::to_string(j.value("id", 0)) + ": " + j.value("kind", "") + " " + j.value("source", "") +
                      " -> " + j.value("peer_site", "") + "/" + j.value("target", "");
      if (!j.value("test_network", "").empty()) s += " (tests: " + j.value("test_network", "") + ")";
      return s;
    }));
  });
}

void add_mapping_delete(CLI::App& mapping, Globals& g, int& rc) {
  auto o = std::make_shared<MappingDeleteOptions>();
  auto* del = mapping.add_subcommand("delete", "Delete a mapping (refused while a protected VM uses it)");
  del->add_option("id", o->id, "Mapping id from `evac mapping list`")->required();
  del->callback([&g, &rc, o] {
    rc = call_and_print(g, "DELETE", "/api/v1/mappings/" + path_part(o->id), std::nullopt,
                        as_message(g, [](const json&) { return std::string("mapping deleted"); }));
  });
}

}  // namespace

void add_mapping_commands(CLI::App& app, Globals& g, int& rc) {
  auto* mapping = app.add_subcommand("mapping", "Inventory mappings: which resource at the recovery site stands for one here");
  mapping->require_subcommand(1);
  add_mapping_create(*mapping, g, rc);
  mapping->add_subcommand("list", "List inventory mappings")->callback([&g, &rc] {
    rc = call_and_print(g, "GET", "/api/v1/mappings", std::nullopt,
                        as_list(g, {field("ID", "id"), field("KIND", "kind"), field("SOURCE", "source"),
                                    field("PEER", "peer_site"), field("TARGET", "target"), field("TEST-NETWORK", "test_network")}));
  });
  add_mapping_delete(*mapping, g, rc);
}

}  // namespace evac::cli
