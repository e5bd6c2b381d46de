// evac-rbd-adapter: evac's Ceph RBD mirroring adapter, one operation per
// invocation (docs/adapters.md): the request on stdin, the answer on stdout.
#include <iostream>
#include <iterator>
#include <string>

#include "replication/external/adapter_side.h"
#include "replication/rbd/rbd_adapter.h"

int main() {
  constexpr std::size_t kMaxRequest = 16u << 20;
  std::string text;
  char buf[65536];
  while (std::cin.read(buf, sizeof buf) || std::cin.gcount() > 0) {
    text.append(buf, static_cast<std::size_t>(std::cin.gcount()));
    if (text.size() > kMaxRequest) {
      std::cout << evac::external::error_answer(evac::invalid_argument("the request is larger than 16 MiB")) << std::endl;
      return 0;
    }
  }
  auto invocation = evac::external::read_invocation(text);
  if (!invocation) {
    std::cout << evac::external::error_answer(invocation.status()) << std::endl;
    return 0;
  }
  auto result = evac::rbd::run_operation(*invocation);
  std::cout << (result ? evac::external::result_answer(*result) : evac::external::error_answer(result.status())) << std::endl;
  return 0;
}
