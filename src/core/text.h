// Small text helpers shared by messages across layers.
#pragma once

#include <string>
#include <vector>

namespace evac {

// "a, b, c" from {"a", "b", "c"} with sep ", ".
inline std::string join(const std::vector<std::string>& items, const std::string& sep) {
  std::string out;
  for (const auto& i : items) out += (out.empty() ? "" : sep) + i;
  return out;
}

}  // namespace evac
