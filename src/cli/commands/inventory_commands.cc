// evac inventory: the site's compute providers and their VMs, networks and pools.
#include "cli/commands/inventory_commands.h"

#include <CLI/CLI.hpp>

#include <iostream>
#include <memory>

#include "cli/apply.h"
#include "core/model.h"

namespace evac::cli {
namespace {
using nlohmann::json;

struct ProviderFilter {
  std::string provider;
};

struct InventoryVmOptions {
  std::string name;
};

std::string provider_query(const ProviderFilter& o) {
  return o.provider.empty() ? std::string() : "?provider=" + path_part(o.provider);
}

// A NIC's attachment as mappings name it: "prod", "bridge:br0", "direct:eth1".
std::string nic_attachment(const json& nic) {
  NicInfo n;
  n.network = nic.value("network", "");
  n.type = nic.value("type", "");
  return attachment_of(n).key();
}

void add_inventory_vms(CLI::App& inv, Globals& g, int& rc) {
  auto o = std::make_shared<ProviderFilter>();
  auto* vms = inv.add_subcommand("vms", "VMs with their state, sizes, disks and networks");
  vms->add_option("--provider", o->provider, "Only this compute provider");
  vms->callback([&g, &rc, o] {
    rc = call_and_print(g, "GET", "/api/v1/inventory/vms" + provider_query(*o), std::nullopt,
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
}

void add_inventory_vm(CLI::App& inv, Globals& g, int& rc) {
  auto o = std::make_shared<InventoryVmOptions>();
  auto* vm = inv.add_subcommand("vm", "One VM in full");
  vm->add_option("name", o->name, "Name, UUID or PROVIDER/NAME")->required();
  vm->callback([&g, &rc, o] {
    rc = call_and_print(g, "GET", "/api/v1/inventory/vms/" + path_part(o->name), std::nullopt, [&](const json& j) {
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
}

void add_inventory_networks(CLI::App& inv, Globals& g, int& rc) {
  auto o = std::make_shared<ProviderFilter>();
  auto* nets = inv.add_subcommand("networks", "Networks");
  nets->add_option("--provider", o->provider, "Only this compute provider");
  nets->callback([&g, &rc, o] {
    rc = call_and_print(g, "GET", "/api/v1/inventory/networks" + provider_query(*o), std::nullopt,
                        as_list(g, {field("NAME", "name"), field("KIND", "kind"), field("PROVIDER", "provider"), field("BRIDGE", "bridge"),
                                    field("ACTIVE", "active"), field("ISOLATED", "isolated"),
                                    field("JUDGED-FROM", "isolation")}));
  });
}

void add_inventory_pools(CLI::App& inv, Globals& g, int& rc) {
  auto o = std::make_shared<ProviderFilter>();
  auto* pools = inv.add_subcommand("pools", "Storage pools");
  pools->add_option("--provider", o->provider, "Only this compute provider");
  pools->callback([&g, &rc, o] {
    rc = call_and_print(g, "GET", "/api/v1/inventory/storage-pools" + provider_query(*o), std::nullopt,
                        as_list(g, {field("NAME", "name"), field("PROVIDER", "provider"), field("TYPE", "type"),
                                    field("PATH", "path"), field("ACTIVE", "active")}));
  });
}

}  // namespace

void add_inventory_commands(CLI::App& app, Globals& g, int& rc) {
  auto* inv = app.add_subcommand("inventory", "What the site's compute providers hold");
  inv->require_subcommand(1);
  inv->add_subcommand("providers", "Compute providers and whether they answer")->callback([&g, &rc] {
    rc = call_and_print(g, "GET", "/api/v1/inventory/providers", std::nullopt,
                        as_list(g, {field("NAME", "name"), field("KIND", "kind"), field("URI", "uri"),
                                    field("REACHABLE", "reachable"), field("ERROR", "error.message")}));
  });
  add_inventory_vms(*inv, g, rc);
  add_inventory_vm(*inv, g, rc);
  add_inventory_networks(*inv, g, rc);
  add_inventory_pools(*inv, g, rc);
}

}  // namespace evac::cli
