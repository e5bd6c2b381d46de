// What the CLI reads from files: YAML (or JSON, which is YAML) documents,
// read and converted to JSON within limits, so that a hostile or broken
// file (a "billion laughs" of aliases, a thousand nested brackets, a
// gigabyte of anything) is refused with a clear error instead of taking
// the machine's memory or the process's stack.
//
// The conversion works on the parser's events and never builds yaml-cpp's
// node graph: an alias is expanded by copying the value it names, and the
// copy is counted against the budget before it is made.
#pragma once

#include <cstddef>
#include <iosfwd>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/status.h"

namespace evac::cli {

struct DocumentLimits {
  // Bytes read from one file (or standard input), and from all the files of
  // one `evac apply -f FOLDER` together.
  std::size_t max_file_bytes = 4 * 1024 * 1024;
  // Values (scalars, lists, maps, keys) after aliases are expanded, over
  // everything one command reads. A plan has a few hundred.
  std::size_t max_nodes = 100'000;
  // Lists and maps inside one another. A plan is 5 deep.
  std::size_t max_depth = 64;
  // Bytes of scalars and keys after aliases are expanded.
  std::size_t max_text_bytes = 8 * 1024 * 1024;
};

// What the documents one command reads have used of the limits so far.
struct DocumentBudget {
  DocumentLimits limits;
  std::size_t bytes_read = 0;
  std::size_t nodes = 0;
  std::size_t text_bytes = 0;
};

// Reads all of `in`, refusing more than what is left of the budget's
// max_file_bytes; `source` names it in errors.
Result<std::string> read_limited(std::istream& in, const std::string& source, DocumentBudget& budget);
// The same for a file; a folder, a missing or unreadable file are errors
// that say so.
Result<std::string> read_file_limited(const std::string& path, DocumentBudget& budget);

// The documents of a YAML (or JSON) text, separated by "---", as JSON
// values: quoted scalars are strings, plain ones are numbers, booleans or
// null when they read as such. `source` names the text in errors. Empty
// documents are skipped.
Result<std::vector<nlohmann::json>> parse_documents(const std::string& text, const std::string& source,
                                                    DocumentBudget& budget);
Result<std::vector<nlohmann::json>> parse_documents(const std::string& text, const std::string& source,
                                                    const DocumentLimits& limits = {});

// What a plain (unquoted) YAML scalar means: null, a boolean, a number, or
// else a string (YAML 1.2's core schema; "yes"/"no" stay strings).
nlohmann::json plain_scalar(const std::string& s);

// "4 MiB", "100000": a limit as an error message states it.
std::string format_limit_bytes(std::size_t bytes);

}  // namespace evac::cli
