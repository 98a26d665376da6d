#include "client/connect_probe.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509_vfy.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <ctime>
#include <memory>
#include <string>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"
#include "client/openssl_ptr.h"

namespace tally {
namespace client_internal {
namespace {

using Kind = ProbeResult::Kind;

// Closes the socket it holds.
class Fd {
 public:
  explicit Fd(int fd = -1) : fd_(fd) {}
  Fd(Fd&& other) noexcept : fd_(std::exchange(other.fd_, -1)) {}
  Fd& operator=(Fd&& other) noexcept {
    std::swap(fd_, other.fd_);
    return *this;
  }
  ~Fd() {
    if (fd_ >= 0) ::close(fd_);
  }
  int get() const { return fd_; }

 private:
  int fd_;
};

// Writes to a socket the server closed raise SIGPIPE, which would end the
// process: blocked on this thread while the probe runs, a pending one
// discarded before unblocking (the technique of libcurl's sigpipe_ignore).
class ScopedSigpipeBlock {
 public:
  ScopedSigpipeBlock() {
    sigemptyset(&pipe_);
    sigaddset(&pipe_, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &pipe_, &old_);
  }
  ~ScopedSigpipeBlock() {
    const timespec zero{};
    while (sigtimedwait(&pipe_, nullptr, &zero) == SIGPIPE) {
    }
    pthread_sigmask(SIG_SETMASK, &old_, nullptr);
  }

