// TLS, mutual TLS and bearer tokens through a real server on loopback and the
// real SDK, with a throwaway PKI made by the openssl CLI at test time
// (tests/gen_test_pki.sh): who may connect, and that a caller can act only as
// itself.
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <chrono>
#include <fstream>
#include <iterator>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "prometheus/registry.h"
#include "server/auth.h"
#include "server/config.h"
#include "server/relay.h"
#include "server/server.h"
#include "grpcpp/grpcpp.h"
#include "tally/client.h"
#include "tally/v1/tally.grpc.pb.h"
#include "tests/status_matchers.h"

namespace tally {
namespace {

using ::tally::testing::IsOk;
using ::tally::testing::StatusIs;
using ::testing::AllOf;
using ::testing::HasSubstr;
using ::testing::Lt;
using ::testing::SizeIs;

class TlsTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    // One PKI per process: ctest runs the tests of this suite in parallel.
    pki_ = new std::string(absl::StrCat(::testing::TempDir(), "/tally_tls_test_pki_", ::getpid()));
    const std::string command =
        absl::StrCat("rm -rf '", *pki_, "' && '", TALLY_SOURCE_DIR, "/tests/gen_test_pki.sh' '",
                     *pki_, "'");
    if (std::system(command.c_str()) != 0) {
      // Not an ASSERT: a failure here would only mark the tests skipped.
      std::fprintf(stderr, "TlsTest: cannot make the test PKI: %s\n", command.c_str());
      std::exit(1);
    }
    // Tokens file: alice's and ops's tokens, stored as SHA-256 only.
    std::ofstream tokens(Pki("tokens.txt"));
    tokens << "# identity sha256(token)\n"
           << "alice " << server::HashToken("alice-secret") << "\n"
           << "ops   " << server::HashToken("ops-secret") << "  # the operator\n";
    tokens << "relay-* " << server::HashToken("relays-secret") << "\n";  // Any relay-...
    for (const char* id : {"carol", "m1", "m2", "m3"}) {
      tokens << id << " " << server::HashToken(std::string(id) + "-secret") << "\n";
    }
  }
  static void TearDownTestSuite() {
    std::system(absl::StrCat("rm -rf '", *pki_, "'").c_str());
    delete pki_;
  }
  static std::string Pki(const std::string& file) { return *pki_ + "/" + file; }

  // TLS with the test server certificate; `mtls` adds the client CA.
  void StartServer(bool mtls, bool require_client_cert, bool tokens,
                   const tally::v1::ServerConfig& base = {}) {
    tally::v1::ServerConfig config = base;
    auto* tls = config.mutable_tls();
    tls->set_cert_file(Pki("server.pem"));
    tls->set_key_file(Pki("server.key"));
    if (mtls) tls->set_client_ca_file(Pki("ca.pem"));
    tls->set_require_client_cert(require_client_cert);
    if (tokens) config.mutable_auth()->set_tokens_file(Pki("tokens.txt"));
    config.mutable_auth()->add_admin_identities("ops");
    Serve(std::move(config));
  }
  // `config` on 127.0.0.1:0 (one client per round unless it says).
  void Serve(tally::v1::ServerConfig config) {
    server::ServerOptions options;
    options.config = std::move(config);
    options.config.set_listen_address("127.0.0.1:0");
    options.config.set_metrics_port(-1);
    if (!options.config.has_rounds()) options.config.mutable_rounds()->set_clients_per_round(1);
    options.registry = registry_;
    auto server = server::Server::Create(std::move(options));
    ASSERT_THAT(server, IsOk());
    server_ = std::move(server).value();
  }

