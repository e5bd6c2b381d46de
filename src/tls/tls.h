// TLS identity of a site: a key pair and certificate, and the public-key
// pin ("sha256//BASE64" of the SubjectPublicKeyInfo, the form libcurl's
// CURLOPT_PINNEDPUBLICKEY takes) by which paired sites and CLIs recognise it.
#pragma once

#include <string>
#include <vector>

#include "core/status.h"

typedef struct x509_st X509;

namespace evac {

struct TlsIdentity {
  std::string cert_path;
  std::string key_path;
  std::string pin;
};

// Loads the certificate at cert_path, or, when neither file exists, creates
// a self-signed EC P-256 certificate for `common_name` valid ten years with
// the given DNS names / IP addresses as subjectAltNames. The key file is
// written with mode 0600.
Result<TlsIdentity> ensure_tls_identity(const std::string& cert_path, const std::string& key_path,
                                        const std::string& common_name, const std::vector<std::string>& alt_names);

Result<std::string> public_key_pin_of_file(const std::string& cert_path);
Result<std::string> public_key_pin(X509* cert);

// Hex SHA-256 of arbitrary bytes (token digests) and random tokens.
std::string sha256_hex(const std::string& data);
std::string base64url_encode(const std::string& data);
Result<std::string> base64url_decode(const std::string& text);

// `bytes` random bytes from the OS CSPRNG, base64url without padding.
std::string random_token(std::size_t bytes = 32);

}  // namespace evac
