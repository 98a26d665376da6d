// Test helpers for federation tests: a small synthetic data set (4 clients,
// 8 features, 3 classes) and ServerOptions for an in-process server on
// 127.0.0.1:0 whose model is the simulator's softmax regression.
#ifndef TALLY_TESTS_SIM_SERVER_H_
#define TALLY_TESTS_SIM_SERVER_H_

#include <cstdint>

#include "server/server.h"
#include "sim/softmax_model.h"
#include "sim/synthetic_data.h"

namespace tally::testing {

// 4 clients x 100 samples of 8 features in 3 classes, 600 test samples, seed 5.
inline sim::SyntheticDataOptions SmallDataOptions() {
  sim::SyntheticDataOptions options;
  options.num_features = 8;
  options.num_classes = 3;
  options.num_clients = 4;
  options.samples_per_client = 100;
  options.test_samples = 600;
  options.seed = 5;
  return options;
}

inline server::ServerOptions SoftmaxServerOptions(const sim::SoftmaxRegression& model,
                                                  uint32_t clients_per_round,
                                                  uint32_t min_clients, uint64_t total_rounds) {
  server::ServerOptions options;
  options.config.set_listen_address("127.0.0.1:0");
  options.config.set_metrics_port(-1);
  for (const ModelLayout::TensorDef& def : model.TensorDefs()) {
    auto* t = options.config.mutable_model()->add_tensors();
    t->set_name(def.name);
    for (int64_t d : def.shape) t->add_shape(d);
  }
  options.config.mutable_rounds()->set_clients_per_round(clients_per_round);
  options.config.mutable_rounds()->set_min_clients(min_clients);
  options.config.mutable_rounds()->set_total_rounds(total_rounds);
  return options;
}

}  // namespace tally::testing

#endif  // TALLY_TESTS_SIM_SERVER_H_
