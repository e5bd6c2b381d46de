// The network probes of a plan's application checks, from the evacd host
// to a recovered guest's address.
#pragma once

#include <string>

#include "core/status.h"

namespace evac {

// Connects to ip:port (IPv4) within 2 s. kUnavailable while nothing
// answers (the check polls again), kInvalidArgument for an address that is
// not IPv4.
Status tcp_connect(const std::string& ip, int port);

// The HTTP status `url` answers with (5 s bound, body discarded);
// kUnavailable while it does not answer.
Result<long> http_status(const std::string& url);

}  // namespace evac