 private:
  sigset_t pipe_;
  sigset_t old_;
};

int MillisUntil(absl::Time deadline) {
  return static_cast<int>(
      std::clamp<int64_t>(absl::ToInt64Milliseconds(deadline - absl::Now()), 1, 1 << 30));
}

// One non-blocking connect, waited for until `deadline`; errno-style code.
int ConnectOne(const addrinfo& address, absl::Time deadline, Fd* out) {
  Fd fd(::socket(address.ai_family, address.ai_socktype | SOCK_CLOEXEC, address.ai_protocol));
  if (fd.get() < 0) return errno;
  const int flags = ::fcntl(fd.get(), F_GETFL);
  ::fcntl(fd.get(), F_SETFL, flags | O_NONBLOCK);
  if (::connect(fd.get(), address.ai_addr, address.ai_addrlen) != 0) {
    if (errno != EINPROGRESS) return errno;
    pollfd waiting{fd.get(), POLLOUT, 0};
    const int ready = ::poll(&waiting, 1, MillisUntil(deadline));
    if (ready <= 0) return ready == 0 ? ETIMEDOUT : errno;
    int error = 0;
    socklen_t length = sizeof(error);
    ::getsockopt(fd.get(), SOL_SOCKET, SO_ERROR, &error, &length);
    if (error != 0) return error;
  }
  ::fcntl(fd.get(), F_SETFL, flags);
  // Blocking from here on, each read and write bounded by the deadline.
  const int64_t micros = int64_t{MillisUntil(deadline)} * 1000;
  const timeval bound{static_cast<time_t>(micros / 1000000),
                      static_cast<suseconds_t>(micros % 1000000)};
  ::setsockopt(fd.get(), SOL_SOCKET, SO_RCVTIMEO, &bound, sizeof(bound));
  ::setsockopt(fd.get(), SOL_SOCKET, SO_SNDTIMEO, &bound, sizeof(bound));
  *out = std::move(fd);
  return 0;
}

// A TCP connection to host:port, or the reason there is none.
ProbeResult ConnectTcp(const std::string& host, const std::string& port, absl::Time deadline,
                       Fd* out) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* addresses = nullptr;
  if (const int rc = ::getaddrinfo(host.c_str(), port.c_str(), &hints, &addresses); rc != 0) {
    return {Kind::kUnreachable, absl::StrCat("cannot resolve '", host, "': ", gai_strerror(rc))};
  }
  int error = ENOENT;
  for (const addrinfo* a = addresses; a != nullptr && absl::Now() < deadline; a = a->ai_next) {
    error = ConnectOne(*a, deadline, out);
    if (error == 0) break;
  }
  ::freeaddrinfo(addresses);
  if (error != 0) return {Kind::kUnreachable, std::strerror(error)};
  return {Kind::kNotProbed, ""};
}

void AddCertificates(const std::string& pem, X509_STORE* store) {
  UniqueBio bio = MemoryBio(pem);
  while (X509* cert = PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr)) {
    X509_STORE_add_cert(store, cert);
    X509_free(cert);
  }
  ERR_clear_error();
}

void UseClientCertificate(const ProbeCredentials& credentials, SSL_CTX* ctx) {
  UniqueBio certs = MemoryBio(credentials.cert_chain_pem);
  if (X509* leaf = PEM_read_bio_X509(certs.get(), nullptr, nullptr, nullptr)) {
    SSL_CTX_use_certificate(ctx, leaf);
    X509_free(leaf);
    while (X509* chain = PEM_read_bio_X509(certs.get(), nullptr, nullptr, nullptr)) {
      SSL_CTX_add0_chain_cert(ctx, chain);  // Takes ownership.
    }
  }
  UniqueBio key = MemoryBio(credentials.key_pem);
  if (EVP_PKEY* pkey = PEM_read_bio_PrivateKey(key.get(), nullptr, nullptr, nullptr)) {
    SSL_CTX_use_PrivateKey(ctx, pkey);
    EVP_PKEY_free(pkey);
  }
  ERR_clear_error();
}

// A client context as `credentials` say: verifying the server against the
// CA, or not verifying at all (a plaintext client only asks "is it TLS?").
UniqueSslCtx ClientContext(const ProbeCredentials& credentials) {
  UniqueSslCtx ctx(SSL_CTX_new(TLS_client_method()));
  if (ctx == nullptr) return ctx;
  static constexpr unsigned char kH2[] = {2, 'h', '2'};
  SSL_CTX_set_alpn_protos(ctx.get(), kH2, sizeof(kH2));
  SSL_CTX_set_verify(ctx.get(), credentials.tls ? SSL_VERIFY_PEER : SSL_VERIFY_NONE, nullptr);
  if (!credentials.tls) return ctx;
  AddCertificates(credentials.ca_pem, SSL_CTX_get_cert_store(ctx.get()));
  if (!credentials.cert_chain_pem.empty()) UseClientCertificate(credentials, ctx.get());
  return ctx;
}

// Set when the server sent a TLS handshake or alert message.
void OnMessage(int write_p, int, int content_type, const void*, size_t, SSL*, void* arg) {
  if (write_p == 0 && (content_type == SSL3_RT_HANDSHAKE || content_type == SSL3_RT_ALERT)) {
    *static_cast<bool*>(arg) = true;
  }
}

std::string OpenSslReason() {
  const unsigned long error = ERR_peek_last_error();
  const char* reason = error != 0 ? ERR_reason_error_string(error) : nullptr;
  ERR_clear_error();
  return reason != nullptr ? reason : "";
}

// After a completed handshake: a server that took the client's certificate
// sends its HTTP/2 settings; one that refused it closes the connection.
ProbeResult AfterHandshake(SSL* ssl) {
  char byte;
  const int read = SSL_read(ssl, &byte, 1);
  if (read > 0) return {Kind::kTlsServer, ""};
  const int error = SSL_get_error(ssl, read);
  if (error == SSL_ERROR_WANT_READ ||
      (error == SSL_ERROR_SYSCALL && (errno == EAGAIN || errno == EWOULDBLOCK))) {
    ERR_clear_error();
    return {Kind::kTlsServer, ""};  // Silent until the deadline: not a refusal.
  }
  const std::string reason = OpenSslReason();
  return {Kind::kClientCertificateRefused,
          reason.empty() ? "it closed the connection after the handshake" : reason};
}

ProbeResult Handshake(int fd, const ProbeCredentials& credentials, const std::string& name) {
  UniqueSslCtx ctx = ClientContext(credentials);
  UniqueSsl ssl(ctx != nullptr ? SSL_new(ctx.get()) : nullptr);
  if (ssl == nullptr) return {Kind::kNotProbed, "OpenSSL: no context"};
  SSL_set_fd(ssl.get(), fd);
  if (X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl.get()), name.c_str()) != 1) {
    SSL_set_tlsext_host_name(ssl.get(), name.c_str());
    SSL_set1_host(ssl.get(), name.c_str());
  }
  ERR_clear_error();
  bool tls_seen = false;
  SSL_set_msg_callback(ssl.get(), OnMessage);
  SSL_set_msg_callback_arg(ssl.get(), &tls_seen);
  const int connected = SSL_connect(ssl.get());
  if (connected == 1) {
    return credentials.tls ? AfterHandshake(ssl.get()) : ProbeResult{Kind::kTlsServer, ""};
  }
  const int error = SSL_get_error(ssl.get(), connected);
  const long verify = SSL_get_verify_result(ssl.get());
  const unsigned long last = ERR_peek_last_error();
  const std::string reason = OpenSslReason();
  if (credentials.tls && verify != X509_V_OK) {
    return {Kind::kServerCertificateRefused, X509_verify_cert_error_string(verify)};
  }
  if (tls_seen) {
    return {credentials.tls ? Kind::kClientCertificateRefused : Kind::kTlsServer, reason};
  }
  const bool eof = error != SSL_ERROR_SSL
