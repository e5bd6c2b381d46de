// A live evacd under hostile clients: connections that open and send
// nothing, that trickle headers, oversized and deep bodies, with and without
// credentials. Each case asserts what evacd did (refused, before reading,
// stayed up, kept answering its operator), never how fast.
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <poll.h>

#include <cstring>
#include <optional>

#include "../integration/harness.h"
#include "tls/tls.h"

namespace evac::testing {
namespace {

// A raw TLS connection to evacd: the bytes sent are exactly the test's.
class RawTls {
 public:
  RawTls(int port, const std::string& cert = "", const std::string& key = "") {
    fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(static_cast<std::uint16_t>(port));
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (::connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) return;
    ctx_ = SSL_CTX_new(TLS_client_method());
    SSL_CTX_set_verify(ctx_, SSL_VERIFY_NONE, nullptr);
    if (!cert.empty()) {
      SSL_CTX_use_certificate_file(ctx_, cert.c_str(), SSL_FILETYPE_PEM);
      SSL_CTX_use_PrivateKey_file(ctx_, key.c_str(), SSL_FILETYPE_PEM);
    }
    ssl_ = SSL_new(ctx_);
    SSL_set_fd(ssl_, fd_);
    connected_ = SSL_connect(ssl_) == 1;
  }
  ~RawTls() {
    if (ssl_) SSL_free(ssl_);
    if (ctx_) SSL_CTX_free(ctx_);
    if (fd_ >= 0) ::close(fd_);
  }
  bool connected() const { return connected_; }
  // False once the peer closed the connection or a write failed.
  bool send(const std::string& bytes) {
    std::size_t done = 0;
    while (done < bytes.size()) {
      int n = SSL_write(ssl_, bytes.data() + done, static_cast<int>(std::min<std::size_t>(bytes.size() - done, 1 << 20)));
      if (n <= 0) return false;
      done += static_cast<std::size_t>(n);
    }
    return true;
  }
  // The response head and as much body as arrives, until close or `wait`.
  std::string receive(std::chrono::milliseconds wait = std::chrono::milliseconds(15000)) {
    std::string out;
    auto deadline = std::chrono::steady_clock::now() + wait;
    char buf[4096];
    while (std::chrono::steady_clock::now() < deadline) {
      if (SSL_pending(ssl_) == 0) {
        pollfd p{fd_, POLLIN, 0};
        if (::poll(&p, 1, 100) <= 0) {
          if (out.find("\r\n\r\n") != std::string::npos) break;  // a full head and nothing more coming
          continue;
        }
      }
      int n = SSL_read(ssl_, buf, sizeof buf);
      if (n <= 0) break;
      out.append(buf, static_cast<std::size_t>(n));
    }
    return out;
  }
  // Whether the server hangs up within `wait` (it may answer first).
  bool closes_within(std::chrono::milliseconds wait) {
    auto deadline = std::chrono::steady_clock::now() + wait;
    while (std::chrono::steady_clock::now() < deadline) {
      if (!still_open()) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    return false;
  }
  // Whether the server still holds the connection open and has said
  // nothing: TLS records that carry no data (TLS 1.3 session tickets) are
  // read past; an answer, a close or a reset mean it is not.
  bool still_open() {
    const int flags = ::fcntl(fd_, F_GETFL);
    ::fcntl(fd_, F_SETFL, flags | O_NONBLOCK);
    bool open = false;
    for (;;) {
      char c;
      int n = SSL_read(ssl_, &c, 1);
      if (n > 0) break;  // the server answered: it is done with this request
      int err = SSL_get_error(ssl_, n);
      if (err == SSL_ERROR_WANT_READ) {
        open = true;
        break;
      }
      break;  // closed or reset
    }
    ::fcntl(fd_, F_SETFL, flags);
    return open;
  }

 private:
  int fd_ = -1;
  SSL_CTX* ctx_ = nullptr;
  SSL* ssl_ = nullptr;
  bool connected_ = false;
};

int status_of(const std::string& response) {
  if (response.rfind("HTTP/1.1 ", 0) != 0) return 0;
  return std::atoi(response.c_str() + 9);
}

long rss_kib(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(in, line))
    if (line.rfind("VmRSS:", 0) == 0) return std::atol(line.c_str() + 6);
  return -1;
}

class HostileClientTest : public ::testing::Test {
 protected:
  void SetUp() override {
    root_ = fs::temp_directory_path() / ("evac-hostile-" + std::to_string(::getpid()) + "-" +
                                         ::testing::UnitTest::GetInstance()->current_test_info()->name());
    remove_tree(root_);
    evacd_ = std::make_unique<EvacdProcess>(root_, "site-a",
                                            std::vector<std::pair<std::string, std::string>>{{"kvm-a", "test:///default"}});
    ASSERT_TRUE(evacd_->start()) << evacd_->log();
    port_ = std::atoi(evacd_->url().substr(evacd_->url().rfind(':') + 1).c_str());
  }
  void TearDown() override {
    if (HasFailure() && evacd_) std::cerr << "---- evacd log (tail)\n" << tail(evacd_->log()) << "\n";
    evacd_.reset();
    remove_tree(root_);
  }
  static std::string tail(const std::string& s) { return s.size() > 8000 ? s.substr(s.size() - 8000) : s; }

