#include "cli/apply.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <map>
#include <ostream>
#include <set>

#include "cli/output.h"
#include "core/plan.h"
#include "core/plan_json.h"

namespace evac::cli {
namespace {

using nlohmann::json;
namespace fs = std::filesystem;

constexpr const char* kKind = "RecoveryPlan";

std::string plan_named(const std::string& name) { return "recovery plan '" + name + "'"; }

// Problems one per line under a heading when there are several:
// "3 problems, in 2 of 4 documents:".
std::string list_problems(const std::vector<std::string>& problems, std::size_t refused, std::size_t documents) {
  if (problems.size() == 1) return problems[0];
  std::string out = std::to_string(problems.size()) + " problems, in " +
                    (documents == 1 ? std::string("the document") : std::to_string(refused) + " of " + std::to_string(documents) + " documents") +
                    ":";
  for (const auto& p : problems) out += "\n  " + p;
  return out;
}

// The server's hints end with "nothing was changed" for its own request;
// across documents the CLI says what it changed itself.
std::string own_hint(std::string hint) {
  for (const char* tail : {"; nothing was changed", ", nothing was changed", "nothing was changed"}) {
    auto at = hint.rfind(tail);
    if (at != std::string::npos && at + std::strlen(tail) == hint.size()) {
      hint.erase(at);
      break;
    }
  }
  return hint;
}

bool all_digits(const std::string& s) {
  return !s.empty() && std::all_of(s.begin(), s.end(), [](unsigned char c) { return std::isdigit(c) != 0; });
}

// A duration needs its unit: "15" could be seconds or minutes.
void check_duration(const json& parent, const char* key, const std::string& where, std::vector<std::string>& problems) {
  if (!parent.is_object() || !parent.contains(key)) return;
  const json& v = parent[key];
  std::string text;
  if (v.is_number_integer() || v.is_number_unsigned()) text = v.dump();
  else if (v.is_string() && all_digits(v.get<std::string>())) text = v.get<std::string>();
  else return;
  problems.push_back(where + "." + key + ": " + text + " has no unit: write " + text + "s or " + text + "m");
}

void check_durations(const json& doc, const std::string& source, std::vector<std::string>& problems) {
  if (!doc.contains("vms") || !doc["vms"].is_array()) return;
  for (std::size_t i = 0; i < doc["vms"].size(); ++i) {
    const json& vm = doc["vms"][i];
    const std::string at = source + ": plan.vms[" + std::to_string(i) + "]";
    check_duration(vm, "wait_for_guest", at, problems);
    if (!vm.is_object()) continue;
    for (const char* list : {"checks", "before_power_on", "after_power_on"}) {
      if (!vm.contains(list) || !vm[list].is_array()) continue;
      for (std::size_t k = 0; k < vm[list].size(); ++k) {
        const std::string item = at + "." + list + "[" + std::to_string(k) + "]";
        check_duration(vm[list][k], "timeout", item, problems);
        check_duration(vm[list][k], "interval", item, problems);
      }
    }
  }
}

// A plan as the site would store it, without its times: what "unchanged"
// compares and what a rollback puts back.
Result<json> normalized(json doc) {
  if (doc.is_object())
    for (const char* k : {"created_at", "updated_at", "ready", "stored_at"}) doc.erase(k);
  auto plan = plan_from_json(doc);
  if (!plan) return plan.status();
  json out = plan_to_json(*plan);
  out.erase("created_at");
  out.erase("updated_at");
  return out;
}

// One document on its way: what the site holds now, what it will do.
struct Item {
  const SourceDocument* src = nullptr;
  std::string name;
  RecoveryPlan plan;
  json doc;                       // as written, what is sent
  json wanted;                    // normalized
  std::optional<json> previous;   // this site's plan of that name before, normalized
  std::string outcome;            // created, replaced, unchanged
};

// The VM names of each protection group the site knows: its own first,
// then those of its peers' configuration copies (as the site resolves them).
struct SiteGroups {
  std::map<std::string, std::vector<std::string>> own;
  std::vector<std::map<std::string, std::vector<std::string>>> peers;

