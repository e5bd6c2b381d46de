#include "tls/tls.h"

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <sys/stat.h>

#include <cctype>
#include <cstdio>
#include <filesystem>
#include <memory>

namespace evac {
namespace {

struct FileCloser {
  void operator()(FILE* f) const { std::fclose(f); }
};
using FilePtr = std::unique_ptr<FILE, FileCloser>;
struct X509Free {
  void operator()(X509* x) const { X509_free(x); }
};
struct PkeyFree {
  void operator()(EVP_PKEY* k) const { EVP_PKEY_free(k); }
};

std::string base64(const unsigned char* data, std::size_t len) {
  std::string out(4 * ((len + 2) / 3), '\0');
  int n = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()), data, static_cast<int>(len));
  out.resize(static_cast<std::size_t>(n));
  return out;
}

bool looks_like_ip(const std::string& s) {
  return s.find_first_not_of("0123456789.") == std::string::npos || s.find(':') != std::string::npos;
}

Status create_self_signed(const std::string& cert_path, const std::string& key_path, const std::string& common_name,
                          const std::vector<std::string>& alt_names) {
  std::unique_ptr<EVP_PKEY, PkeyFree> key(EVP_EC_gen("P-256"));
  if (!key) return internal_error("cannot generate a TLS key");
  std::unique_ptr<X509, X509Free> cert(X509_new());
  X509_set_version(cert.get(), 2);
  unsigned char serial[16];
  RAND_bytes(serial, sizeof serial);
  serial[0] &= 0x7f;
  BIGNUM* bn = BN_bin2bn(serial, sizeof serial, nullptr);
  BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(cert.get()));
  BN_free(bn);
  X509_gmtime_adj(X509_getm_notBefore(cert.get()), -3600);
  X509_gmtime_adj(X509_getm_notAfter(cert.get()), 10L * 365 * 24 * 3600);
  X509_set_pubkey(cert.get(), key.get());
  X509_NAME* name = X509_get_subject_name(cert.get());
  X509_NAME_add_entry_by_txt(name, "O", MBSTRING_ASC, reinterpret_cast<const unsigned char*>("evac"), -1, -1, 0);
  X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, reinterpret_cast<const unsigned char*>(common_name.c_str()), -1, -1, 0);
  X509_set_issuer_name(cert.get(), name);
  std::string san;
  for (const auto& alt : alt_names) san += (san.empty() ? "" : ",") + std::string(looks_like_ip(alt) ? "IP:" : "DNS:") + alt;
  if (!san.empty()) {
    X509V3_CTX ctx;
    X509V3_set_ctx_nodb(&ctx);
    X509V3_set_ctx(&ctx, cert.get(), cert.get(), nullptr, nullptr, 0);
    if (X509_EXTENSION* ext = X509V3_EXT_conf_nid(nullptr, &ctx, NID_subject_alt_name, san.c_str())) {
      X509_add_ext(cert.get(), ext, -1);
      X509_EXTENSION_free(ext);
    }
  }
  if (!X509_sign(cert.get(), key.get(), EVP_sha256())) return internal_error("cannot sign the TLS certificate");

  std::filesystem::create_directories(std::filesystem::path(key_path).parent_path());
  // The key must never be readable by others, not even for an instant.
  mode_t old_mask = umask(077);
  FilePtr kf(std::fopen(key_path.c_str(), "wx"));
  umask(old_mask);
  if (!kf) return failed_precondition("cannot create TLS key file " + key_path, "check the state directory's permissions");
  if (!PEM_write_PrivateKey(kf.get(), key.get(), nullptr, nullptr, 0, nullptr, nullptr))
    return internal_error("cannot write TLS key " + key_path);
  kf.reset();
  FilePtr cf(std::fopen(cert_path.c_str(), "w"));
  if (!cf || !PEM_write_X509(cf.get(), cert.get()))
    return failed_precondition("cannot write TLS certificate " + cert_path, "check the state directory's permissions");
  return Status::ok();
}

}  // namespace

