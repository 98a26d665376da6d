// TLS, mutual TLS and bearer tokens through a real server on loopback and the
// real SDK, with a throwaway PKI made by the openssl CLI at test time
// (tests/gen_test_pki.sh): who may connect, and that a caller can act only as
// itself.
#include <cstdlib>
#include <chrono>
#include <fstream>
#include <iterator>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "prometheus/registry.h"
#include "server/auth.h"
#include "server/config.h"
#include "server/server.h"
#include "grpcpp/grpcpp.h"
#include "tally/client.h"
#include "tally/v1/tally.grpc.pb.h"
#include "tests/status_matchers.h"

namespace tally {
namespace {

using ::tally::testing::IsOk;
using ::tally::testing::StatusIs;
using ::testing::HasSubstr;

class TlsTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    pki_ = new std::string(::testing::TempDir() + "/tally_tls_test_pki");
    const std::string command =
        absl::StrCat("rm -rf '", *pki_, "' && '", TALLY_SOURCE_DIR, "/tests/gen_test_pki.sh' '",
                     *pki_, "'");
    ASSERT_EQ(std::system(command.c_str()), 0) << command;
    // Tokens file: alice's and ops's tokens, stored as SHA-256 only.
    std::ofstream tokens(Pki("tokens.txt"));
    tokens << "# identity sha256(token)\n"
           << "alice " << server::HashToken("alice-secret") << "\n"
           << "ops   " << server::HashToken("ops-secret") << "  # the operator\n";
  }
  static void TearDownTestSuite() { delete pki_; }
  static std::string Pki(const std::string& file) { return *pki_ + "/" + file; }

  // TLS with the test server certificate; `mtls` adds the client CA.
  void StartServer(bool mtls, bool require_client_cert, bool tokens) {
    server::ServerOptions options;
    options.config.set_listen_address("127.0.0.1:0");
    options.config.set_metrics_port(-1);
    options.config.mutable_rounds()->set_clients_per_round(1);
    auto* tls = options.config.mutable_tls();
    tls->set_cert_file(Pki("server.pem"));
    tls->set_key_file(Pki("server.key"));
    if (mtls) tls->set_client_ca_file(Pki("ca.pem"));
    tls->set_require_client_cert(require_client_cert);
    if (tokens) options.config.mutable_auth()->set_tokens_file(Pki("tokens.txt"));
    options.config.mutable_auth()->add_admin_identities("ops");
    options.registry = registry_;
    auto server = server::Server::Create(std::move(options));
    ASSERT_THAT(server, IsOk());
    server_ = std::move(server).value();
  }

  struct Identity {
    std::string ca = "ca.pem";  // "" = plaintext.
    std::string cert;           // e.g. "alice" for alice.pem / alice.key.
    std::string token;
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
  {
    v1::GetTaskRequest request;
    request.set_client_id("bob");
    request.set_session_token(joined.session_token());
    v1::Task task;
    grpc::ClientContext context;
    SetDeadline(&context);
    EXPECT_EQ(alice->GetTask(&context, request, &task).error_code(),
              grpc::StatusCode::PERMISSION_DENIED);
  }
  {
    v1::HeartbeatRequest request;
    request.set_client_id("bob");
    request.set_session_token(joined.session_token());
    v1::HeartbeatResponse response;
    grpc::ClientContext context;
    SetDeadline(&context);
    EXPECT_EQ(alice->Heartbeat(&context, request, &response).error_code(),
              grpc::StatusCode::PERMISSION_DENIED);
  }
  {
    v1::PullModelRequest request;
    request.set_client_id("bob");
    request.set_session_token(joined.session_token());
    grpc::ClientContext context;
    SetDeadline(&context);
    auto reader = alice->PullModel(&context, request);
    v1::ModelChunk chunk;
    EXPECT_FALSE(reader->Read(&chunk));
    EXPECT_EQ(reader->Finish().error_code(), grpc::StatusCode::PERMISSION_DENIED);
  }
  {
    v1::WatchModelRequest request;
    request.set_client_id("bob");
    request.set_session_token(joined.session_token());
    grpc::ClientContext context;
    SetDeadline(&context);
    auto reader = alice->WatchModel(&context, request);
    v1::ModelVersionNotice notice;
    EXPECT_FALSE(reader->Read(&notice));
    EXPECT_EQ(reader->Finish().error_code(), grpc::StatusCode::PERMISSION_DENIED);
  }
  {
    v1::LeaveRequest request;
    request.set_client_id("bob");
    request.set_session_token(joined.session_token());
    v1::LeaveResponse response;
    grpc::ClientContext context;
    SetDeadline(&context);
    EXPECT_EQ(alice->Leave(&context, request, &response).error_code(),
              grpc::StatusCode::PERMISSION_DENIED);
  }
  EXPECT_EQ(RawPush("bob", Cert("alice")), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_EQ(Rejected("forbidden"), 1);
  // bob's session survived all that.
  {
    v1::HeartbeatRequest request;
    request.set_client_id("bob");
    request.set_session_token(joined.session_token());
    v1::HeartbeatResponse response;
    grpc::ClientContext context;
    SetDeadline(&context);
    EXPECT_TRUE(bob->Heartbeat(&context, request, &response).ok());
  }

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

}  // namespace
}  // namespace tally