  std::optional<std::vector<std::string>> vms_of(const std::string& group) const {
    if (auto it = own.find(group); it != own.end()) return it->second;
    for (const auto& p : peers)
      if (auto it = p.find(group); it != p.end()) return it->second;
    return std::nullopt;
  }
};

std::vector<std::string> vm_names(const json& group) {
  std::vector<std::string> names;
  if (!group.is_object() || !group.contains("vms") || !group["vms"].is_array()) return names;
  for (const auto& v : group["vms"])
    if (v.is_object() && v.contains("name") && v["name"].is_string()) names.push_back(v["name"]);
  return names;
}

// What the site checks on saving a plan, against its groups (the site
// does the same again when the plan arrives).
Status check_against_site(const RecoveryPlan& plan, const SiteGroups& groups) {
  return validate_plan_groups(plan, [&](const std::string& g) { return groups.vms_of(g); });
}

json entry(const Item& it, const std::string& result) {
  return json{{"source", it.src->source}, {"kind", kKind}, {"name", it.name}, {"result", result}};
}

// Writes the plans a rollback could not put back where the operator can
// apply them again; the file's name, or empty if it could not be written.
std::string save_for_restore(const std::vector<const Item*>& items) {
  std::string text;
  for (const auto* it : items) {
    json doc = *it->previous;
    doc["kind"] = kKind;
    text += (text.empty() ? "" : "---\n") + to_yaml(doc);
  }
  std::error_code ec;
  fs::path dir = fs::temp_directory_path(ec);
  if (ec) dir = "/tmp";
  const auto stamp = std::chrono::system_clock::now().time_since_epoch().count();
  const std::string path = (dir / ("evac-apply-restore-" + std::to_string(::getpid()) + "-" + std::to_string(stamp) + ".yaml")).string();
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd < 0) return "";
  bool ok = ::write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size());
  ::close(fd);
  return ok ? path : "";
}

// Problems found before anything is sent, one line each; the hints the
// checks gave, each once, in the order found; the documents they refuse.
struct Findings {
  std::vector<std::string> problems, hints;
  std::set<std::size_t> refused;

  void hint_of(const Status& s) {
    std::string h = own_hint(s.hint());
    if (!h.empty() && std::find(hints.begin(), hints.end(), h) == hints.end()) hints.push_back(h);
  }
  std::string joined_hints(std::string fallback) const {
    std::string out;
    for (const auto& h : hints) out += (out.empty() ? "" : "; ") + h;
    return out.empty() ? fallback : out;
  }
};

// The report of an apply refused before anything was sent: every problem,
// in the documents' order whichever check found it, and every document
// refused or not applied.
ApplyReport refused_report(const std::vector<SourceDocument>& docs, const Findings& f, std::string hint, bool dry_run) {
  ApplyReport r;
  r.dry_run = dry_run;
  auto index_of = [&](const std::string& p) {
    for (std::size_t i = docs.size(); i-- > 0;)
      if (p.rfind(docs[i].source + ":", 0) == 0) return i;
    return docs.size();
  };
  std::vector<std::string> problems = f.problems;
  std::stable_sort(problems.begin(), problems.end(),
                   [&](const std::string& a, const std::string& b) { return index_of(a) < index_of(b); });
  for (std::size_t i = 0; i < docs.size(); ++i)
    r.documents.push_back(json{{"source", docs[i].source},
                               {"kind", kKind},
                               {"name", docs[i].doc.value("name", "")},
                               {"result", f.refused.count(i) ? "refused" : "not applied"}});
  r.error = invalid_argument(list_problems(problems, f.refused.size(), docs.size()), std::move(hint));
  r.notes.push_back("nothing was changed");
  return r;
}

// Phase 1: what each document says on its own. Fills `items` (one per
// document: its name, its plan and that plan normalized when it reads).
Findings check_documents(const std::vector<SourceDocument>& docs, std::vector<Item>& items) {
  Findings f;
  std::map<std::string, std::size_t> by_name;
  for (std::size_t i = 0; i < docs.size(); ++i) {
    Item& it = items[i];
    it.src = &docs[i];
    it.doc = docs[i].doc;
    it.name = it.doc.value("name", "");
    const std::size_t before = f.problems.size();
    check_durations(it.doc, docs[i].source, f.problems);
    const bool unitless = f.problems.size() > before;  // said once, in the CLI's words
    if (auto p = plan_from_json(it.doc); !p) {
      if (!unitless) {
        f.problems.push_back(docs[i].source + ": " + p.status().message());
        f.hint_of(p.status());
      }
    } else {
      it.plan = std::move(*p);
      it.wanted = plan_to_json(it.plan);
      it.wanted.erase("created_at");
      it.wanted.erase("updated_at");
    }
    if (auto [at, fresh] = by_name.emplace(it.name, i); !fresh)
      f.problems.push_back(docs[i].source + ": " + plan_named(it.name) + " is also in " + docs[at->second].source +
                           ": one document per plan");
    if (f.problems.size() > before) f.refused.insert(i);
  }
  return f;
}

