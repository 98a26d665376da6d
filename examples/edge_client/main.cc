// edge_client: joins a tally federation, pulls the global model and pushes a
// zero update — the smallest complete use of the installed C++ SDK.
//
//   edge_client <target host:port> <client id>
#include <cstdio>
#include <iostream>
#include <memory>
#include <vector>

#include "tally/client.h"

int main(int argc, char** argv) {
  if (argc != 3) {
    std::cerr << "usage: " << argv[0] << " <target host:port> <client id>\n";
    return 2;
  }
  tally::ClientOptions options;
  options.target = argv[1];
  options.client_id = argv[2];
  absl::StatusOr<std::unique_ptr<tally::Client>> client = tally::Client::Create(options);
  if (!client.ok()) {
    std::cerr << client.status() << "\n";
    return 2;
  }

  absl::StatusOr<tally::JoinResult> joined = (*client)->Join();
  if (!joined.ok()) {
    std::cerr << joined.status() << "\n";
    return 1;
  }
  std::cout << "joined: model version " << joined->model_version << ", " << joined->model.num_params
            << " params in " << joined->model.tensors.size() << " tensors\n";

  absl::StatusOr<tally::Task> task = (*client)->GetTask(absl::Seconds(30));
  if (!task.ok()) {
    std::cerr << task.status() << "\n";
    return 1;
  }
  if (task->kind != tally::Task::Kind::kTrain) {
    std::cout << "no training task right now\n";
    return 0;
  }
  // The latest model: the task's version, or a newer one on an asynchronous
  // server (push against the version actually pulled).
  absl::StatusOr<tally::Model> model = (*client)->PullModel();
  if (!model.ok()) {
    std::cerr << model.status() << "\n";
    return 1;
  }
  std::cout << "task: round " << task->round << ", pulled version " << model->version << "\n";

  // A real client would train here; a zero delta leaves the model unchanged.
  const std::vector<float> delta(model->params.size(), 0.0f);
  tally::Update update;
  update.base_version = model->version;
  update.round = task->round;
  update.num_samples = 1;
  update.delta = delta;
  absl::StatusOr<tally::PushResult> pushed = (*client)->PushUpdate(update);
  if (!pushed.ok()) {
    std::cerr << pushed.status() << "\n";
    return 1;
  }
  std::cout << "pushed: update " << pushed->update_id << (pushed->duplicate ? " (duplicate)" : "")
            << ", round " << pushed->round << ", model version " << pushed->model_version
            << ", attempts " << pushed->attempts << "\n";

  if (absl::Status left = (*client)->Leave(); !left.ok()) std::cerr << left << "\n";
  return 0;
}
