// The transport floor of a first sync, as a peer for bench/replication_scan.sh:
// the bytes of a file sent over one TLS 1.3 connection on loopback, from a
// mapping of the file into a page-aligned buffer at the other end, with no
// HTTP, no hashing, no checksums and nothing written. Both ends run on the
// same machine, as the two evacd's of the benchmark do, so this is what any
// replicator that encrypts its stream between the two sites pays at least.
//
// usage: tls_loopback FILE CERT KEY [CIPHERSUITES]
// prints: "<wall s> <cpu s of both processes> <bytes> <ciphersuite>"
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>

namespace {

double cpu_seconds(int who) {
  rusage r{};
  getrusage(who, &r);
  return static_cast<double>(r.ru_utime.tv_sec + r.ru_stime.tv_sec) +
         1e-6 * static_cast<double>(r.ru_utime.tv_usec + r.ru_stime.tv_usec);
}

[[noreturn]] void die(const char* what) {
  std::fprintf(stderr, "tls_loopback: %s\n", what);
  ERR_print_errors_fp(stderr);
  std::exit(1);
}

// Receives `size` bytes into one reused aligned buffer, then answers one byte.
int serve(int listener, const char* cert, const char* key, const char* suites, std::size_t size) {
  SSL_CTX* ctx = SSL_CTX_new(TLS_server_method());
  SSL_CTX_set_min_proto_version(ctx, TLS1_3_VERSION);
  if (suites && SSL_CTX_set_ciphersuites(ctx, suites) != 1) die("unknown ciphersuites");
  if (SSL_CTX_use_certificate_chain_file(ctx, cert) != 1 || SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) != 1)
    die("cannot load the certificate and key");
  int fd = accept(listener, nullptr, nullptr);
  SSL* ssl = SSL_new(ctx);
  SSL_set_fd(ssl, fd);
  if (SSL_accept(ssl) != 1) die("handshake failed");
  constexpr std::size_t kBuffer = 1 << 20;
  char* buffer = static_cast<char*>(std::aligned_alloc(4096, kBuffer));
  for (std::size_t got = 0; got < size;) {
    int n = SSL_read(ssl, buffer, static_cast<int>(std::min(kBuffer, size - got)));
    if (n <= 0) die("read failed");
    got += static_cast<std::size_t>(n);
  }
  if (SSL_write(ssl, "k", 1) != 1) die("cannot answer");
  SSL_shutdown(ssl);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 4) {
    std::fprintf(stderr, "usage: tls_loopback FILE CERT KEY [CIPHERSUITES]\n");
    return 2;
  }
  const char* suites = argc > 4 ? argv[4] : nullptr;
  int file = open(argv[1], O_RDONLY);
  if (file < 0) die("cannot open the file");
  auto size = static_cast<std::size_t>(lseek(file, 0, SEEK_END));
  void* mapped = size ? mmap(nullptr, size, PROT_READ, MAP_SHARED | MAP_POPULATE, file, 0) : nullptr;
  if (mapped == MAP_FAILED) die("cannot map the file");
  const char* bytes = static_cast<const char*>(mapped);

  int listener = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof addr;
  if (bind(listener, reinterpret_cast<sockaddr*>(&addr), len) != 0 || listen(listener, 1) != 0 ||
      getsockname(listener, reinterpret_cast<sockaddr*>(&addr), &len) != 0)
    die("cannot listen on 127.0.0.1");

  auto started = std::chrono::steady_clock::now();
  double cpu_before = cpu_seconds(RUSAGE_SELF);
  pid_t child = fork();
  if (child == 0) return serve(listener, argv[2], argv[3], suites, size);

  SSL_CTX* ctx = SSL_CTX_new(TLS_client_method());
  SSL_CTX_set_min_proto_version(ctx, TLS1_3_VERSION);
  if (suites && SSL_CTX_set_ciphersuites(ctx, suites) != 1) die("unknown ciphersuites");
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) die("cannot connect");
  SSL* ssl = SSL_new(ctx);
  SSL_set_fd(ssl, fd);
  if (SSL_connect(ssl) != 1) die("handshake failed");
  constexpr std::size_t kPiece = 1 << 20;
  for (std::size_t sent = 0; sent < size;) {
    int n = SSL_write(ssl, bytes + sent, static_cast<int>(std::min(kPiece, size - sent)));
    if (n <= 0) die("write failed");
    sent += static_cast<std::size_t>(n);
  }
  char answer = 0;
  if (SSL_read(ssl, &answer, 1) != 1) die("no answer");
  std::string suite = SSL_CIPHER_get_name(SSL_get_current_cipher(ssl));
  int status = 0;
  waitpid(child, &status, 0);
  double wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  double cpu = cpu_seconds(RUSAGE_SELF) - cpu_before + cpu_seconds(RUSAGE_CHILDREN);
  std::printf("%.3f %.3f %zu %s\n", wall, cpu, size, suite.c_str());
  return WIFEXITED(status) && WEXITSTATUS(status) == 0 ? 0 : 1;
}