  struct Identity {
    std::string ca = "ca.pem";  // "" = plaintext.
    std::string cert;           // e.g. "alice" for alice.pem / alice.key.
    std::string token;
    std::string server_name;  // tls_server_name.
  };
  static Identity Ca(const std::string& ca) {
    Identity id;
    id.ca = ca;
    return id;
  }
  static Identity Cert(const std::string& cert) {
    Identity id;
    id.cert = cert;
    return id;
  }
  static Identity Token(const std::string& token) {
    Identity id;
    id.token = token;
    return id;
  }
  std::unique_ptr<Client> NewClient(const std::string& client_id, const Identity& id) {
    ClientOptions options;
    options.target = "127.0.0.1:" + std::to_string(server_->port());
    options.client_id = client_id;
    options.max_attempts = 1;  // Refusals are not transient; fail at once.
    options.call_timeout = absl::Seconds(10);
    if (!id.ca.empty()) options.tls_ca_file = Pki(id.ca);
    if (!id.cert.empty()) {
      options.tls_cert_file = Pki(id.cert + ".pem");
      options.tls_key_file = Pki(id.cert + ".key");
    }
    options.auth_token = id.token;
    options.tls_server_name = id.server_name;
    auto client = Client::Create(options);
    EXPECT_THAT(client, IsOk());
    return client.ok() ? std::move(client).value() : nullptr;
  }

  // Join, task, pull, push: one honest participation.
  static absl::Status Participate(Client& client) {
    TALLY_RETURN_IF_ERROR(client.Join().status());
    TALLY_ASSIGN_OR_RETURN(Task task, client.GetTask(absl::Seconds(5)));
    if (task.kind != Task::Kind::kTrain) return absl::InternalError("no TRAIN task");
    TALLY_ASSIGN_OR_RETURN(Model model, client.PullModel());
    std::vector<float> delta(model.params.size(), 0.5f);
    Update update;
    update.round = task.round;
    update.base_version = model.version;
    update.delta = delta;
    return client.PushUpdate(update).status();
  }

  // A generated stub (the SDK will not call before Join or with a token it
  // does not own), over TLS with `id`.
  std::unique_ptr<v1::Aggregator::Stub> Stub(const Identity& id) {
    auto read = [](const std::string& path) {
      std::ifstream in(path);
      return std::string(std::istreambuf_iterator<char>(in), {});
    };
    grpc::SslCredentialsOptions ssl;
    ssl.pem_root_certs = read(Pki(id.ca));
    if (!id.cert.empty()) {
      ssl.pem_cert_chain = read(Pki(id.cert + ".pem"));
      ssl.pem_private_key = read(Pki(id.cert + ".key"));
    }
    std::shared_ptr<grpc::ChannelCredentials> credentials = grpc::SslCredentials(ssl);
    if (!id.token.empty()) {
      credentials = grpc::CompositeChannelCredentials(credentials,
                                                      grpc::AccessTokenCredentials(id.token));
    }
    return v1::Aggregator::NewStub(
        grpc::CreateChannel("127.0.0.1:" + std::to_string(server_->port()), credentials));
  }
  static void SetDeadline(grpc::ClientContext* context) {
    context->set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
  }

  // PushUpdate of just a header as `client_id`: the call's status code.
  grpc::StatusCode RawPush(const std::string& client_id, const Identity& id) {
    auto stub = Stub(id);
    grpc::ClientContext context;
    SetDeadline(&context);
    v1::PushUpdateResponse response;
    auto writer = stub->PushUpdate(&context, &response);
    v1::UpdateChunk chunk;
    chunk.mutable_header()->set_client_id(client_id);
    chunk.mutable_header()->set_session_token("not-needed-to-be-refused");
    writer->Write(chunk);
    writer->WritesDone();
    return writer->Finish().error_code();
  }

  double Rejected(const std::string& reason) {
    for (const auto& family : registry_->Collect()) {
      if (family.name != "tally_updates_rejected_total") continue;
      for (const auto& metric : family.metric) {
        if (metric.label[0].value == reason) return metric.counter.value;
      }
    }
    return -1;
  }

  static std::string* pki_;
  std::shared_ptr<prometheus::Registry> registry_ = std::make_shared<prometheus::Registry>();
  std::unique_ptr<server::Server> server_;
};

std::string* TlsTest::pki_ = nullptr;

