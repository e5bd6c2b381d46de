// `evac apply -f`: declarative configuration, all or nothing.
//
// Every document is read and checked before anything is sent: its kind and
// name, its shape (unknown keys, types, durations with their units), then,
// against what the site holds (its groups and their VMs, its plans), what
// the site itself would check on saving it. Only then are the documents
// applied, in order, skipping those the site already holds as written. The
// API has no transactions across documents: if the site still refuses one
// (or stops answering), the ones applied before it are rolled back (a plan
// this apply created is deleted, a plan it replaced is put back as it was
// fetched before), and the report says precisely what was and was not
// rolled back.
#pragma once

#include <functional>
#include <iosfwd>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "cli/documents.h"
#include "cli/output.h"
#include "core/status.h"

namespace evac::cli {

struct SourceDocument {
  std::string source;  // "plans.yaml", "plans.yaml document 2"
  nlohmann::json doc;
};

// The documents `evac apply -f PATH` names: "-" for standard input (`in`),
// a file, or a folder: its *.yaml, *.yml and *.json files (not those of its
// subfolders, nor hidden ones), in name order, read as one set. The
// budget's limits cover everything read.
Result<std::vector<SourceDocument>> read_apply_input(const std::string& path, std::istream& in, DocumentBudget& budget);

// What the command line got wrong about the documents themselves, before
// any is sent: a document that is not a map, of no or an unknown kind, or
// without a name. Every problem listed.
Status check_kinds(const std::vector<SourceDocument>& docs);

using ApiCall = std::function<Result<nlohmann::json>(const std::string& method, const std::string& path,
                                                     const std::optional<nlohmann::json>& body)>;

struct ApplyReport {
  // One entry per document: source, kind, name and result: created,
  // replaced or unchanged (with dry_run: what would be); after a failure
  // also "refused", "not applied", "rolled back" or "NOT rolled back".
  std::vector<nlohmann::json> documents;
  Status error;                     // ok when every document was applied
  std::vector<std::string> notes;   // what was rolled back, and what to do about what was not
  bool changed = false;             // the site holds something other than before
  bool dry_run = false;
};

// `dry_run`: every check, and what each document would do; no change.
ApplyReport apply_documents(const std::vector<SourceDocument>& docs, const ApiCall& call, bool dry_run = false);

// An ApplyReport as `evac apply` prints it: the per-document lines (to
// standard output) and, on failure, the error, its hint and the notes (to
// standard error). Returns the exit status: 0 applied, 1 not.
int print_apply_report(const ApplyReport& report, std::ostream& out, std::ostream& err, Format format);

// A name made safe for a URL path segment.
std::string path_part(const std::string& s);

}  // namespace evac::cli
