// evac adapter test: drives a replication engine through the conformance
// kit's sequence on a real backend, both sites' halves in this process,
// and prints each check with its evidence. Without --config the kit runs
// on file disks in a fresh folder (enough for the built-in replicator).
#include "cli/commands/adapter_commands.h"

#include <CLI/CLI.hpp>

#include <charconv>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <memory>
#include <sstream>

#include "cli/documents.h"
#include "config/daemon_config.h"
#include "core/json_decode.h"
#include "core/model_json.h"
#include "replication/conformance/conformance_kit.h"

namespace evac::cli {
namespace {
using nlohmann::json;
namespace fs = std::filesystem;

struct AdapterTestOptions {
  std::string kind, config, work_dir;
  bool keep = false;
};

// "64MiB", "1GiB", "1048576".
Result<std::uint64_t> parse_size(const std::string& text) {
  std::uint64_t scale = 1;
  std::string digits = text;
  for (auto [suffix, factor] : {std::pair{"KiB", 1ull << 10}, std::pair{"MiB", 1ull << 20}, std::pair{"GiB", 1ull << 30}})
    if (digits.size() > 3 && digits.compare(digits.size() - 3, 3, suffix) == 0) {
      digits.resize(digits.size() - 3);
      scale = factor;
    }
  std::uint64_t n = 0;
  const char* end = digits.data() + digits.size();
  if (digits.empty() || std::from_chars(digits.data(), end, n).ptr != end || n == 0 || n > (1ull << 40) / scale)
    return invalid_argument("size '" + excerpt(text) + "' is not a size from 1 byte to 1 TiB", "for example size: 64MiB");
  return n * scale;
}

Status read_site(const json* j, const std::string& role, const std::string& kind, const std::string& work_dir,
                 conformance::KitSite& site) {
  site.name = role == "protected" ? "kit-a" : "kit-b";
  if (j) {
    auto f = JsonFields::of(*j, "'" + role + "'");
    if (!f) return f.status();
    auto name = f->text("site", 63);
    auto state_dir = f->text("state_dir");
    auto storage = f->text("storage");
    auto evacd = f->text("evacd_config");
    auto rbd = f->text("rbd_options");
    for (const Status& s : {name.status(), state_dir.status(), storage.status(), evacd.status(), rbd.status(), f->finish()})
      if (!s) return s;
    site.name = name->value_or(site.name);
    site.state_dir = state_dir->value_or("");
    site.storage = storage->value_or("");
    site.rbd_options = rbd->value_or("");
    if (evacd->has_value()) {
      EVAC_ASSIGN_OR_RETURN(DaemonConfig cfg, load_daemon_config(**evacd));
      site.adapters = cfg.replication_adapters;
    }
  }
  if (site.state_dir.empty()) site.state_dir = work_dir + "/" + site.name + "/state";
  if (site.storage.empty()) site.storage = work_dir + "/" + site.name + "/storage";
  if (kind != "builtin" && std::none_of(site.adapters.begin(), site.adapters.end(),
                                        [&](const ReplicationAdapterConfig& a) { return a.kind == kind; }))
    return invalid_argument("'" + role + "' configures no replication adapter of kind '" + kind + "'",
                            "give the site's evacd.yaml as " + role + ".evacd_config in the kit's file");
  return Status::ok();
}

Result<conformance::KitConfig> load_kit(const AdapterTestOptions& o, bool& made_work_dir) {
  conformance::KitConfig kit;
  kit.kind = o.kind;
  json doc = json::object();
  if (!o.config.empty()) {
    std::ifstream in(o.config);
    if (!in) return invalid_argument("cannot read " + o.config, "check the path given to --config");
    std::stringstream text;
    text << in.rdbuf();
    EVAC_ASSIGN_OR_RETURN(auto docs, parse_documents(text.str(), o.config));
    if (docs.size() != 1) return invalid_argument(o.config + " must hold one document", "see docs/adapters.md");
    doc = docs.front();
  }
  auto f = JsonFields::of(doc, "the kit's file");
  if (!f) return f.status();
  auto kind = f->text("kind", 63);
  auto work_dir = f->text("work_dir");
  const json* protected_site = f->value("protected");
  const json* recovery_site = f->value("recovery");
  auto disks = f->list("disks", 16);
  for (const Status& s : {kind.status(), work_dir.status(), disks.status(), f->finish()})
    if (!s) return s;
  if (kind->has_value() && !kit.kind.empty() && **kind != kit.kind)
    return invalid_argument("--kind " + kit.kind + " and the file's kind '" + **kind + "' differ", "give one of them");
  if (kit.kind.empty()) kit.kind = kind->value_or("");
  if (kit.kind.empty()) return invalid_argument("which engine to test?", "give --kind, e.g. --kind builtin");
  kit.work_dir = !o.work_dir.empty() ? o.work_dir : work_dir->value_or("");
  if (kit.work_dir.empty()) {
    std::string tmpl = (fs::temp_directory_path() / "evac-kit-XXXXXX").string();
    if (!::mkdtemp(tmpl.data())) return failed_precondition("cannot create a folder under " + fs::temp_directory_path().string());
    kit.work_dir = tmpl;
    made_work_dir = true;
  }
  EVAC_RETURN_IF_ERROR(read_site(protected_site, "protected", kit.kind, kit.work_dir, kit.protected_site));
  EVAC_RETURN_IF_ERROR(read_site(recovery_site, "recovery", kit.kind, kit.work_dir, kit.recovery_site));
  if (kit.protected_site.name == kit.recovery_site.name)
    return invalid_argument("both sites are named '" + kit.protected_site.name + "'", "name the two sites apart");
  if (*disks) {
    for (const json& item : **disks) {
      auto d = JsonFields::of(item, "a disk of the kit");
      if (!d) return d.status();
      auto target = d->required_text("target", 32);
      auto format = d->text("format", 16);
      auto size = d->text("size", 32);
      const json* source = d->value("source");
      for (const Status& s : {target.status(), format.status(), size.status(), d->finish()})
        if (!s) return s;
      conformance::KitDisk disk;
      disk.target = *target;
      disk.format = format->value_or("raw");
      if (size->has_value()) {
        EVAC_ASSIGN_OR_RETURN(disk.size_bytes, parse_size(**size));
      }
      if (source) {
        EVAC_ASSIGN_OR_RETURN(disk.source, strict_disk_source(*source));
      }
      kit.disks.push_back(disk);
    }
  }
  if (kit.disks.empty()) kit.disks.push_back(conformance::KitDisk{"vda", DiskSource{}, "raw", 64u << 20});
  return kit;
}

void print_check(const conformance::Check& c) {
  std::cout << conformance::outcome_name(c.outcome) << "  " << c.operation << "\n";
  std::cout << "      asked:    " << c.asked << "\n";
  if (!c.answered.empty()) std::cout << "      answered: " << c.answered << "\n";
  for (const auto& what : c.checked) std::cout << "      checked:  " << what << "\n";
  if (!c.failure.empty()) std::cout << "      " << (c.outcome == conformance::Check::Outcome::kUnsupported ? "said:     " : "failure:  ") << c.failure << "\n";
  std::cout.flush();
}

json check_json(const conformance::Check& c) {
  return {{"operation", c.operation}, {"outcome", conformance::outcome_name(c.outcome)}, {"asked", c.asked},
          {"answered", c.answered}, {"checked", c.checked}, {"failure", c.failure}};
}

}  // namespace

void add_adapter_commands(CLI::App& app, Globals& g, int& rc) {
  auto* adapter = app.add_subcommand("adapter", "Replication adapters: the conformance kit");
  adapter->require_subcommand(1);
  auto o = std::make_shared<AdapterTestOptions>();
  auto* test = adapter->add_subcommand(
      "test", "Drive an engine through discover, sync, list, test copy, drop, sync, verify, prepare failover, failover, "
              "reverse and release on a real backend, checking every answer against the disks' bytes");
  test->add_option("--kind", o->kind, "The engine: builtin, or an adapter's kind (rbd, ...)");
  test->add_option("--config", o->config, "The kit's file: sites, their evacd.yaml, disks (docs/adapters.md)");
  test->add_option("--work-dir", o->work_dir, "Where the kit keeps its files (default: a new temporary folder)");
  test->add_flag("--keep", o->keep, "Keep the work folder afterwards");
  test->callback([&g, &rc, o] {
    bool made_work_dir = false;
    auto kit = load_kit(*o, made_work_dir);
    if (!kit) {
      rc = usage_error(kit.status().message(), kit.status().hint());
      return;
    }
    const bool as_json = g.format() != Format::kTable;
    if (!as_json)
      std::cout << "conformance kit: engine '" << kit->kind << "', sites " << kit->protected_site.name << " -> "
                << kit->recovery_site.name << ", work folder " << kit->work_dir << "\n\n";
    auto report = conformance::run_kit(*kit, as_json ? std::function<void(const conformance::Check&)>() : print_check);
    int passed = 0, failed = 0, unsupported = 0;
    json checks = json::array();
    for (const auto& c : report.checks) {
      checks.push_back(check_json(c));
      (c.outcome == conformance::Check::Outcome::kPassed ? passed
       : c.outcome == conformance::Check::Outcome::kFailed ? failed : unsupported)++;
    }
    if (as_json) {
      std::cout << json{{"kind", kit->kind}, {"passed", report.passed()}, {"checks", checks}}.dump(2) << "\n";
    } else {
      std::cout << "\n" << (report.passed() ? "PASSED" : "FAILED") << ": " << passed << " passed, " << failed
                << " failed, " << unsupported << " unsupported\n";
    }
    if (!o->keep && made_work_dir) {
      std::error_code ec;
      fs::remove_all(kit->work_dir, ec);
    }
    rc = report.passed() ? 0 : 1;
  });
}

}  // namespace evac::cli
