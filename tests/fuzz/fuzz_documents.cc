// Fuzz target: what `evac apply -f` reads (YAML or JSON, several
// documents), through the CLI's bounded reader, then each document as a
// plan.
#include <cstddef>
#include <cstdint>
#include <string>

#include "cli/documents.h"
#include "core/plan_json.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  auto docs = evac::cli::parse_documents(std::string(reinterpret_cast<const char*>(data), size), "fuzz.yaml");
  if (!docs) return 0;
  for (const auto& d : *docs) (void)evac::plan_from_json(d);
  return 0;
}
