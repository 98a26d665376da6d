// The workflow (docs/workflow.md) through a real server on loopback: EVALUATE
// tasks and their weighted mean, fit metrics, per-round config, attributes at
// Join, ReportEvaluation refusals, metrics refused in an update header, the
// run history across a restart, an evaluation closing at its timeout, and the
// end of a run held for the last evaluation. Every expected number is worked
// out by hand in the comments.
#include <cmath>
#include <filesystem>
#include <fstream>
#include <limits>
#include <map>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "core/client_sampler.h"
#include "tests/raw_client.h"
#include "tests/server_harness.h"

namespace tally {
namespace {

using ::tally::testing::IsOk;

// What one client does and saw: TRAIN updates with a fixed fit loss,
// EVALUATE reports with a fixed accuracy.
struct Behaviour {
  std::string id;
  uint64_t num_samples = 1;
  double loss = 0;
  uint64_t num_examples = 1;
  double accuracy = 0;
};
struct Seen {
  std::map<uint64_t, double> lr;     // Round -> Task.config["lr"] of its TRAIN task.
  std::map<uint64_t, double> decay;  // Round -> config["decay"].
  std::vector<uint64_t> evaluated;   // Versions evaluated.
};

// Trains (an all-zero delta) and evaluates until DONE.
Seen Serve(Harness& h, const Behaviour& b) {
  Seen seen;
  auto client = h.NewClient(b.id);
  EXPECT_THAT(client->Join(), IsOk());
  for (int i = 0; i < 200; ++i) {
    absl::StatusOr<Task> task = client->GetTask(absl::Seconds(5));
    if (!task.ok()) break;
    if (task->kind == Task::Kind::kDone) break;
    if (task->kind == Task::Kind::kWait) continue;
    absl::StatusOr<Model> model = client->PullModel(task->model_version);
    EXPECT_THAT(model, IsOk());
    if (!model.ok()) break;
    if (task->kind == Task::Kind::kEvaluate) {
      seen.evaluated.push_back(task->model_version);
      EXPECT_THAT(client->ReportEvaluation(*task, b.num_examples, {{"accuracy", b.accuracy}}),
                  IsOk());
      continue;
    }
    seen.lr[task->round] = task->ConfigNumber("lr", -1);
    seen.decay[task->round] = task->ConfigNumber("decay", -1);
    std::vector<float> delta(model->params.size(), 0.0f);
    Update update;
    update.round = task->round;
    update.base_version = task->model_version;
    update.num_samples = b.num_samples;
    update.delta = delta;
    update.metrics = {{"loss", b.loss}};
    EXPECT_THAT(client->PushUpdate(update), IsOk());
  }
  (void)client->Leave();
  return seen;
}

std::unique_ptr<tally::v1::Admin::Stub> Admin(Harness& h) {
  return tally::v1::Admin::NewStub(grpc::CreateChannel(h.target, grpc::InsecureChannelCredentials()));
}

tally::v1::RunHistory History(Harness& h) {
  grpc::ClientContext ctx;
  tally::v1::RunHistory history;
  EXPECT_TRUE(Admin(h)->GetHistory(&ctx, tally::v1::GetHistoryRequest(), &history).ok());
  return history;
}

tally::v1::ServerStatus Status(Harness& h) {
  grpc::ClientContext ctx;
  tally::v1::ServerStatus status;
  EXPECT_TRUE(Admin(h)->GetStatus(&ctx, tally::v1::GetStatusRequest(), &status).ok());
  return status;
}

std::string TempPath(const std::string& name) {
  const std::string dir = ::testing::TempDir() + "/workflow_server_" + name;
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  return dir;
}

// Two clients, 4 rounds of 2, evaluation every 2 rounds; lr cosine from 0.1
// to 0 over 4 rounds, "decay" a step decay 1 x 0.5^floor(t/2).
tally::v1::ServerConfig EveryTwoRounds(const std::string& history_path) {
  tally::v1::ServerConfig config = Harness::Config({4}, 2, 2);
  config.mutable_rounds()->set_total_rounds(4);
  config.mutable_evaluation()->set_every_rounds(2);
  config.mutable_evaluation()->set_clients(2);
  config.mutable_history()->set_path(history_path);
  auto* values = config.mutable_client_config()->mutable_values();
  auto* cosine = (*values)["lr"].mutable_cosine();
  cosine->set_max(0.1);
  cosine->set_min(0.0);
  cosine->set_rounds(4);
  auto* step = (*values)["decay"].mutable_step_decay();
  step->set_initial(1.0);
  step->set_gamma(0.5);
  step->set_step_rounds(2);
  return config;
}

TEST(WorkflowServerTest, EvaluatesEveryTwoRoundsWithWeightedMeansAndRoundConfig) {
  const std::string dir = TempPath("every2");
  auto h = Harness::Start(EveryTwoRounds(dir + "/run.jsonl"));
  ASSERT_NE(h, nullptr);
  const Behaviour a{"a", /*num_samples=*/1, /*loss=*/0.5, /*num_examples=*/100, 0.9};
  const Behaviour b{"b", /*num_samples=*/3, /*loss=*/0.1, /*num_examples=*/300, 0.5};
  Seen seen_a, seen_b;
  std::thread ta([&] { seen_a = Serve(*h, a); });
  std::thread tb([&] { seen_b = Serve(*h, b); });
  ta.join();
  tb.join();

  // Fit loss per round: (1 x 0.5 + 3 x 0.1) / (1 + 3) = 0.2.
  // Accuracy per evaluation: (100 x 0.9 + 300 x 0.5) / 400 = 0.6.
  const tally::v1::ServerStatus status = Status(*h);
  EXPECT_NEAR(status.fit_metrics().at("loss"), 0.2, 1e-12);
  EXPECT_EQ(status.fit_metrics_round(), 4u);
  EXPECT_NEAR(status.evaluation_metrics().at("accuracy"), 0.6, 1e-12);
  EXPECT_EQ(status.evaluations_completed(), 2u);
  // Versions 3 (after round 2) and 5 (after round 4), by both clients.
  EXPECT_EQ(seen_a.evaluated, (std::vector<uint64_t>{3, 5}));
  EXPECT_EQ(seen_b.evaluated, (std::vector<uint64_t>{3, 5}));

  // lr = 0 + 0.1 (1 + cos(pi t / 4)) / 2 with t = r - 1: round 1 0.1,
  // round 3 (T/2 + 1) 0.05. decay: round 1 1, round 3 0.5.
  EXPECT_NEAR(seen_a.lr.at(1), 0.1, 1e-12);
  EXPECT_NEAR(seen_a.lr.at(3), 0.05, 1e-12);
  EXPECT_NEAR(seen_b.decay.at(1), 1.0, 1e-12);
  EXPECT_NEAR(seen_b.decay.at(3), 0.5, 1e-12);

  // History: 4 fit records and 2 evaluations, in this order by round.
  const tally::v1::RunHistory history = History(*h);
  std::vector<std::string> kinds;
  for (const auto& r : history.records()) kinds.push_back(r.kind() + std::to_string(r.round()));
  EXPECT_EQ(kinds, (std::vector<std::string>{"fit1", "fit2", "evaluate2", "fit3", "fit4",
                                             "evaluate4"}));
  for (const auto& r : history.records()) {
    if (r.kind() == "fit") {
      EXPECT_EQ(r.participants(), 2u);
      EXPECT_EQ(r.num_examples(), 4u);
      EXPECT_EQ(r.bytes_received(), 32u);  // 2 updates of 4 float32 values.
      EXPECT_NEAR(r.metrics().at("loss"), 0.2, 1e-12);
    } else {
      EXPECT_EQ(r.num_examples(), 400u);
      EXPECT_NEAR(r.metrics().at("accuracy"), 0.6, 1e-12);
    }
  }
  // The file holds the same 6 lines.
  std::ifstream in(dir + "/run.jsonl");
  int lines = 0;
  for (std::string line; std::getline(in, line);) lines += !line.empty();
  EXPECT_EQ(lines, 6);
  EXPECT_EQ(h->Counter("tally_evaluations_completed_total"), 2);
  EXPECT_EQ(h->Counter("tally_evaluation_reports_total"), 4);
  EXPECT_NEAR(h->Gauge("tally_evaluation_metric", {{"name", "accuracy"}}), 0.6, 1e-12);
  EXPECT_NEAR(h->Gauge("tally_fit_metric", {{"name", "loss"}}), 0.2, 1e-12);
}

TEST(WorkflowServerTest, UnwritableHistoryPathStopsTheStartNamingIt) {
  const std::string dir = TempPath("unwritable");
  const std::string path = dir + "/no/such/dir/run.jsonl";
  server::ServerOptions options;
  options.config = EveryTwoRounds(path);
  auto server = server::Server::Create(std::move(options));
  ASSERT_FALSE(server.ok());
  EXPECT_NE(server.status().message().find(path), std::string::npos) << server.status();
}

TEST(WorkflowServerTest, MalformedAttributesAreRefusedAtJoinAndCounted) {
  auto h = Harness::Start(EveryTwoRounds(""));
  ASSERT_NE(h, nullptr);
  auto stub = tally::v1::Aggregator::NewStub(
      grpc::CreateChannel(h->target, grpc::InsecureChannelCredentials()));
  tally::v1::JoinRequest request;
  request.set_client_id("x");
  (*request.mutable_attributes())["bad name!"] = "eu";
  grpc::ClientContext ctx;
  tally::v1::JoinResponse response;
  const grpc::Status status = stub->Join(&ctx, request, &response);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << status.error_message();
  EXPECT_EQ(h->Counter("tally_joins_rejected_total", "attributes"), 1);
  EXPECT_EQ(Status(*h).connected_clients(), 0u);
}

grpc::Status Report(RawClient& c, uint64_t id, uint64_t version, double accuracy,
                    uint64_t examples = 10) {
  tally::v1::EvaluationReport report;
  report.set_client_id(c.id());
  report.set_session_token(c.token());
  report.set_evaluation_id(id);
  report.set_model_version(version);
  report.set_num_examples(examples);
  (*report.mutable_metrics())["accuracy"] = accuracy;
  grpc::ClientContext ctx;
  tally::v1::EvaluationAck ack;
  return c.stub().ReportEvaluation(&ctx, report, &ack);
}

tally::v1::Task GetTask(RawClient& c) {
  tally::v1::GetTaskRequest request;
  request.set_client_id(c.id());
  request.set_session_token(c.token());
  grpc::ClientContext ctx;
  tally::v1::Task task;
  EXPECT_TRUE(c.stub().GetTask(&ctx, request, &task).ok());
  return task;
}

// Asks for tasks until an EVALUATE one comes (or 2 s pass).
tally::v1::Task AwaitEvaluate(RawClient& c) {
  tally::v1::Task task;
  for (int i = 0; i < 100; ++i) {
    task = GetTask(c);
    if (task.kind() == tally::v1::Task::EVALUATE) break;
    absl::SleepFor(absl::Milliseconds(20));
  }
  return task;
}

// One round of 1 client, evaluation every round by 2 clients (first come:
// the first two that joined); a third client is not asked.
TEST(WorkflowServerTest, ReportEvaluationRefusals) {
  tally::v1::ServerConfig config = Harness::Config({2}, 1, 1);
  config.mutable_rounds()->set_total_rounds(3);
  config.mutable_evaluation()->set_every_rounds(1);
  config.mutable_evaluation()->set_clients(2);
  auto h = Harness::Start(config);
  ASSERT_NE(h, nullptr);
  RawClient a(h->target, "a"), b(h->target, "b"), c(h->target, "c");
  // No evaluation open yet: stale.
  EXPECT_EQ(Report(a, 1, 1, 0.5).error_code(), grpc::StatusCode::ABORTED);
  ASSERT_EQ(GetTask(a).kind(), tally::v1::Task::TRAIN);
  ASSERT_TRUE(a.Push(a.Header("u1"), {Floats({0.5f, 0.5f})}).ok());
  const tally::v1::Task task = AwaitEvaluate(a);
  ASSERT_EQ(task.kind(), tally::v1::Task::EVALUATE);
  const uint64_t id = task.evaluation().evaluation_id();
  const uint64_t version = task.model_version();
  EXPECT_EQ(version, 2u);
  EXPECT_EQ(Report(c, id, version, 0.5).error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_EQ(Report(a, id + 5, version, 0.5).error_code(), grpc::StatusCode::ABORTED);
  EXPECT_EQ(Report(a, id, version, std::numeric_limits<double>::quiet_NaN()).error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(Report(a, id, version, 0.5, /*examples=*/0).error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_TRUE(Report(a, id, version, 0.5).ok());
  EXPECT_EQ(Report(a, id, version, 0.5).error_code(), grpc::StatusCode::ALREADY_EXISTS);
  {
    tally::v1::EvaluationReport report;
    report.set_client_id("b");
    report.set_session_token("wrong");
    report.set_evaluation_id(id);
    grpc::ClientContext ctx;
    tally::v1::EvaluationAck ack;
    EXPECT_FALSE(b.stub().ReportEvaluation(&ctx, report, &ack).ok());
  }
  EXPECT_EQ(h->Counter("tally_evaluation_reports_rejected_total", "stale"), 2);
  EXPECT_EQ(h->Counter("tally_evaluation_reports_rejected_total", "not_asked"), 1);
  EXPECT_EQ(h->Counter("tally_evaluation_reports_rejected_total", "invalid"), 2);
  EXPECT_EQ(h->Counter("tally_evaluation_reports_rejected_total", "duplicate"), 1);
  EXPECT_EQ(h->Counter("tally_evaluation_reports_rejected_total", "unauthenticated"), 1);
  EXPECT_EQ(h->Counter("tally_evaluation_reports_total"), 1);
  // b reports: the evaluation closes with the mean of a (10 x 0.5) and b
  // (30 x 0.9): (5 + 27) / 40 = 0.8.
  EXPECT_TRUE(Report(b, id, version, 0.9, 30).ok());
  const tally::v1::ServerStatus status = Status(*h);
  EXPECT_EQ(status.evaluations_completed(), 1u);
  EXPECT_NEAR(status.evaluation_metrics().at("accuracy"), 0.8, 1e-12);
}

TEST(WorkflowServerTest, NonFiniteMetricInAnUpdateIsRefusedBeforeThePayload) {
  tally::v1::ServerConfig config = Harness::Config({2}, 1, 1);
  auto h = Harness::Start(config);
  ASSERT_NE(h, nullptr);
  RawClient a(h->target, "a");
  ASSERT_EQ(GetTask(a).kind(), tally::v1::Task::TRAIN);
  tally::v1::UpdateHeader header = a.Header("u1");
  (*header.mutable_metrics())["loss"] = std::numeric_limits<double>::infinity();
  const grpc::Status status = a.Push(header, {Floats({1.0f, 1.0f})});
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << status.error_message();
  EXPECT_NE(status.error_message().find("metrics"), std::string::npos) << status.error_message();
  EXPECT_EQ(h->Counter("tally_updates_rejected_total", "metrics"), 1);
  EXPECT_EQ(h->server->model_store().Current()->version, 1u);
  EXPECT_EQ(Status(*h).updates_accepted(), 0u);
}

TEST(WorkflowServerTest, MetricNamesBeyondTheCapAreDroppedAndCounted) {
  // limits.max_metric_names 2: an update with 3 names is refused
  // (INVALID_ARGUMENT), the names of updates within the cap but new to a
  // round beyond it are dropped and counted.
  tally::v1::ServerConfig config = Harness::Config({2}, 2, 2);
  config.mutable_limits()->set_max_metric_names(2);
  auto h = Harness::Start(config);
  ASSERT_NE(h, nullptr);
  RawClient a(h->target, "a"), b(h->target, "b");
  ASSERT_EQ(GetTask(a).kind(), tally::v1::Task::TRAIN);
  ASSERT_EQ(GetTask(b).kind(), tally::v1::Task::TRAIN);
  tally::v1::UpdateHeader three = a.Header("u0");
  (*three.mutable_metrics())["x"] = 1;
  (*three.mutable_metrics())["y"] = 1;
  (*three.mutable_metrics())["z"] = 1;
  EXPECT_EQ(a.Push(three, {Floats({0, 0})}).error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  tally::v1::UpdateHeader ha = a.Header("u1");
  (*ha.mutable_metrics())["x"] = 1;
  (*ha.mutable_metrics())["y"] = 2;
  ASSERT_TRUE(a.Push(ha, {Floats({0, 0})}).ok());
  tally::v1::UpdateHeader hb = b.Header("u2");
  (*hb.mutable_metrics())["x"] = 3;
  (*hb.mutable_metrics())["z"] = 4;  // A third name in the round: dropped.
  ASSERT_TRUE(b.Push(hb, {Floats({0, 0})}).ok());
  for (int i = 0; i < 100 && Status(*h).rounds_completed() < 1; ++i) {
    absl::SleepFor(absl::Milliseconds(20));
  }
  const tally::v1::ServerStatus status = Status(*h);
  EXPECT_EQ(status.metric_names_dropped(), 1u);
  EXPECT_NEAR(status.fit_metrics().at("x"), 2.0, 1e-12);  // (1 + 3) / 2.
  EXPECT_EQ(status.fit_metrics().count("z"), 0u);
  EXPECT_EQ(h->Counter("tally_metric_names_dropped_total"), 1);
}

TEST(WorkflowServerTest, HistoryIsAppendedAcrossARestart) {
  const std::string dir = TempPath("restart");
  tally::v1::ServerConfig config = Harness::Config({2}, 1, 1);
  config.mutable_rounds()->set_total_rounds(4);
  config.set_checkpoint_dir(dir + "/ckpt");
  config.mutable_history()->set_path(dir + "/run.jsonl");
  for (int run = 0; run < 2; ++run) {
    auto h = Harness::Start(config);
    ASSERT_NE(h, nullptr);
    RawClient a(h->target, "a");
    tally::v1::Task task = GetTask(a);
    ASSERT_EQ(task.kind(), tally::v1::Task::TRAIN);
    tally::v1::UpdateHeader header = a.Header("u" + std::to_string(run));
    header.set_round(task.round());
    header.set_base_version(task.model_version());
    (*header.mutable_metrics())["loss"] = 1.0 + run;
    ASSERT_TRUE(a.Push(header, {Floats({1, 1})}).ok());
    for (int i = 0; i < 100 && Status(*h).rounds_completed() < 1u + run; ++i) {
      absl::SleepFor(absl::Milliseconds(20));
    }
    const tally::v1::RunHistory history = History(*h);
    ASSERT_EQ(history.records_size(), run + 1);
    EXPECT_EQ(history.records(run).round(), static_cast<uint64_t>(run + 1));
    EXPECT_NEAR(history.records(run).metrics().at("loss"), 1.0 + run, 1e-12);
    h->server->Shutdown(absl::Seconds(1));
  }
}

TEST(WorkflowServerTest, EvaluationClosesAtItsTimeoutWithTheReportsReceived) {
  tally::v1::ServerConfig config = Harness::Config({2}, 1, 1);
  config.mutable_rounds()->set_total_rounds(5);
  config.mutable_evaluation()->set_every_rounds(1);
  config.mutable_evaluation()->set_clients(2);
  config.mutable_evaluation()->set_timeout_ms(300);
  auto h = Harness::Start(config);
  ASSERT_NE(h, nullptr);
  RawClient a(h->target, "a"), b(h->target, "b");
  ASSERT_EQ(GetTask(a).kind(), tally::v1::Task::TRAIN);
  ASSERT_TRUE(a.Push(a.Header("u1"), {Floats({0, 0})}).ok());
  const tally::v1::Task task = AwaitEvaluate(a);
  ASSERT_EQ(task.kind(), tally::v1::Task::EVALUATE);
  ASSERT_TRUE(Report(a, task.evaluation().evaluation_id(), task.model_version(), 0.7).ok());
  // b never reports: the evaluation closes at its 300 ms timeout with a's.
  tally::v1::ServerStatus status;
  for (int i = 0; i < 200 && status.evaluations_completed() == 0; ++i) {
    absl::SleepFor(absl::Milliseconds(20));
    status = Status(*h);
  }
  EXPECT_EQ(status.evaluations_completed(), 1u);
  EXPECT_NEAR(status.evaluation_metrics().at("accuracy"), 0.7, 1e-12);
  EXPECT_EQ(h->Counter("tally_evaluations_timed_out_total"), 1);
  EXPECT_EQ(Report(b, task.evaluation().evaluation_id(), task.model_version(), 0.1).error_code(),
            grpc::StatusCode::ABORTED);
}

TEST(WorkflowServerTest, AtEndTheRunFinishesOnlyOnceTheLastEvaluationClosed) {
  tally::v1::ServerConfig config = Harness::Config({2}, 1, 1);
  config.mutable_rounds()->set_total_rounds(1);
  config.mutable_evaluation()->set_at_end(true);
  config.mutable_evaluation()->set_clients(1);
  auto h = Harness::Start(config);
  ASSERT_NE(h, nullptr);
  RawClient a(h->target, "a");
  ASSERT_EQ(GetTask(a).kind(), tally::v1::Task::TRAIN);
  ASSERT_TRUE(a.Push(a.Header("u1"), {Floats({0, 0})}).ok());
  const tally::v1::Task task = AwaitEvaluate(a);
  ASSERT_EQ(task.kind(), tally::v1::Task::EVALUATE);
  // Total rounds reached, the evaluation open: not finished, DONE held.
  absl::SleepFor(absl::Milliseconds(200));
  EXPECT_FALSE(h->server->RunFinished());
  ASSERT_TRUE(Report(a, task.evaluation().evaluation_id(), task.model_version(), 0.25).ok());
  for (int i = 0; i < 200 && !h->server->RunFinished(); ++i) absl::SleepFor(absl::Milliseconds(20));
  EXPECT_TRUE(h->server->RunFinished());
  EXPECT_EQ(GetTask(a).kind(), tally::v1::Task::DONE);
  EXPECT_NEAR(Status(*h).evaluation_metrics().at("accuracy"), 0.25, 1e-12);
}

// RANDOM selection of 2 among 4 waiting clients (seed 7, gathered until
// min_available_clients 4 wait): who gets TRAIN in round 1.
std::set<std::string> RandomRound(const std::vector<std::string>& join_order) {
  tally::v1::ServerConfig config = Harness::Config({2}, 2, 2);
  config.mutable_rounds()->set_selection(tally::v1::RoundConfig::RANDOM);
  config.mutable_rounds()->set_sampling_seed(7);
  config.mutable_rounds()->set_min_available_clients(4);
  auto h = Harness::Start(config);
  if (h == nullptr) return {};
  std::vector<std::unique_ptr<RawClient>> clients;
  for (const std::string& id : join_order) {
    clients.push_back(std::make_unique<RawClient>(h->target, id));
  }
  // The first three wait (fewer than 4 gathered); the fourth completes it.
  for (size_t i = 0; i + 1 < clients.size(); ++i) {
    EXPECT_EQ(GetTask(*clients[i]).kind(), tally::v1::Task::WAIT) << join_order[i];
  }
  std::set<std::string> train;
  for (int pass = 0; pass < 2; ++pass) {
    for (auto& c : clients) {
      if (GetTask(*c).kind() == tally::v1::Task::TRAIN) train.insert(c->id());
    }
  }
  return train;
}

TEST(WorkflowServerTest, RandomSelectionIsReproducibleAndIndependentOfArrival) {
  const std::set<std::string> first = RandomRound({"c0", "c1", "c2", "c3"});
  const std::set<std::string> second = RandomRound({"c3", "c1", "c0", "c2"});
  EXPECT_EQ(first.size(), 2u);
  EXPECT_EQ(first, second);
  // The sampler's own answer for (seed 7, round 1, {c0..c3}).
  SamplingOptions options;
  options.mode = SelectionMode::kRandom;
  options.count = 2;
  options.seed = 7;
  std::vector<CandidateClient> candidates;
  for (const char* id : {"c0", "c1", "c2", "c3"}) candidates.push_back({id, nullptr});
  const std::vector<std::string> expected = SelectClients(options, candidates, 1);
  EXPECT_EQ(first, std::set<std::string>(expected.begin(), expected.end()));
}

// POISSON (q = 0.5, seed 3) over 6 waiting clients: the selected train,
// the others wait, and the round takes exactly the selection's updates
// (not clients_per_round's 1).
TEST(WorkflowServerTest, PoissonRoundIsItsSelection) {
  tally::v1::ServerConfig config = Harness::Config({2}, 1, 1);
  config.mutable_rounds()->set_selection(tally::v1::RoundConfig::POISSON);
  config.mutable_rounds()->set_sampling_fraction(0.5);
  config.mutable_rounds()->set_sampling_seed(3);
  config.mutable_rounds()->set_min_available_clients(6);
  config.mutable_rounds()->set_total_rounds(1);
  auto h = Harness::Start(config);
  ASSERT_NE(h, nullptr);
  std::vector<std::unique_ptr<RawClient>> clients;
  std::vector<CandidateClient> candidates;
  for (int i = 0; i < 6; ++i) {
    clients.push_back(std::make_unique<RawClient>(h->target, "p" + std::to_string(i)));
    candidates.push_back({clients.back()->id(), nullptr});
  }
  SamplingOptions options;
  options.mode = SelectionMode::kPoisson;
  options.fraction = 0.5;
  options.seed = 3;
  const std::vector<std::string> expected = SelectClients(options, candidates, 1);
  ASSERT_FALSE(expected.empty());
  const std::set<std::string> chosen(expected.begin(), expected.end());
  for (auto& c : clients) GetTask(*c);  // All six wait; the sixth completes the gathering.
  std::vector<RawClient*> train;
  for (auto& c : clients) {
    const tally::v1::Task::Kind kind = GetTask(*c).kind();
    EXPECT_EQ(kind == tally::v1::Task::TRAIN, chosen.count(c->id()) == 1) << c->id();
    if (kind == tally::v1::Task::TRAIN) train.push_back(c.get());
  }
  ASSERT_EQ(train.size(), chosen.size());
  for (size_t i = 0; i < train.size(); ++i) {
    EXPECT_EQ(Status(*h).rounds_completed(), 0u) << "closed after " << i << " updates";
    ASSERT_TRUE(train[i]->Push(train[i]->Header("u"), {Floats({0, 0})}).ok());
  }
  for (int i = 0; i < 100 && Status(*h).rounds_completed() < 1; ++i) {
    absl::SleepFor(absl::Milliseconds(20));
  }
  const tally::v1::RunHistory history = History(*h);
  ASSERT_EQ(history.records_size(), 1);
  EXPECT_EQ(history.records(0).participants(), chosen.size());
}

// RANDOM waiting for 4 clients with a 400 ms round timeout: with only 2
// there, the round selects at half its timeout (200 ms) among those 2.
TEST(WorkflowServerTest, SampledRoundSelectsAtHalfItsTimeoutWithThoseWaiting) {
  tally::v1::ServerConfig config = Harness::Config({2}, 2, 1, /*timeout_ms=*/400);
  config.mutable_rounds()->set_selection(tally::v1::RoundConfig::RANDOM);
  config.mutable_rounds()->set_min_available_clients(4);
  auto h = Harness::Start(config);
  ASSERT_NE(h, nullptr);
  RawClient a(h->target, "a"), b(h->target, "b");
  EXPECT_EQ(GetTask(a).kind(), tally::v1::Task::WAIT);
  EXPECT_EQ(GetTask(b).kind(), tally::v1::Task::WAIT);
  absl::SleepFor(absl::Milliseconds(250));
  EXPECT_EQ(GetTask(a).kind(), tally::v1::Task::TRAIN);
  EXPECT_EQ(GetTask(b).kind(), tally::v1::Task::TRAIN);
}

TEST(WorkflowServerTest, FilterGivesTrainOnlyToMatchingClients) {
  tally::v1::ServerConfig config = Harness::Config({2}, 2, 2);
  (*config.mutable_rounds()->mutable_filter())["region"] = "eu";
  auto h = Harness::Start(config);
  ASSERT_NE(h, nullptr);
  auto client = [&](const std::string& id, const std::string& region) {
    ClientOptions options;
    options.target = h->target;
    options.client_id = id;
    options.attributes = {{"region", region}};
    auto c = Client::Create(options);
    EXPECT_THAT(c, IsOk());
    EXPECT_THAT((*c)->Join(), IsOk());
    return std::move(c).value();
  };
  auto us = client("us-1", "us");
  auto eu1 = client("eu-1", "eu");
  auto eu2 = client("eu-2", "eu");
  // us-1 asks first, yet waits; both eu clients train.
  EXPECT_EQ(us->GetTask()->kind, Task::Kind::kWait);
  EXPECT_EQ(eu1->GetTask()->kind, Task::Kind::kTrain);
  EXPECT_EQ(eu2->GetTask()->kind, Task::Kind::kTrain);
  EXPECT_EQ(us->GetTask()->kind, Task::Kind::kWait);
}

}  // namespace
}  // namespace tally