// What the site holds that the documents are checked against.
struct SiteState {
  std::string here;                        // the site's name
  std::map<std::string, json> own_plans;   // the plans it stores itself, by name
  SiteGroups known;                        // the groups its plans can cover
};

// Phase 2: reads the site's name, its plans, its groups and its peers'
// configuration copies, in that order; the first that cannot be read fails.
Result<SiteState> read_site(const ApiCall& call) {
  auto fetch = [&](const std::string& path) -> Result<json> {
    auto got = call("GET", path, std::nullopt);
    if (!got) return got.status().with_context("reading what the site holds (" + path + ")");
    return got;
  };
  EVAC_ASSIGN_OR_RETURN(json site, fetch("/api/v1/site"));
  EVAC_ASSIGN_OR_RETURN(json plans, fetch("/api/v1/plans"));
  EVAC_ASSIGN_OR_RETURN(json groups, fetch("/api/v1/groups"));
  EVAC_ASSIGN_OR_RETURN(json copies, fetch("/api/v1/peer-copies"));
  SiteState s;
  s.here = site.value("name", "");
  for (const auto& p : plans)
    if (p.is_object() && p.value("stored_at", s.here) == s.here && p.contains("name") && p["name"].is_string())
      s.own_plans.emplace(p["name"].get<std::string>(), p);
  for (const auto& g : groups)
    if (g.is_object() && g.contains("name") && g["name"].is_string()) s.known.own[g["name"]] = vm_names(g);
  for (const auto& c : copies) {
    if (!c.is_object() || !c.contains("document") || !c["document"].is_object()) continue;
    std::map<std::string, std::vector<std::string>> theirs;
    for (const auto& g : c["document"].value("groups", json::array()))
      if (g.is_object() && g.contains("name") && g["name"].is_string()) theirs.emplace(g["name"], vm_names(g));
    s.known.peers.push_back(std::move(theirs));
  }
  return s;
}

// Phase 3: what the site would say to each document not refused yet, and
// what each would change (its outcome, and the plan it replaces).
void check_documents_against_site(std::vector<Item>& items, const SiteState& site, Findings& f) {
  for (std::size_t i = 0; i < items.size(); ++i) {
    Item& it = items[i];
    if (f.refused.count(i)) continue;
    if (Status s = check_against_site(it.plan, site.known); !s) {
      f.problems.push_back(it.src->source + ": " + s.message());
      f.hint_of(s);
      f.refused.insert(i);
      continue;
    }
    auto existing = site.own_plans.find(it.name);
    if (existing == site.own_plans.end()) {
      it.outcome = "created";
      continue;
    }
    auto before = normalized(existing->second);
    if (!before) {
      // A stored plan this CLI cannot read: replace it, but it cannot be
      // put back by this CLI if a later document is refused.
      f.problems.push_back(it.src->source + ": the site's " + plan_named(it.name) + " cannot be read back by this evac (" +
                           before.status().message() + "), so it could not be restored if another document failed");
      f.refused.insert(i);
      continue;
    }
    it.previous = *before;
    it.outcome = *before == it.wanted ? "unchanged" : "replaced";
  }
}

// The document the site did not store, and whether it said so or did not
// answer (then it may or may not have stored it).
struct Failure {
  std::size_t index = 0;
  bool uncertain = false;
};