TEST_F(TlsTest, ServerTlsOnlyTrustedClientsConnect) {
  StartServer(/*mtls=*/false, /*require_client_cert=*/false, /*tokens=*/false);
  EXPECT_THAT(Participate(*NewClient("anyone", {})), IsOk());
  // Plaintext to a TLS port, or a client that does not trust the server's CA.
  EXPECT_THAT(NewClient("anyone", Ca(""))->Join(),
              StatusIs(absl::StatusCode::kUnavailable));
  EXPECT_THAT(NewClient("anyone", Ca("other-ca.pem"))->Join(),
              StatusIs(absl::StatusCode::kUnavailable));
}

// A TLS set-up that cannot work fails at once (not after connect_timeout,
// 60 s by default) with what is wrong and the option to change.
TEST_F(TlsTest, ConnectionErrorsSayWhatToChange) {
  const absl::Time start = absl::Now();
  auto join_error = [&](const Identity& id) {
    return std::string(NewClient("alice", id)->Join().status().message());
  };
  Serve({});  // Plaintext.
  EXPECT_THAT(join_error(Ca("ca.pem")),
              AllOf(HasSubstr("does not speak TLS"), HasSubstr("leave tls_ca_file empty")));
  StartServer(/*mtls=*/false, /*require_client_cert=*/false, /*tokens=*/false);
  EXPECT_THAT(join_error(Ca("")), AllOf(HasSubstr("speaks TLS and this client plaintext"),
                                        HasSubstr("set ClientOptions.tls_ca_file")));
  EXPECT_THAT(join_error(Ca("other-ca.pem")),
              AllOf(HasSubstr("refused the certificate of the server"),
                    HasSubstr("tls_ca_file must hold the CA that signed it")));
  Identity other_name = Ca("ca.pem");
  other_name.server_name = "other.example";
  EXPECT_THAT(join_error(other_name),
              AllOf(HasSubstr("hostname mismatch"), HasSubstr("must name 'other.example'")));
  StartServer(/*mtls=*/true, /*require_client_cert=*/true, /*tokens=*/false);
  EXPECT_THAT(join_error({}), AllOf(HasSubstr("requires a client certificate"),
                                    HasSubstr("set ClientOptions.tls_cert_file")));
  for (const char* cert : {"mallory", "expired"}) {
    EXPECT_THAT(join_error(Cert(cert)), AllOf(HasSubstr("refused this client's certificate"),
                                              HasSubstr("tls.client_ca_file")))
        << cert;
  }
  EXPECT_LT(absl::Now() - start, absl::Seconds(30));
}

// A file of the wrong kind is named at Create, before any connection.
TEST_F(TlsTest, TlsFilesOfTheWrongKindAreRefusedAtCreate) {
  ClientOptions options;
  options.target = "127.0.0.1:1";
  options.client_id = "alice";
  options.tls_ca_file = Pki("server.key");
  EXPECT_THAT(Client::Create(options),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       AllOf(HasSubstr("ClientOptions.tls_ca_file"),
                             HasSubstr("holds a private key, not a certificate"))));
  options.tls_ca_file = Pki("ca.pem");
  options.tls_cert_file = Pki("alice.pem");
  options.tls_key_file = Pki("bob.key");
  EXPECT_THAT(Client::Create(options),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("is not the key of the certificate in tls_cert_file")));
  options.tls_key_file = Pki("alice.pem");
  EXPECT_THAT(Client::Create(options),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("holds a certificate, not a private key")));
  options.tls_cert_file = Pki("alice.key");
  EXPECT_THAT(Client::Create(options),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       AllOf(HasSubstr("ClientOptions.tls_cert_file"),
                             HasSubstr("holds a private key"))));
}

