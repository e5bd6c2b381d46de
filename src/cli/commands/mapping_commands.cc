// evac mapping: inventory mappings from this site's resources to the recovery site's.
#include "cli/commands/mapping_commands.h"

#include <CLI/CLI.hpp>

#include <memory>

#include "cli/apply.h"

namespace evac::cli {
namespace {
using nlohmann::json;

}  // namespace

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

}  // namespace evac::cli
