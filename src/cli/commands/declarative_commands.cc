// evac apply -f FILE and evac get KIND NAME: configuration as documents.
#include "cli/commands/declarative_commands.h"

#include <CLI/CLI.hpp>

#include <iostream>
#include <memory>

#include "cli/apply.h"

namespace evac::cli {
namespace {
using nlohmann::json;

struct ApplyOptions {
  std::string file;
  bool dry_run = false;
};

struct GetOptions {
  std::string kind, name;
};

void add_apply(CLI::App& app, Globals& g, int& rc) {
  auto o = std::make_shared<ApplyOptions>();
  auto* apply = app.add_subcommand(
      "apply",
      "Create or update what YAML (or JSON) documents describe (kind: RecoveryPlan), all or nothing: every document is "
      "checked against the site before any is applied, and if the site still refuses one, those applied before it are "
      "rolled back. Says per document: created, replaced or unchanged");
  apply->add_option("-f,--file", o->file,
                    "A file ('-' for standard input), documents separated by ---; or a folder: its *.yaml, *.yml and "
                    "*.json files (not its subfolders'), in name order, applied as one set. At most 4 MiB in all")
      ->required();
  apply->add_flag("--dry-run", o->dry_run, "Check every document against the site and say what would change; change nothing");
  apply->callback([&g, &rc, o] {
    DocumentBudget budget;
    auto docs = read_apply_input(o->file, std::cin, budget);
    if (!docs) {
      rc = usage_error(docs.status().message(), docs.status().hint());
      return;
    }
    if (docs->empty()) {
      rc = usage_error((o->file == "-" ? std::string("standard input") : o->file) + " holds no document",
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
        o->dry_run);
    rc = print_apply_report(outcome, std::cout, std::cerr, g.format());
  });
}

void add_get(CLI::App& app, Globals& g, int& rc) {
  auto o = std::make_shared<GetOptions>();
  auto* get = app.add_subcommand("get", "Print a configuration object in the form `evac apply -f` takes");
  get->add_option("kind", o->kind, "What to print: plan")->check(CLI::IsMember({"plan"}))->required();
  get->add_option("name", o->name, "Its name")->required();
  get->callback([&g, &rc, o] {
    rc = call_and_print(g, "GET", "/api/v1/plans/" + path_part(o->name), std::nullopt, [&](const json& j) {
      json doc = j;
      doc["kind"] = "RecoveryPlan";
      if (g.format() == Format::kJson) std::cout << doc.dump(2) << "\n";
      else std::cout << to_yaml(doc);  // a table would not round-trip: YAML unless JSON was asked for
    });
  });
}

}  // namespace

void add_declarative_commands(CLI::App& app, Globals& g, int& rc) {
  add_apply(app, g, rc);
  add_get(app, g, rc);
}

}  // namespace evac::cli