TEST_F(TlsTest, MutualTlsBindsTheCertificateIdentityToTheClientId) {
  StartServer(/*mtls=*/true, /*require_client_cert=*/true, /*tokens=*/false);
  EXPECT_THAT(Participate(*NewClient("alice", Cert("alice"))), IsOk());

  // alice's certificate cannot act as bob, not even with bob's session
  // token: every call is refused.
  EXPECT_THAT(NewClient("bob", Cert("alice"))->Join(),
              StatusIs(absl::StatusCode::kPermissionDenied, HasSubstr("alice")));
  auto bob = Stub(Cert("bob"));
  v1::JoinRequest join;
  join.set_client_id("bob");
  v1::JoinResponse joined;
  grpc::ClientContext join_context;
  SetDeadline(&join_context);
  ASSERT_TRUE(bob->Join(&join_context, join, &joined).ok());
  auto alice = Stub(Cert("alice"));
  // Any request type, filled in as bob with bob's session.
  auto as_bob = [&](auto request) {
    request.set_client_id("bob");
    request.set_session_token(joined.session_token());
    return request;
  };
  // The status code of a unary call / of reading a server stream to its end.
  auto unary = [](auto& stub, auto method, const auto& request, auto response) {
    grpc::ClientContext context;
    SetDeadline(&context);
    return ((*stub).*method)(&context, request, &response).error_code();
  };
  auto streamed = [](auto& stub, auto method, const auto& request, auto message) {
    grpc::ClientContext context;
    SetDeadline(&context);
    auto reader = ((*stub).*method)(&context, request);
    while (reader->Read(&message)) {
    }
    return reader->Finish().error_code();
  };
  using Stub = v1::Aggregator::Stub;
  EXPECT_EQ(unary(alice, &Stub::GetTask, as_bob(v1::GetTaskRequest()), v1::Task()),
            grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_EQ(unary(alice, &Stub::Heartbeat, as_bob(v1::HeartbeatRequest()),
                  v1::HeartbeatResponse()),
            grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_EQ(unary(alice, &Stub::Leave, as_bob(v1::LeaveRequest()), v1::LeaveResponse()),
            grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_EQ(streamed(alice, &Stub::PullModel, as_bob(v1::PullModelRequest()), v1::ModelChunk()),
            grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_EQ(streamed(alice, &Stub::WatchModel, as_bob(v1::WatchModelRequest()),
                     v1::ModelVersionNotice()),
            grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_EQ(RawPush("bob", Cert("alice")), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_EQ(Rejected("forbidden"), 1);
  // bob's session survived all that.
  EXPECT_EQ(unary(bob, &Stub::Heartbeat, as_bob(v1::HeartbeatRequest()), v1::HeartbeatResponse()),
            grpc::StatusCode::OK);

  // No certificate, one from another CA claiming alice, an expired one: the
  // handshake fails.
  EXPECT_THAT(NewClient("alice", {})->Join(), StatusIs(absl::StatusCode::kUnavailable));
  EXPECT_THAT(NewClient("alice", Cert("mallory"))->Join(),
              StatusIs(absl::StatusCode::kUnavailable));
  EXPECT_THAT(NewClient("alice", Cert("expired"))->Join(),
              StatusIs(absl::StatusCode::kUnavailable));

  // Admin needs an admin identity.
  EXPECT_THAT(NewClient("alice", Cert("alice"))->GetServerStatus(),
              StatusIs(absl::StatusCode::kPermissionDenied));
  auto admin = NewClient("ops", Cert("admin"))->GetServerStatus();
  ASSERT_THAT(admin, IsOk());
  EXPECT_EQ(admin->updates_accepted, 1u);
}

TEST_F(TlsTest, BearerTokensAreCheckedBeforeAnythingElse) {
  StartServer(/*mtls=*/false, /*require_client_cert=*/false, /*tokens=*/true);
  EXPECT_THAT(Participate(*NewClient("alice", Token("alice-secret"))), IsOk());
  EXPECT_THAT(NewClient("alice", Token("wrong"))->Join(),
              StatusIs(absl::StatusCode::kUnauthenticated, HasSubstr("unknown bearer token")));
  EXPECT_THAT(NewClient("alice", {})->Join(), StatusIs(absl::StatusCode::kUnauthenticated));
  EXPECT_THAT(NewClient("bob", Token("alice-secret"))->Join(),
              StatusIs(absl::StatusCode::kPermissionDenied));
  // An unauthenticated upload is refused before its header is read.
  EXPECT_EQ(RawPush("alice", Token("")), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_EQ(RawPush("alice", Token("wrong")), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_EQ(Rejected("unauthenticated"), 2);
  EXPECT_EQ(RawPush("bob", Token("alice-secret")), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_EQ(Rejected("forbidden"), 1);
  EXPECT_THAT(NewClient("alice", Token("alice-secret"))->GetServerStatus(),
              StatusIs(absl::StatusCode::kPermissionDenied));
  EXPECT_THAT(NewClient("ops", Token("ops-secret"))->GetServerStatus(), IsOk());
}

// An identity ending in '*' may act as any client id with that prefix: one
// token (or certificate) for relays whose ids are made per pod. A relay with
// the default id relay-<hostname> joins the root through it.
TEST_F(TlsTest, APrefixIdentityAuthenticatesRelaysWithGeneratedIds) {
  StartServer(/*mtls=*/false, /*require_client_cert=*/false, /*tokens=*/true);
  EXPECT_THAT(NewClient("relay-pod-7f9c", Token("relays-secret"))->Join(), IsOk());
  EXPECT_THAT(NewClient("relay-", Token("relays-secret"))->Join(), IsOk());
  EXPECT_THAT(NewClient("alice", Token("relays-secret"))->Join(),
              StatusIs(absl::StatusCode::kPermissionDenied, HasSubstr("'relay-*'")));
  EXPECT_THAT(NewClient("relay-x", Token("alice-secret"))->Join(),
              StatusIs(absl::StatusCode::kPermissionDenied));

  std::ofstream(Pki("relay.token")) << "relays-secret\n";
  server::ServerOptions relay;
  relay.config.set_listen_address("127.0.0.1:0");
  relay.config.set_metrics_port(-1);
  tally::v1::RelayConfig* upstream = relay.config.mutable_relay();
  upstream->set_upstream("127.0.0.1:" + std::to_string(server_->port()));
  upstream->set_tls_ca_file(Pki("ca.pem"));
  upstream->set_auth_token_file(Pki("relay.token"));
  relay.connect_upstream = server::RelayLink::Connect;
  auto started = server::Server::Create(std::move(relay));
  ASSERT_THAT(started, IsOk());
  (*started)->Shutdown(absl::ZeroDuration());
}

// One wildcard identity cannot open unlimited sessions: at most
// limits.max_sessions_per_identity under "relay-*" (other identities still
// join). An oversized id is refused before authentication could repeat it,
// and a refusal by authentication repeats only a bounded part of the id.
TEST_F(TlsTest, AWildcardIdentityOpensAtMostMaxSessionsPerIdentity) {
  tally::v1::ServerConfig base;
  base.mutable_limits()->set_max_sessions_per_identity(3);
  StartServer(/*mtls=*/false, /*require_client_cert=*/false, /*tokens=*/true, base);
  std::vector<std::unique_ptr<Client>> relays;
  for (int i = 0; i < 3; ++i) {
    relays.push_back(NewClient(absl::StrCat("relay-", i), Token("relays-secret")));
    ASSERT_THAT(relays.back()->Join(), IsOk());
  }
  EXPECT_THAT(NewClient("relay-3", Token("relays-secret"))->Join(),
              StatusIs(absl::StatusCode::kResourceExhausted,
                       AllOf(HasSubstr("identity 'relay-*'"),
                             HasSubstr("limits.max_sessions_per_identity = 3"))));
  EXPECT_THAT(Participate(*NewClient("alice", Token("alice-secret"))), IsOk());
  relays.pop_back();  // Leaves.
  EXPECT_THAT(NewClient("relay-3", Token("relays-secret"))->Join(), IsOk());

  const std::string huge = "relay-" + std::string(10240, 'x');
  auto stub = Stub(Token("relays-secret"));
  grpc::ClientContext context;
  SetDeadline(&context);
  v1::JoinRequest join;
  join.set_client_id(huge);
  v1::JoinResponse joined;
  const grpc::Status invalid = stub->Join(&context, join, &joined);
  EXPECT_EQ(invalid.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_LT(invalid.error_message().size(), 700u);
  grpc::ClientContext beat_context;
  SetDeadline(&beat_context);
  v1::HeartbeatRequest beat;
  beat.set_client_id(std::string(10240, 'y'));
  v1::HeartbeatResponse response;
  const grpc::Status denied = stub->Heartbeat(&beat_context, beat, &response);
  EXPECT_EQ(denied.error_code(), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_THAT(denied.error_message(), AllOf(HasSubstr("(10240 bytes)"), SizeIs(Lt(700u))));
}

// With authentication on, the identity that may act as a client id owns it:
// its Join takes over the id's live session (the old token stops working).
TEST_F(TlsTest, TheAuthenticatedOwnerOfAnIdTakesOverItsSession) {
  StartServer(/*mtls=*/false, /*require_client_cert=*/false, /*tokens=*/true);
  auto first = Stub(Token("alice-secret"));
  auto join = [](v1::Aggregator::Stub& stub, std::string* token) {
    grpc::ClientContext context;
    SetDeadline(&context);
    v1::JoinRequest request;
    request.set_client_id("alice");
    v1::JoinResponse response;
    const grpc::Status status = stub.Join(&context, request, &response);
    *token = response.session_token();
    return status;
  };
  std::string old_token, new_token;
  ASSERT_TRUE(join(*first, &old_token).ok());
  auto second = Stub(Token("alice-secret"));  // Another process with alice's token.
  ASSERT_TRUE(join(*second, &new_token).ok());
  auto heartbeat = [](v1::Aggregator::Stub& stub, const std::string& token) {
    grpc::ClientContext context;
    SetDeadline(&context);
    v1::HeartbeatRequest request;
    request.set_client_id("alice");
    request.set_session_token(token);
    v1::HeartbeatResponse response;
    return stub.Heartbeat(&context, request, &response).error_code();
  };
  EXPECT_EQ(heartbeat(*first, old_token), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_EQ(heartbeat(*second, new_token), grpc::StatusCode::OK);
}

TEST_F(TlsTest, SecurityConfigErrorsNameTheField) {
  auto check = [](const std::string& text) {
    auto config = server::ParseConfigText(text);
    EXPECT_THAT(config, IsOk());
    server::ApplyDefaults(&*config);
    return server::ValidateConfig(*config);
  };
  EXPECT_THAT(check(absl::StrCat("auth { tokens_file: '", Pki("tokens.txt"), "' }")),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("bearer tokens need TLS")));
  EXPECT_THAT(check(absl::StrCat("tls { cert_file: '", Pki("server.pem"), "' key_file: '",
                                 Pki("server.key"), "' require_client_cert: true }")),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("tls.require_client_cert")));
  EXPECT_THAT(check("tls { cert_file: '/nonexistent.pem' key_file: '/nonexistent.key' }"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("tls.cert_file")));
  std::ofstream(Pki("bad_tokens.txt")) << "alice alice-secret\n";  // Not hashed.
  EXPECT_THAT(check(absl::StrCat("tls { cert_file: '", Pki("server.pem"), "' key_file: '",
                                 Pki("server.key"), "' } auth { tokens_file: '",
                                 Pki("bad_tokens.txt"), "' }")),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("bad_tokens.txt:1")));
  // SHA-256 of "abc" (FIPS 180-2 test vector).
  EXPECT_EQ(server::HashToken("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}

// The bad-input matrix of issue 6, all against one round that three honest
// clients (two with certificates, one with a token) complete while it goes
// on: every hostile call gets its documented status and the round's model is
// exactly the honest clients' mean.
TEST_F(TlsTest, BadInputMatrixLeavesTheHonestRoundIntact) {
  tally::v1::ServerConfig base;
  base.mutable_rounds()->set_clients_per_round(3);
  base.mutable_rounds()->set_min_clients(3);
  base.mutable_limits()->set_max_concurrent_uploads(2);
  StartServer(/*mtls=*/true, /*require_client_cert=*/false, /*tokens=*/true, base);
  const uint64_t d = 330;
  auto alice = NewClient("alice", Cert("alice"));
  TALLY_ASSERT_OK_AND_ASSIGN(JoinResult joined, alice->Join());

  // Authenticated attackers m1..m3 (tokens) with sessions, through raw stubs.
  std::map<std::string, std::string> session;
  for (const char* m : {"m1", "m2", "m3"}) {
    auto stub = Stub(Token(std::string(m) + "-secret"));
    v1::JoinRequest request;
    request.set_client_id(m);
    v1::JoinResponse response;
    grpc::ClientContext context;
    SetDeadline(&context);
    ASSERT_TRUE(stub->Join(&context, request, &response).ok()) << m;
    session[m] = response.session_token();
  }
  auto header = [&](const std::string& m) {
    v1::UpdateChunk chunk;
    v1::UpdateHeader* h = chunk.mutable_header();
    h->set_client_id(m);
    h->set_session_token(session[m]);
    h->set_update_id(m + "-update");
    h->set_base_version(1);
    h->set_round(1);
    h->set_num_samples(1);
    h->set_codec(v1::CODEC_DENSE_F32);
    h->set_layout_hash(joined.model.layout_hash);
    h->set_num_params(d);
    h->set_payload_bytes(4 * d);
    return chunk;
  };
  auto data = [](uint64_t offset, size_t floats) {
    v1::UpdateChunk chunk;
    chunk.set_offset(offset);
    chunk.set_data(std::string(4 * floats, '\0'));
    return chunk;
  };
  // Sends `chunks`, half-closes, returns the status code.
  auto push = [&](const std::string& m, const std::vector<v1::UpdateChunk>& chunks) {
    auto stub = Stub(Token(m + "-secret"));
    grpc::ClientContext context;
    SetDeadline(&context);
    v1::PushUpdateResponse response;
    auto writer = stub->PushUpdate(&context, &response);
    for (const v1::UpdateChunk& c : chunks) writer->Write(c);
    writer->WritesDone();
    return writer->Finish().error_code();
  };

  // Who may not call at all.
  EXPECT_THAT(NewClient("eve", Identity())->Join(), StatusIs(absl::StatusCode::kUnauthenticated));
  EXPECT_THAT(NewClient("bob", Cert("alice"))->Join(),
              StatusIs(absl::StatusCode::kPermissionDenied));
  EXPECT_THAT(NewClient("alice", Cert("mallory"))->Join(),
              StatusIs(absl::StatusCode::kUnavailable));
  EXPECT_THAT(NewClient("alice", Cert("expired"))->Join(),
              StatusIs(absl::StatusCode::kUnavailable));
  // Oversized (declared), truncated, stale base version.
  v1::UpdateChunk oversized = header("m1");
  oversized.mutable_header()->set_payload_bytes(4 * d + 4);
  EXPECT_EQ(push("m1", {oversized}), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(push("m1", {header("m1"), data(0, 100)}), grpc::StatusCode::INVALID_ARGUMENT);
  v1::UpdateChunk stale = header("m1");
  stale.mutable_header()->set_base_version(7);
  EXPECT_EQ(push("m1", {stale}), grpc::StatusCode::ABORTED);
  // Garbage bytes instead of an UpdateChunk.
  {
    auto stub = Stub(Token("m1-secret"));
    grpc::ClientContext context;
    SetDeadline(&context);
    v1::PushUpdateResponse response;
    auto writer = stub->PushUpdate(&context, &response);
    v1::UpdateChunk garbage;
    garbage.set_data(std::string("\xff\xfe\x00\x01junk", 8));
    garbage.set_offset(3);  // Data before any header.
    writer->Write(garbage);
    writer->WritesDone();
    EXPECT_EQ(writer->Finish().error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  }
  // Too many concurrent uploads: m1 and m2 hold streams open, m3 is refused.
  {
    auto s1 = Stub(Token("m1-secret"));
    auto s2 = Stub(Token("m2-secret"));
    grpc::ClientContext c1, c2;
    SetDeadline(&c1);
    SetDeadline(&c2);
    v1::PushUpdateResponse r1, r2;
    auto w1 = s1->PushUpdate(&c1, &r1);
    auto w2 = s2->PushUpdate(&c2, &r2);
    ASSERT_TRUE(w1->Write(header("m1")));
    ASSERT_TRUE(w2->Write(header("m2")));
    auto admin = NewClient("ops", Cert("admin"));
    for (int i = 0; i < 1000; ++i) {  // Until the server has both (no fixed sleep).
      auto status = admin->GetServerStatus();
      ASSERT_THAT(status, IsOk());
      if (status->uploads_in_flight == 2) break;
      absl::SleepFor(absl::Milliseconds(10));
    }
    EXPECT_EQ(push("m3", {header("m3"), data(0, d)}), grpc::StatusCode::RESOURCE_EXHAUSTED);
    c1.TryCancel();
    c2.TryCancel();
    EXPECT_EQ(w1->Finish().error_code(), grpc::StatusCode::CANCELLED);
    EXPECT_EQ(w2->Finish().error_code(), grpc::StatusCode::CANCELLED);
  }

  // The honest clients complete the round (the SDK retries if a cancelled
  // stream still holds an upload slot for a moment).
  struct Honest {
    std::unique_ptr<Client> client;
    float value;
    uint64_t samples;
  };
  std::vector<Honest> honest;
  honest.push_back({std::move(alice), 1.0f, 1});
  honest.push_back({NewClient("bob", Cert("bob")), 2.0f, 2});
  honest.push_back({NewClient("carol", Token("carol-secret")), 4.0f, 1});
  std::string alice_update_id;
  for (Honest& h : honest) {
    if (h.value != 1.0f) {
      ASSERT_THAT(h.client->Join(), IsOk());
    }
    TALLY_ASSERT_OK_AND_ASSIGN(Task task, h.client->GetTask(absl::Seconds(5)));
    ASSERT_EQ(task.kind, Task::Kind::kTrain);
    ASSERT_EQ(task.round, 1u);
    std::vector<float> delta(d, h.value);
    Update update;
    update.round = task.round;
    update.base_version = task.model_version;
    update.num_samples = h.samples;
    update.delta = delta;
    if (h.value == 1.0f) update.update_id = alice_update_id = "alice-round-1";
    TALLY_ASSERT_OK_AND_ASSIGN(PushResult pushed, h.client->PushUpdate(update));
    EXPECT_FALSE(pushed.duplicate);
  }
  // A replayed update id is acknowledged, not counted.
  {
    std::vector<float> delta(d, 100.0f);
    Update replay;
    replay.round = 1;
    replay.base_version = 1;
    replay.delta = delta;
    replay.update_id = alice_update_id;
    TALLY_ASSERT_OK_AND_ASSIGN(PushResult pushed, honest[0].client->PushUpdate(replay));
    EXPECT_TRUE(pushed.duplicate);
  }
  ASSERT_THAT(honest[0].client->WaitForVersion(1, absl::Seconds(20)), IsOk());
  TALLY_ASSERT_OK_AND_ASSIGN(Model model, honest[0].client->PullModel());
  EXPECT_EQ(model.version, 2u);
  // (1*1 + 2*2 + 1*4) / 4 = 2.25 everywhere.
  for (float v : model.params) ASSERT_FLOAT_EQ(v, 2.25f);
  auto status = NewClient("ops", Cert("admin"))->GetServerStatus();
  ASSERT_THAT(status, IsOk());
  EXPECT_EQ(status->updates_accepted, 3u);
  EXPECT_EQ(status->rounds_completed, 1u);
  EXPECT_EQ(Rejected("length"), 2);  // Oversized declaration, truncated stream.
  EXPECT_EQ(Rejected("stale"), 1);
  EXPECT_EQ(Rejected("malformed"), 1);
  EXPECT_EQ(Rejected("overloaded"), 1);
  EXPECT_EQ(Rejected("cancelled"), 2);
}

}  // namespace
}  // namespace tally