// Phase 4: sends the changed documents in order, stopping at the first the
// site does not store (its error in r). `applied`: those it stored.
std::optional<Failure> put_documents(const std::vector<Item>& items, const ApiCall& call, ApplyReport& r,
                                     std::vector<std::size_t>& applied) {
  for (std::size_t i = 0; i < items.size(); ++i) {
    const Item& it = items[i];
    if (it.outcome == "unchanged") continue;
    auto put = call("PUT", "/api/v1/plans/" + path_part(it.name), it.doc);
    if (put) {
      applied.push_back(i);
      r.changed = true;
      continue;
    }
    const Status& s = put.status();
    // No answer: the site may or may not have stored it.
    const bool uncertain = s.code() == StatusCode::kUnavailable || s.code() == StatusCode::kInternal;
    const std::string verb = uncertain ? " could not be applied: " : " was refused: ";
    r.error = Status(s.code(), it.src->source + ": " + plan_named(it.name) + verb + s.message(), own_hint(s.hint()));
    return Failure{i, uncertain};
  }
  return std::nullopt;
}

// Whether the failed document, which the site did not answer for, was
// stored after all: "applied" (then added to `applied`, to be undone with
// the others), "not applied", or "unknown" (with a note saying how to tell).
std::string settle_unanswered(const Item& it, std::size_t index, const std::string& here, const ApiCall& call,
                              ApplyReport& r, std::vector<std::size_t>& applied) {
  auto now = call("GET", "/api/v1/plans", std::nullopt);
  std::optional<json> stored;
  bool known_state = now.is_ok();
  if (now) {
    for (const auto& p : *now)
      if (p.is_object() && p.value("stored_at", here) == here && p.value("name", "") == it.name) {
        auto n = normalized(p);
        if (n) stored = *n;
        else known_state = false;
      }
  }
  if (!known_state) {
    r.notes.push_back("UNKNOWN: whether " + plan_named(it.name) + " (" + it.src->source +
                      ") was stored: the site did not answer; check it with `evac get plan " + it.name + " -o yaml`");
    return "unknown";
  }
  if (stored && *stored == it.wanted) {
    applied.push_back(index);  // it was: undo it with the others
    r.changed = true;
    return "applied";
  }
  return "not applied";
}

// What a rollback did to each applied document, and what it left to do.
struct Rollback {
  std::map<std::size_t, std::string> results;  // "rolled back" or "NOT rolled back"
  std::vector<const Item*> to_restore_by_hand;  // replaced plans it could not put back
  bool all_undone = true;
};

// Undoes the applied documents, last first: deletes a plan this apply
// created (one already gone counts as deleted), puts back the one it
// replaced as fetched before. A note for each in r.
Rollback roll_back(const std::vector<Item>& items, const std::vector<std::size_t>& applied, const ApiCall& call,
                   ApplyReport& r) {
  Rollback b;
  for (auto i = applied.rbegin(); i != applied.rend(); ++i) {
    const Item& it = items[*i];
    const std::string what = plan_named(it.name) + " (" + it.outcome + " by this apply from " + it.src->source + ")";
    if (it.outcome == "created") {
      auto del = call("DELETE", "/api/v1/plans/" + path_part(it.name), std::nullopt);
      if (del || del.status().code() == StatusCode::kNotFound) {
        b.results[*i] = "rolled back";
        r.notes.push_back("rolled back: " + what + ": deleted");
      } else {
        b.all_undone = false;
        b.results[*i] = "NOT rolled back";
        r.notes.push_back("NOT rolled back: " + what + " could not be deleted: " + del.status().message() +
                          "; delete it with `evac plan delete " + it.name + "`");
      }
    } else {
      auto put = call("PUT", "/api/v1/plans/" + path_part(it.name), *it.previous);
      if (put) {
        b.results[*i] = "rolled back";
        r.notes.push_back("rolled back: " + what + ": restored to the document it had before");
      } else {
        b.all_undone = false;
        b.results[*i] = "NOT rolled back";
        b.to_restore_by_hand.push_back(&it);
        r.notes.push_back("NOT rolled back: " + what + " could not be restored: " + put.status().message());
      }
    }
  }
  return b;
}

