// Harness: a real tally server on 127.0.0.1:0 in this process, its metrics
// registry, and SDK clients of it; shared by the integration and relay tests.
#ifndef TALLY_TESTS_SERVER_HARNESS_H_
#define TALLY_TESTS_SERVER_HARNESS_H_

#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "prometheus/registry.h"
#include "server/relay.h"
#include "server/server.h"
#include "tally/client.h"
#include "tests/status_matchers.h"

namespace tally {

struct Harness {
  std::shared_ptr<prometheus::Registry> registry = std::make_shared<prometheus::Registry>();
  std::unique_ptr<server::Server> server;
  std::string target;

  // A loopback server with one tensor "w" of `shape` and these rounds; tests
  // set more fields before Start(config).
  static tally::v1::ServerConfig Config(const std::vector<int64_t>& shape, uint32_t clients,
                                        uint32_t min_clients, uint32_t timeout_ms = 600000) {
    tally::v1::ServerConfig config;
    config.set_listen_address("127.0.0.1:0");
    config.set_metrics_port(-1);
    auto* t = config.mutable_model()->add_tensors();
    t->set_name("w");
    for (int64_t d : shape) t->add_shape(d);
    config.mutable_rounds()->set_clients_per_round(clients);
    config.mutable_rounds()->set_min_clients(min_clients);
    config.mutable_rounds()->set_round_timeout_ms(timeout_ms);
    return config;
  }

  static std::unique_ptr<Harness> Start(const std::vector<int64_t>& shape, uint32_t clients,
                                        uint32_t min_clients, uint32_t timeout_ms = 600000,
                                        const tally::v1::StrategyConfig& strategy = {}) {
    tally::v1::ServerConfig config = Config(shape, clients, min_clients, timeout_ms);
    *config.mutable_strategy() = strategy;
    return Start(std::move(config));
  }

  static std::unique_ptr<Harness> Start(tally::v1::ServerConfig config,
                                        Clock* clock = RealClock::Get()) {
    auto h = std::make_unique<Harness>();
    server::ServerOptions options;
    options.config = std::move(config);
    options.registry = h->registry;
    options.clock = clock;
    options.connect_upstream = server::RelayLink::Connect;  // Relay configs.
    auto server = server::Server::Create(std::move(options));
    EXPECT_THAT(server, ::tally::testing::IsOk());
    if (!server.ok()) return nullptr;
    h->server = std::move(server).value();
    h->target = "127.0.0.1:" + std::to_string(h->server->port());
    return h;
  }

  std::unique_ptr<Client> NewClient(const std::string& id,
                                    const std::vector<std::string>& upload_codecs = {},
                                    std::optional<std::vector<std::string>> download_codecs = {}) {
    ClientOptions options;
    options.target = target;
    options.client_id = id;
    options.upload_codecs = upload_codecs;
    if (download_codecs.has_value()) options.download_codecs = *download_codecs;
    options.max_attempts = 3;
    options.initial_backoff = absl::Milliseconds(10);
    auto client = Client::Create(options);
    EXPECT_THAT(client, ::tally::testing::IsOk());
    return client.ok() ? std::move(client).value() : nullptr;
  }

  // The series of `name` with every label in `labels`.
  double Counter(const std::string& name, const std::map<std::string, std::string>& labels) {
    for (const auto& family : registry->Collect()) {
      if (family.name != name) continue;
      for (const auto& metric : family.metric) {
        size_t matched = 0;
        for (const auto& label : metric.label) {
          auto it = labels.find(label.name);
          matched += it != labels.end() && it->second == label.value;
        }
        if (matched == labels.size()) return metric.counter.value;
      }
    }
    return -1;
  }

  double Counter(const std::string& name, const std::string& reason = "") {
    for (const auto& family : registry->Collect()) {
      if (family.name != name) continue;
      for (const auto& metric : family.metric) {
        if (reason.empty() || (!metric.label.empty() && metric.label[0].value == reason)) {
          return metric.counter.value;
        }
      }
    }
    return -1;
  }
};

}  // namespace tally

#endif  // TALLY_TESTS_SERVER_HARNESS_H_