Result<std::string> public_key_pin(X509* cert) {
  EVP_PKEY* pub = X509_get0_pubkey(cert);
  if (!pub) return invalid_argument("certificate has no public key");
  int len = i2d_PUBKEY(pub, nullptr);
  if (len <= 0) return internal_error("cannot encode a public key");
  std::string der(static_cast<std::size_t>(len), '\0');
  auto* p = reinterpret_cast<unsigned char*>(der.data());
  i2d_PUBKEY(pub, &p);
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int dlen = 0;
  EVP_Digest(der.data(), der.size(), digest, &dlen, EVP_sha256(), nullptr);
  return "sha256//" + base64(digest, dlen);
}

Result<std::string> public_key_pin_of_file(const std::string& cert_path) {
  FilePtr f(std::fopen(cert_path.c_str(), "r"));
  if (!f) return not_found("cannot read certificate " + cert_path, "check the path and its permissions");
  std::unique_ptr<X509, X509Free> cert(PEM_read_X509(f.get(), nullptr, nullptr, nullptr));
  if (!cert) return invalid_argument(cert_path + " is not a PEM certificate", "give the path of a PEM-encoded X.509 certificate");
  return public_key_pin(cert.get());
}

Result<TlsIdentity> ensure_tls_identity(const std::string& cert_path, const std::string& key_path,
                                        const std::string& common_name, const std::vector<std::string>& alt_names) {
  bool have_cert = std::filesystem::exists(cert_path);
  bool have_key = std::filesystem::exists(key_path);
  if (have_cert != have_key)
    return failed_precondition("only one of " + cert_path + " and " + key_path + " exists",
                               "restore the missing file, or remove both to have evacd create a new identity (peers must then re-pair)");
  if (!have_cert) EVAC_RETURN_IF_ERROR(create_self_signed(cert_path, key_path, common_name, alt_names));
  auto pin = public_key_pin_of_file(cert_path);
  if (!pin) return pin.status();
  return TlsIdentity{cert_path, key_path, *pin};
}

std::string sha256_hex(const std::string& data) {
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  EVP_Digest(data.data(), data.size(), digest, &len, EVP_sha256(), nullptr);
  static const char* kHex = "0123456789abcdef";
  std::string out;
  for (unsigned i = 0; i < len; ++i) {
    out += kHex[digest[i] >> 4];
    out += kHex[digest[i] & 15];
  }
  return out;
}

std::string base64url_encode(const std::string& data) {
  std::string b64 = base64(reinterpret_cast<const unsigned char*>(data.data()), data.size());
  for (char& c : b64) {
    if (c == '+') c = '-';
    if (c == '/') c = '_';
  }
  while (!b64.empty() && b64.back() == '=') b64.pop_back();
  return b64;
}

Result<std::string> base64url_decode(const std::string& text) {
  std::string b64 = text;
  for (char& c : b64) {
    if (c == '-') c = '+';
    else if (c == '_') c = '/';
    else if (!std::isalnum(static_cast<unsigned char>(c))) return invalid_argument("not base64url text");
  }
  std::size_t pad = (4 - b64.size() % 4) % 4;
  if (pad == 3) return invalid_argument("not base64url text");
  b64.append(pad, '=');
  std::string out(b64.size() / 4 * 3, '\0');
  int n = EVP_DecodeBlock(reinterpret_cast<unsigned char*>(out.data()), reinterpret_cast<const unsigned char*>(b64.data()),
                          static_cast<int>(b64.size()));
  if (n < 0) return invalid_argument("not base64url text");
  out.resize(static_cast<std::size_t>(n) - pad);
  return out;
}

std::string random_token(std::size_t bytes) {
  std::string raw(bytes, '\0');
  RAND_bytes(reinterpret_cast<unsigned char*>(raw.data()), static_cast<int>(bytes));
  return base64url_encode(raw);
}

}  // namespace evac