  // An operator's call through the real client: what must keep working.
  Result<HttpResponse> operator_call(const std::string& path) {
    HttpsClientOptions options;
    options.base_url = evacd_->url();
    options.bearer_token = evacd_->token();
    options.timeout = std::chrono::milliseconds(30000);
    HttpsClient client(options);
    return client.request("GET", path);
  }
  bool alive() {
    int status = 0;
    return ::waitpid(evacd_->pid(), &status, WNOHANG) == 0;
  }
  std::string head(const std::string& method, const std::string& path, const std::string& extra) {
    return method + " " + path + " HTTP/1.1\r\nHost: 127.0.0.1\r\n" + extra + "\r\n";
  }

  fs::path root_;
  std::unique_ptr<EvacdProcess> evacd_;
  int port_ = 0;
};

TEST_F(HostileClientTest, ConnectionsThatSendNothingDoNotStarveTheOperator) {
  // More than the old fixed pool of 32 threads, of three kinds: no TLS
  // handshake at all, a handshake and half a request line, a request head
  // with no end.
  std::vector<int> silent;
  std::vector<std::unique_ptr<RawTls>> trickling;
  for (int i = 0; i < 40; ++i) {
    int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(static_cast<std::uint16_t>(port_));
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ASSERT_EQ(::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
    silent.push_back(fd);
  }
  for (int i = 0; i < 40; ++i) {
    auto c = std::make_unique<RawTls>(port_);
    ASSERT_TRUE(c->connected());
    ASSERT_TRUE(c->send(i % 2 ? "GET /api/v1/heal" : "POST /api/v1/groups HTTP/1.1\r\nHost: x\r\nContent-Le"));
    trickling.push_back(std::move(c));
  }
  // The operator is answered while every one of them is still held open
  // (their read timeout has not passed: they are checked right after).
  auto health = operator_call("/api/v1/health");
  ASSERT_TRUE(health.is_ok()) << health.status().to_string();
  EXPECT_EQ(health->status, 200);
  auto groups = operator_call("/api/v1/groups");
  ASSERT_TRUE(groups.is_ok()) << groups.status().to_string();
  EXPECT_EQ(groups->status, 200);
  int still_held = 0;
  for (const auto& c : trickling) still_held += c->still_open() ? 1 : 0;
  EXPECT_EQ(still_held, 40) << "the answers came only after the slow connections were dropped";
  // And they are dropped in the end: nothing holds a thread for ever.
  // (cpp-httplib may answer 400 as it hangs up.)
  for (const auto& c : trickling) EXPECT_TRUE(c->closes_within(std::chrono::milliseconds(30000)));
  for (int fd : silent) ::close(fd);
  EXPECT_TRUE(alive());
}

TEST_F(HostileClientTest, AnOversizedBodyIsRefusedBeforeItIsSent) {
  RawTls c(port_);
  ASSERT_TRUE(c.connected());
  // 100 MiB announced; not a byte of it sent.
  ASSERT_TRUE(c.send(head("POST", "/api/v1/groups",
                          "Authorization: Bearer " + evacd_->token() + "\r\nContent-Type: application/json\r\n"
                          "Content-Length: 104857600\r\n")));
  std::string answer = c.receive();
  EXPECT_EQ(status_of(answer), 413) << answer;
  EXPECT_NE(answer.find("\"payload_too_large\""), std::string::npos) << answer;
  EXPECT_NE(answer.find("\"hint\""), std::string::npos) << answer;
  EXPECT_NE(answer.find("Connection: close"), std::string::npos) << answer;
  EXPECT_TRUE(c.closes_within(std::chrono::milliseconds(30000))) << "a refused body's connection ends";

  // Without credentials the answer is 401, again before the body.
  RawTls anonymous(port_);
  ASSERT_TRUE(anonymous.send(head("POST", "/api/v1/groups", "Content-Length: 104857600\r\n")));
  EXPECT_EQ(status_of(anonymous.receive()), 401);
  EXPECT_TRUE(alive());
}

TEST_F(HostileClientTest, AChunkedBodyIsCutAtTheLimit) {
  RawTls c(port_);
  ASSERT_TRUE(c.connected());
  ASSERT_TRUE(c.send(head("POST", "/api/v1/plans",
                          "Authorization: Bearer " + evacd_->token() + "\r\nTransfer-Encoding: chunked\r\n")));
  // 4 MiB in 64 KiB chunks: evacd stops reading past 1 MiB.
  const std::string chunk = "10000\r\n" + std::string(65536, ' ') + "\r\n";
  for (int i = 0; i < 64; ++i)
    if (!c.send(chunk)) break;
  (void)c.send("0\r\n\r\n");
  std::string answer = c.receive();
  EXPECT_EQ(status_of(answer), 413) << answer.substr(0, 300);
  auto health = operator_call("/api/v1/health");
  ASSERT_TRUE(health.is_ok());
  EXPECT_TRUE(alive());
}

TEST_F(HostileClientTest, RefusedBodiesDoNotGrowEvacdsMemory) {
#ifdef __SANITIZE_ADDRESS__
  GTEST_SKIP() << "AddressSanitizer keeps freed memory in quarantine: RSS says nothing here";
#endif
  ASSERT_TRUE(operator_call("/api/v1/groups").is_ok());
  const long before = rss_kib(evacd_->pid());
  ASSERT_GT(before, 0);
  // 40 bodies of 8 MiB, unauthenticated and authenticated, each refused:
  // kept, they would be 320 MiB.
  for (int i = 0; i < 40; ++i) {
    RawTls c(port_);
    ASSERT_TRUE(c.connected());
    std::string auth = i % 2 ? "Authorization: Bearer " + evacd_->token() + "\r\n" : "";
    ASSERT_TRUE(c.send(head("POST", "/api/v1/groups", auth + "Transfer-Encoding: chunked\r\n")));
    const std::string chunk = "100000\r\n" + std::string(1 << 20, 'x') + "\r\n";
    for (int j = 0; j < 8; ++j)
      if (!c.send(chunk)) break;
    (void)c.receive(std::chrono::milliseconds(5000));
  }
  const long after = rss_kib(evacd_->pid());
  EXPECT_LT(after - before, 64 * 1024) << "RSS grew from " << before << " KiB to " << after << " KiB";
  EXPECT_TRUE(alive());
}

TEST_F(HostileClientTest, ADeepBodyFromAnyCertificateDoesNotStopEvacd) {
  // Any self-signed certificate may call the pairing route.
  auto stranger = ensure_tls_identity((root_ / "stranger.pem").string(), (root_ / "stranger.key").string(), "stranger", {});
  ASSERT_TRUE(stranger.is_ok()) << stranger.status().to_string();
  const std::string body = "{\"secret\": " + std::string(300'000, '[') + std::string(300'000, ']') + "}";
  RawTls c(port_, stranger->cert_path, stranger->key_path);
  ASSERT_TRUE(c.connected());
  ASSERT_TRUE(c.send(head("POST", "/api/v1/peer/pair",
                          "Content-Type: application/json\r\nContent-Length: " + std::to_string(body.size()) + "\r\n") +
                     body));
  std::string answer = c.receive();
  EXPECT_EQ(status_of(answer), 400) << answer.substr(0, 300);
  EXPECT_NE(answer.find("deeper than"), std::string::npos) << answer.substr(0, 300);
  // The same through an operator route that takes a document.
  RawTls op(port_);
  ASSERT_TRUE(op.send(head("PUT", "/api/v1/plans/p",
                           "Authorization: Bearer " + evacd_->token() + "\r\nContent-Length: " +
                               std::to_string(body.size()) + "\r\n") +
                      body));
  EXPECT_EQ(status_of(op.receive()), 400);
  ASSERT_TRUE(alive());
  auto health = operator_call("/api/v1/health");
  ASSERT_TRUE(health.is_ok());
  EXPECT_EQ(health->status, 200);
}

TEST_F(HostileClientTest, WrongMethodsAndMalformedRequestsGetJsonErrors) {
  RawTls c(port_);
  ASSERT_TRUE(c.send(head("PATCH", "/api/v1/groups", "Authorization: Bearer " + evacd_->token() + "\r\nContent-Length: 2\r\n") +
                     "{}"));
  std::string answer = c.receive();
  // cpp-httplib answers methods it has no handler for itself; the ones
  // evac serves anywhere get 405 with Allow.
  const int status = status_of(answer);
  EXPECT_TRUE(status == 405 || status == 400) << answer;
  RawTls d(port_);
  ASSERT_TRUE(d.send(head("DELETE", "/api/v1/groups", "Authorization: Bearer " + evacd_->token() + "\r\n")));
  std::string del = d.receive();
  EXPECT_EQ(status_of(del), 405) << del;
  EXPECT_NE(del.find("Allow: GET, POST"), std::string::npos) << del;
  EXPECT_NE(del.find("\"method_not_allowed\""), std::string::npos) << del;
  EXPECT_TRUE(alive());
}

}  // namespace
}  // namespace evac::testing