#ifdef SSL_R_UNEXPECTED_EOF_WHILE_READING
                   || ERR_GET_REASON(last) == SSL_R_UNEXPECTED_EOF_WHILE_READING
#endif
      ;
  if (eof) return {Kind::kClosed, reason.empty() ? "closed without a byte" : reason};
  return {Kind::kPlaintextServer, reason};  // Bytes that are no TLS record.
}

}  // namespace

std::optional<std::pair<std::string, std::string>> ProbeHostPort(absl::string_view target) {
  for (absl::string_view scheme : {"dns:///", "dns:", "ipv4:", "ipv6:"}) {
    if (absl::ConsumePrefix(&target, scheme)) break;
  }
  if (target.empty() || absl::StrContains(target, ",") || absl::StrContains(target, "/")) {
    return std::nullopt;
  }
  for (absl::string_view scheme : {"unix:", "unix-abstract:", "vsock:", "xds:"}) {
    if (absl::StartsWith(target, scheme)) return std::nullopt;
  }
  std::string host, port = "443";
  if (absl::ConsumePrefix(&target, "[")) {  // [v6]:port
    const size_t close = target.find(']');
    if (close == absl::string_view::npos) return std::nullopt;
    host = std::string(target.substr(0, close));
    target.remove_prefix(close + 1);
    if (absl::ConsumePrefix(&target, ":")) port = std::string(target);
  } else if (const size_t colon = target.rfind(':'); colon != absl::string_view::npos) {
    if (target.find(':') != colon) return std::nullopt;  // A bare IPv6 address.
    host = std::string(target.substr(0, colon));
    port = std::string(target.substr(colon + 1));
  } else {
    host = std::string(target);
  }
  if (host.empty() || port.empty()) return std::nullopt;
  return std::make_pair(host, port);
}

ProbeResult ProbeServer(absl::string_view target, const ProbeCredentials& credentials,
                        absl::Time deadline) {
  const auto host_port = ProbeHostPort(target);
  if (!host_port.has_value() || absl::Now() >= deadline) return {Kind::kNotProbed, ""};
  ScopedSigpipeBlock no_sigpipe;
  Fd fd;
  ProbeResult connected = ConnectTcp(host_port->first, host_port->second, deadline, &fd);
  if (connected.kind == Kind::kUnreachable) return connected;
  const std::string& name =
      credentials.server_name.empty() ? host_port->first : credentials.server_name;
  return Handshake(fd.get(), credentials, name);
}

}  // namespace client_internal
}  // namespace tally