// Finishes the report of a failed apply after its rollback: where the plans
// it could not put back were saved, what the site holds now, and each
// document's result.
void report_rollback(const std::vector<Item>& items, const std::vector<std::size_t>& applied, const Failure& failed,
                     const std::string& failed_result, const Rollback& b, ApplyReport& r) {
  if (!b.to_restore_by_hand.empty()) {
    const std::string file = save_for_restore(b.to_restore_by_hand);
    const bool one = b.to_restore_by_hand.size() == 1;
    const std::string whose = one ? "the document " + plan_named(b.to_restore_by_hand[0]->name) + " had before"
                                  : "the documents they had before";
    r.notes.push_back(file.empty() ? whose + " could not be saved to a file: `evac get plan NAME` shows what the site "
                                             "holds now"
                                   : whose + (one ? " is in " : " are in ") + file + ": restore " + (one ? "it" : "them") +
                                         " with `evac apply -f " + file + "`");
  }
  if (applied.empty() && failed_result != "unknown") {
    r.notes.push_back("nothing was changed");
  } else if (b.all_undone && failed_result != "unknown") {
    r.changed = false;
    r.notes.push_back("every plan is as it was before this apply (restored plans carry a new update time)");
  } else {
    r.notes.push_back("the site holds some of these documents and not others: see above");
  }
  for (std::size_t i = 0; i < items.size(); ++i) {
    std::string result;
    if (auto at = b.results.find(i); at != b.results.end()) result = at->second;
    else if (i == failed.index) result = failed_result;
    else if (items[i].outcome == "unchanged") result = "unchanged";
    else result = "not applied";
    r.documents.push_back(entry(items[i], result));
  }
}

}  // namespace

std::string path_part(const std::string& s) {
  std::string out;
  for (unsigned char c : s) {
    if (std::isalnum(c) || c == '-' || c == '_' || c == '.') {
      out += static_cast<char>(c);
    } else {
      char buf[4];
      std::snprintf(buf, sizeof buf, "%%%02X", c);
      out += buf;
    }
  }
  return out;
}

Result<std::vector<SourceDocument>> read_apply_input(const std::string& path, std::istream& in, DocumentBudget& budget) {
  std::vector<SourceDocument> out;
  auto add = [&](const std::string& text, const std::string& source) -> Status {
    auto docs = parse_documents(text, source, budget);
    if (!docs) return docs.status();
    for (std::size_t i = 0; i < docs->size(); ++i)
      out.push_back({docs->size() > 1 ? source + " document " + std::to_string(i + 1) : source, std::move((*docs)[i])});
    return Status::ok();
  };
  if (path == "-") {
    auto text = read_limited(in, "standard input", budget);
    if (!text) return text.status();
    EVAC_RETURN_IF_ERROR(add(*text, "standard input"));
    return out;
  }
  std::error_code ec;
  const auto status = fs::status(path, ec);
  if (ec || !fs::exists(status))
    return invalid_argument("cannot read " + path + ": " + (ec ? ec.message() : "no such file or folder"), "check the path");
  if (!fs::is_directory(status)) {
    auto text = read_file_limited(path, budget);
    if (!text) return text.status();
    EVAC_RETURN_IF_ERROR(add(*text, path));
    return out;
  }
  // A folder: its files that hold documents, in name order, as one set.
  std::vector<fs::path> files;
  for (fs::directory_iterator it(path, ec), end; !ec && it != end; it.increment(ec)) {
    const fs::path p = it->path();
    const std::string name = p.filename().string(), ext = p.extension().string();
    if (name.empty() || name[0] == '.') continue;
    if (ext != ".yaml" && ext != ".yml" && ext != ".json") continue;
    std::error_code ec2;
    if (!fs::is_regular_file(it->status(ec2))) continue;  // subfolders are not read
    files.push_back(p);
  }
  if (ec) return invalid_argument("cannot list the folder " + path + ": " + ec.message(), "check that you may read it");
  if (files.empty())
    return invalid_argument(path + " is a folder with no .yaml, .yml or .json file in it",
                            "evac apply -f FOLDER applies the files directly in it (not in its subfolders); name a "
                            "file, or a folder that holds them");
  std::sort(files.begin(), files.end());
  for (const auto& f : files) {
    auto text = read_file_limited(f.string(), budget);
    if (!text) return text.status();
    EVAC_RETURN_IF_ERROR(add(*text, f.string()));
  }
  return out;
}

