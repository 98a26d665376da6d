// Sessions through a real server on 127.0.0.1:0 (server/sessions.h), with raw
// stubs for what the SDK would not send and the real SDK for its re-joins:
// the session caps and Join's rate limit bound what distinct ids can make the
// server hold; ids are validated and errors and log lines repeat at most a
// bounded, escaped part of what a client sent; one live session per client
// id (ALREADY_EXISTS unless the caller holds it); the SDK re-joins after a
// server restart and after its session expired.
#include <algorithm>
#include <memory>
#include <sstream>
#include <string>

#include "core/clock.h"
#include "gmock/gmock.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "server/sessions.h"
#include "tally/client.h"
#include "tally/v1/tally.grpc.pb.h"
#include "tests/raw_client.h"
#include "tests/server_harness.h"
#include "tests/status_matchers.h"

namespace tally {
namespace {

using ::tally::testing::IsOk;
using ::tally::testing::StatusIs;
using ::testing::AllOf;
using ::testing::HasSubstr;
using ::testing::SizeIs;

// A server whose session limits the test sets; everything else default.
tally::v1::ServerConfig SessionConfig(uint32_t max_sessions, uint32_t per_peer,
                                      uint32_t joins_per_minute = 100000) {
  tally::v1::ServerConfig config = Harness::Config({4}, /*clients=*/1, /*min_clients=*/1);
  config.mutable_limits()->set_max_sessions(max_sessions);
  config.mutable_limits()->set_max_sessions_per_peer(per_peer);
  config.mutable_limits()->set_peer_joins_per_minute(joins_per_minute);
  return config;
}

// SessionConfig with sessions that expire after a minute idle (of the test's
// ManualClock).
tally::v1::ServerConfig ExpiringConfig() {
  tally::v1::ServerConfig config = SessionConfig(100, 100);
  config.mutable_limits()->set_session_timeout_ms(60000);
  return config;
}

std::unique_ptr<v1::Aggregator::Stub> Stub(const Harness& h) {
  return v1::Aggregator::NewStub(grpc::CreateChannel(h.target, grpc::InsecureChannelCredentials()));
}

// One raw Join (no SDK retries: each answer as the server gave it).
grpc::Status RawJoin(v1::Aggregator::Stub& stub, const std::string& id,
                     const std::string& token = "", std::string* new_token = nullptr) {
  grpc::ClientContext context;
  v1::JoinRequest request;
  request.set_client_id(id);
  request.set_session_token(token);
  v1::JoinResponse response;
  grpc::Status status = stub.Join(&context, request, &response);
  if (new_token != nullptr) *new_token = response.session_token();
  return status;
}

grpc::Status RawHeartbeat(v1::Aggregator::Stub& stub, const std::string& id,
                          const std::string& token) {
  grpc::ClientContext context;
  v1::HeartbeatRequest request;
  request.set_client_id(id);
  request.set_session_token(token);
  v1::HeartbeatResponse response;
  return stub.Heartbeat(&context, request, &response);
}

uint32_t Connected(Harness& h) {
  auto status = h.NewClient("observer")->GetServerStatus();
  EXPECT_THAT(status, IsOk());
  return status.ok() ? status->connected_clients : 0;
}

// 200 distinct ids against max_sessions 20: 20 sessions, 180 refusals naming
// the limit, each with a retry hint; the count stays at the cap (what bounds
// the memory), and a Leave makes room again.
TEST(ServerSessionTest, MaxSessionsCapsWhatDistinctIdsCanOpen) {
  auto h = Harness::Start(SessionConfig(/*max_sessions=*/20, /*per_peer=*/1000));
  ASSERT_NE(h, nullptr);
  auto stub = Stub(*h);
  int opened = 0;
  std::string first_token;
  for (int i = 0; i < 200; ++i) {
    std::string token;
    const grpc::Status status = RawJoin(*stub, "flood-" + std::to_string(i), "", &token);
    if (status.ok()) {
      if (++opened == 1) first_token = token;
      continue;
    }
    ASSERT_EQ(status.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED) << i;
    EXPECT_THAT(status.error_message(), HasSubstr("limits.max_sessions = 20"));
    EXPECT_FALSE(status.error_details().empty()) << "no retry hint";
  }
  EXPECT_EQ(opened, 20);
  EXPECT_EQ(Connected(*h), 20u);
  EXPECT_EQ(h->Counter("tally_joins_rejected_total", "max_sessions"), 180);
  grpc::ClientContext context;
  v1::LeaveRequest leave;
  leave.set_client_id("flood-0");
  leave.set_session_token(first_token);
  v1::LeaveResponse left;
  ASSERT_TRUE(stub->Leave(&context, leave, &left).ok());
  EXPECT_TRUE(RawJoin(*stub, "late").ok());
  EXPECT_EQ(Connected(*h), 20u);
}

// One address may open max_sessions_per_peer sessions; re-joining one of
// them (with its token) is not a new session and is still allowed.
TEST(ServerSessionTest, MaxSessionsPerPeerCapsOneAddress) {
  auto h = Harness::Start(SessionConfig(/*max_sessions=*/100, /*per_peer=*/5));
  ASSERT_NE(h, nullptr);
  auto stub = Stub(*h);
  std::string token;
  for (int i = 0; i < 5; ++i) ASSERT_TRUE(RawJoin(*stub, "p" + std::to_string(i), "", &token).ok());
  const grpc::Status refused = RawJoin(*stub, "p5");
  EXPECT_EQ(refused.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_THAT(refused.error_message(),
              AllOf(HasSubstr("peer 127.0.0.1"), HasSubstr("limits.max_sessions_per_peer = 5")));
  EXPECT_EQ(h->Counter("tally_joins_rejected_total", "max_sessions_per_peer"), 1);
  EXPECT_TRUE(RawJoin(*stub, "p4", token).ok());  // A re-join at the cap.
  EXPECT_EQ(Connected(*h), 5u);
}

// Join is rate limited per address: a burst of peer_joins_per_minute, then
// RESOURCE_EXHAUSTED with the wait until the next token; the SDK waits that
// long (here: virtual time moves on).
TEST(ServerSessionTest, JoinsAreRateLimitedPerPeerWithARetryHint) {
  ManualClock clock(absl::FromUnixSeconds(1000000));
  auto h = Harness::Start(SessionConfig(100, 100, /*joins_per_minute=*/3), &clock);
  ASSERT_NE(h, nullptr);
  auto stub = Stub(*h);
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(RawJoin(*stub, "r" + std::to_string(i)).ok());
  const grpc::Status limited = RawJoin(*stub, "r3");
  EXPECT_EQ(limited.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_THAT(limited.error_message(),
              AllOf(HasSubstr("limits.peer_joins_per_minute = 3"), HasSubstr("; retry in 200")));
  EXPECT_FALSE(limited.error_details().empty()) << "no retry hint";
  EXPECT_EQ(h->Counter("tally_joins_rejected_total", "rate_limited"), 1);
  clock.Advance(absl::Seconds(21));  // One token back (3 a minute).
  EXPECT_TRUE(RawJoin(*stub, "r3").ok());
  EXPECT_EQ(RawJoin(*stub, "r4").error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
}

// A 10 KB client id: refused with INVALID_ARGUMENT by every call, in a short
// message that shows its start and its length; the log line is as short; an
// upload sharing the connection is not disturbed.
TEST(ServerSessionTest, OversizedIdsAreRefusedAndNeverRepeatedWhole) {
  auto h = Harness::Start(SessionConfig(100, 100));
  ASSERT_NE(h, nullptr);
  const std::string huge(10240, 'x');
  RawClient honest(h->target, "honest");
  // The honest upload is in flight on the channel the hostile calls use.
  grpc::ClientContext push_context;
  v1::PushUpdateResponse pushed;
  auto writer = honest.stub().PushUpdate(&push_context, &pushed);
  v1::UpdateChunk message;
  *message.mutable_header() = honest.Header("u1");
  ASSERT_TRUE(writer->Write(message));

  ::testing::internal::CaptureStderr();
  const grpc::Status join = RawJoin(honest.stub(), huge);
  const grpc::Status beat = RawHeartbeat(honest.stub(), huge, honest.token());
  v1::UpdateHeader header = honest.Header("u2");
  header.set_client_id(huge);
  const grpc::Status push = honest.Push(header, {std::string(16, '\0')});
  header = honest.Header(huge);  // An oversized update id, from a valid session.
  const grpc::Status update_id = honest.Push(header, {std::string(16, '\0')});
  const std::string log = ::testing::internal::GetCapturedStderr();

  for (const grpc::Status& status : {join, beat, push, update_id}) {
    EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << status.error_message();
    EXPECT_THAT(status.error_message(),
                AllOf(HasSubstr("(10240 bytes)"), SizeIs(::testing::Lt(700u))));
  }
  EXPECT_THAT(push.error_message(), HasSubstr("client_id must be 1..128 bytes"));
  EXPECT_THAT(update_id.error_message(), HasSubstr("update_id must be 1..128 bytes"));
  std::istringstream lines(log);
  int mentions = 0;
  for (std::string line; std::getline(lines, line);) {
    EXPECT_LT(line.size(), 1600u) << line.substr(0, 200);
    mentions += line.find("(10240 bytes)") != std::string::npos;
  }
  EXPECT_GE(mentions, 2) << log;  // The two rejected uploads.
  EXPECT_EQ(h->Counter("tally_joins_rejected_total", "invalid_id"), 1);

  message.Clear();
  message.set_offset(0);
  message.set_data(std::string(16, '\0'));
  ASSERT_TRUE(writer->Write(message));
  writer->WritesDone();
  EXPECT_TRUE(writer->Finish().ok());
}

// Bytes that could forge a log line or confuse a reader come back escaped.
TEST(ServerSessionTest, IdsWithControlBytesComeBackEscaped) {
  auto h = Harness::Start(SessionConfig(100, 100));
  ASSERT_NE(h, nullptr);
  auto stub = Stub(*h);
  const grpc::Status status = RawJoin(*stub, "evil\nI round 9 aggregated 'x'\\");
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(status.error_message(),
              HasSubstr("got 'evil\\x0aI round 9 aggregated \\x27x\\x27\\x5c'"));
}

// Authentication off: a Join under the id of a live session is refused
// (ALREADY_EXISTS, the SDK's too) and the holder keeps working; the holder
// re-joins with its token; once it leaves (the SDK leaves when destroyed),
// or its session expires, the id is free.
TEST(ServerSessionTest, ALiveSessionIsNotTakenOverWithoutItsToken) {
  ManualClock clock(absl::FromUnixSeconds(1000000));
  auto h = Harness::Start(ExpiringConfig(), &clock);
  ASSERT_NE(h, nullptr);
  auto stub = Stub(*h);
  std::unique_ptr<Client> holder = h->NewClient("worker");
  ASSERT_THAT(holder->Join(), IsOk());
  clock.Advance(absl::Seconds(15));

  const grpc::Status squat = RawJoin(*stub, "worker");
  EXPECT_EQ(squat.error_code(), grpc::StatusCode::ALREADY_EXISTS);
  EXPECT_THAT(squat.error_message(),
              AllOf(HasSubstr("'worker' already has a live session (last seen 15000 ms ago)"),
                    HasSubstr("expires after 45000 ms more"),
                    HasSubstr("limits.session_timeout_ms = 60000")));
  std::unique_ptr<Client> twin = h->NewClient("worker");
  EXPECT_THAT(twin->Join(), StatusIs(absl::StatusCode::kAlreadyExists));
  EXPECT_EQ(h->Counter("tally_joins_rejected_total", "id_in_use"), 2);
  EXPECT_THAT(holder->Heartbeat(), IsOk());  // Not replaced.

  ASSERT_THAT(holder->Join(), IsOk());  // A re-join: the SDK sends its token.
  EXPECT_EQ(h->Counter("tally_sessions_replaced_total"), 1);
  EXPECT_THAT(holder->Heartbeat(), IsOk());
  holder.reset();  // Leaves.
  ASSERT_THAT(twin->Join(), IsOk());

  // The twin goes quiet past the timeout: its session has expired and a
  // third process may take the id; the twin's next call is told why.
  clock.Advance(absl::Seconds(61));
  std::unique_ptr<Client> third = h->NewClient("worker");
  ASSERT_THAT(third->Join(), IsOk());
  EXPECT_THAT(twin->GetTask(),
              StatusIs(absl::StatusCode::kAlreadyExists, HasSubstr("already has a live session")));
  EXPECT_THAT(third->GetTask(), IsOk());
}

// The SDK joins again by itself when the server forgot its session: after the
// session expired, and after a restart of the server on the same port.
TEST(ServerSessionTest, SdkRejoinsAfterExpiryAndAfterARestart) {
  ManualClock clock(absl::FromUnixSeconds(1000000));
  auto h = Harness::Start(ExpiringConfig(), &clock);
  ASSERT_NE(h, nullptr);
  std::unique_ptr<Client> client = h->NewClient("edge-1");
  ASSERT_THAT(client->Join(), IsOk());
  clock.Advance(absl::Seconds(61));
  TALLY_ASSERT_OK_AND_ASSIGN(Task task, client->GetTask());  // UNAUTHENTICATED, re-join.
  EXPECT_EQ(task.kind, Task::Kind::kTrain);

  const int port = h->server->port();
  h->server->Shutdown(absl::Seconds(1));
  tally::v1::ServerConfig config = ExpiringConfig();
  config.set_listen_address("127.0.0.1:" + std::to_string(port));
  auto restarted = Harness::Start(config, &clock);
  ASSERT_NE(restarted, nullptr);
  TALLY_ASSERT_OK_AND_ASSIGN(task, client->GetTask());  // A new server: re-join.
  EXPECT_EQ(task.kind, Task::Kind::kTrain);
  EXPECT_EQ(Connected(*restarted), 1u);
}

// The forms of gRPC's peer strings (IPv6 brackets may come percent-encoded).
TEST(ServerSessionTest, PeerAddressIsTheSourceAddressWithoutItsPort) {
  EXPECT_EQ(server::PeerAddress("ipv4:10.0.0.7:5123"), "10.0.0.7");
  EXPECT_EQ(server::PeerAddress("ipv6:[::1]:5123"), "::1");
  EXPECT_EQ(server::PeerAddress("ipv6:%5B2001:db8::7%5D:443"), "2001:db8::7");
  EXPECT_EQ(server::PeerAddress("unix:/run/tally.sock"), "unix:/run/tally.sock");
  EXPECT_EQ(server::PeerAddress(""), "");
}

}  // namespace
}  // namespace tally
