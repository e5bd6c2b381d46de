// Fuzz target: evacd's configuration file (YAML), as load_daemon_config
// reads it.
#include <cstddef>
#include <cstdint>
#include <string>

#include "config/daemon_config.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size > 64 * 1024) return 0;  // load_daemon_config refuses files past 1 MiB; the parser is what is fuzzed
  (void)evac::parse_daemon_config(std::string(reinterpret_cast<const char*>(data), size), "fuzz.yaml");
  return 0;
}
