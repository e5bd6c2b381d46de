// Serves an ApiRouter over HTTPS (cpp-httplib). Clients may present a TLS
// certificate; it is not checked against a CA here but turned into a pin
// that the router matches against paired sites.
#pragma once

#include <memory>
#include <string>

#include "api/router.h"
#include "core/status.h"
#include "tls/tls.h"

namespace httplib {
class SSLServer;
}

namespace evac {

class HttpsServer {
 public:
  HttpsServer(ApiRouter& router, TlsIdentity identity);
  ~HttpsServer();

  // Binds; port 0 picks a free port. Returns the bound port.
  Result<int> bind(const std::string& host, int port);
  // Serves until stop() (blocking).
  void serve();
  void stop();

 private:
  ApiRouter& router_;
  TlsIdentity identity_;
  std::unique_ptr<httplib::SSLServer> server_;
};

}  // namespace evac