Status check_kinds(const std::vector<SourceDocument>& docs) {
  std::vector<std::string> problems;
  std::set<const SourceDocument*> refused;
  for (const auto& d : docs) {
    const std::size_t before = problems.size();
    if (!d.doc.is_object()) {
      refused.insert(&d);
      problems.push_back(d.source + " is not a map of keys (kind: RecoveryPlan, name: ...)");
      continue;
    }
    if (!d.doc.contains("kind")) {
      problems.push_back(d.source + " has no kind:");
    } else if (!d.doc["kind"].is_string() || d.doc["kind"] != kKind) {
      problems.push_back(d.source + " is kind: " + (d.doc["kind"].is_string() ? d.doc["kind"].get<std::string>() : d.doc["kind"].dump()) +
                         ", which evac apply does not know");
    }
    if (!d.doc.contains("name") || !d.doc["name"].is_string() || d.doc["name"].get<std::string>().empty())
      problems.push_back(d.source + " has no name:");
    if (problems.size() > before) refused.insert(&d);
  }
  if (problems.empty()) return Status::ok();
  return invalid_argument(list_problems(problems, refused.size(), docs.size()),
                          "evac apply knows kind: RecoveryPlan, each with a name:; nothing was changed");
}

ApplyReport apply_documents(const std::vector<SourceDocument>& docs, const ApiCall& call, bool dry_run) {
  ApplyReport r;
  r.dry_run = dry_run;
  std::vector<Item> items(docs.size());
  Findings f = check_documents(docs, items);
  // The documents wrong in themselves are not sent: the others are still
  // checked against the site, so that one error lists every problem.
  const bool shape_problems = !f.problems.empty();

  auto site = read_site(call);
  if (!site && shape_problems) {
    ApplyReport refused = refused_report(docs, f, f.joined_hints("see docs/plans.md for the plan's shape"), dry_run);
    refused.notes.insert(refused.notes.begin(),
                         "the other documents could not be checked against the site: " + site.status().message());
    return refused;
  }
  if (!site) {
    for (const auto& it : items) r.documents.push_back(entry(it, "not applied"));
    r.error = site.status();
    r.notes.push_back("nothing was changed");
    return r;
  }

  check_documents_against_site(items, *site, f);
  if (!f.problems.empty()) return refused_report(docs, f, f.joined_hints("fix the documents and apply again"), dry_run);

  if (dry_run) {
    for (const auto& it : items) r.documents.push_back(entry(it, it.outcome));
    r.notes.push_back("dry run: nothing was changed");
    return r;
  }

  // Apply, in order; on a failure, undo what was applied.
  std::vector<std::size_t> applied;
  const std::optional<Failure> failed = put_documents(items, call, r, applied);
  if (!failed) {
    for (const auto& it : items) r.documents.push_back(entry(it, it.outcome));
    return r;
  }
  const std::string failed_result =
      failed->uncertain ? settle_unanswered(items[failed->index], failed->index, site->here, call, r, applied)
                        : "refused";
  const Rollback undone = roll_back(items, applied, call, r);
  report_rollback(items, applied, *failed, failed_result, undone, r);
  return r;
}

int print_apply_report(const ApplyReport& report, std::ostream& out, std::ostream& err, Format format) {
  const bool ok = report.error.is_ok();
  if (format != Format::kTable) {
    json j = {{"dry_run", report.dry_run}, {"applied", ok && !report.dry_run}, {"documents", report.documents},
              {"notes", report.notes}};
    if (!ok) j["error"] = {{"message", report.error.message()}, {"hint", report.error.hint()}};
    print_object(out, j, format);
  } else if (ok) {
    const bool several = report.documents.size() > 1;
    for (const auto& d : report.documents) {
      std::string result = d.value("result", "");
      if (report.dry_run) result = result == "unchanged" ? "would be unchanged" : "would be " + result;
      out << plan_named(d.value("name", "")) << " " << result;
      if (several) out << " (" << d.value("source", "") << ")";
      if (d.value("result", "") == "unchanged") out << ": the site holds it as written";
      out << "\n";
    }
    for (const auto& n : report.notes) out << n << "\n";
  }
  if (ok) return 0;
  err << "error: " << report.error.message() << "\n";
  if (!report.error.hint().empty()) err << "hint: " << report.error.hint() << "\n";
  for (const auto& n : report.notes) err << n << "\n";
  return 1;
}

}  // namespace evac::cli
