// Client selection (core/client_sampler.h): first come, seeded random
// samples (reproducible, independent of arrival order, uniform) and Poisson
// sampling (each client with probability q), with attribute filters. The
// frequency bounds are 5 binomial standard deviations, sqrt(p (1 - p) / n),
// computed in each test; the samples are deterministic (fixed seeds), so a
// pass is not luck that a rerun could lose.
#include "core/client_sampler.h"

#include <algorithm>
#include <cmath>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace tally {
namespace {

using ::testing::ElementsAre;

std::vector<CandidateClient> Clients(int n) {
  std::vector<CandidateClient> clients;
  for (int i = 0; i < n; ++i) clients.push_back({absl::StrCat("client-", 100 + i), nullptr});
  return clients;
}

TEST(ClientSamplerTest, FirstComeTakesTheFirstMatchingInArrivalOrder) {
  const ClientAttributes eu = {{"region", "eu"}, {"device", "gpu"}};
  const ClientAttributes us = {{"region", "us"}};
  std::vector<CandidateClient> available = {
      {"z", &eu}, {"y", &us}, {"x", &eu}, {"w", nullptr}, {"v", &eu}};
  SamplingOptions options;
  options.count = 2;
  EXPECT_THAT(SelectClients(options, available, 1), ElementsAre("z", "y"));
  options.filter = {{"region", "eu"}};
  EXPECT_THAT(SelectClients(options, available, 1), ElementsAre("z", "x"));
  options.filter = {{"region", "eu"}, {"device", "cpu"}};
  EXPECT_TRUE(SelectClients(options, available, 1).empty());
  options.filter = {};
  options.count = 10;  // More than there are: all of them.
  EXPECT_EQ(SelectClients(options, available, 1).size(), 5u);
}

TEST(ClientSamplerTest, FilterNeedsEveryEntry) {
  const ClientAttributes attributes = {{"region", "eu"}, {"device", "gpu"}};
  EXPECT_TRUE(MatchesFilter({}, nullptr));
  EXPECT_TRUE(MatchesFilter({{"region", "eu"}}, &attributes));
  EXPECT_FALSE(MatchesFilter({{"region", "EU"}}, &attributes));
  EXPECT_FALSE(MatchesFilter({{"region", "eu"}, {"os", "linux"}}, &attributes));
  EXPECT_FALSE(MatchesFilter({{"region", "eu"}}, nullptr));
}

TEST(ClientSamplerTest, RandomIsReproducibleAndIndependentOfArrivalOrder) {
  SamplingOptions options;
  options.mode = SelectionMode::kRandom;
  options.count = 4;
  options.seed = 7;
  std::vector<CandidateClient> available = Clients(12);
  const std::vector<std::string> first = SelectClients(options, available, 3);
  ASSERT_EQ(first.size(), 4u);
  EXPECT_TRUE(std::is_sorted(first.begin(), first.end()));
  EXPECT_EQ(std::set<std::string>(first.begin(), first.end()).size(), 4u);
  std::reverse(available.begin(), available.end());
  EXPECT_EQ(SelectClients(options, available, 3), first);
  // Another round or another seed draws another sample (in at least one of
  // 10 rounds: the chance that 10 uniform 4-of-12 samples all equal this
  // one is (1/495)^10).
  int differing_rounds = 0;
  for (uint64_t round = 4; round < 14; ++round) {
    differing_rounds += SelectClients(options, available, round) != first;
  }
  EXPECT_GT(differing_rounds, 0);
  options.seed = 8;
  int differing_seeds = 0;
  for (uint64_t round = 3; round < 13; ++round) {
    SamplingOptions other = options;
    other.seed = 7;
    differing_seeds += SelectClients(options, available, round) != SelectClients(other, available, round);
  }
  EXPECT_GT(differing_seeds, 0);
}

TEST(ClientSamplerTest, RandomByFraction) {
  SamplingOptions options;
  options.mode = SelectionMode::kRandom;
  options.fraction = 0.25;
  EXPECT_EQ(SampleSize(options, 10), 3.0);  // ceil(2.5)
  EXPECT_EQ(SampleSize(options, 2), 1.0);   // ceil(0.5)
  EXPECT_EQ(SampleSize(options, 0), 0.0);
  EXPECT_EQ(SelectClients(options, Clients(10), 1).size(), 3u);
}

TEST(ClientSamplerTest, RandomSelectsEveryClientWithTheSameFrequency) {
  // 20 clients, 5 per round: each is in a round's sample with p = 1/4.
  SamplingOptions options;
  options.mode = SelectionMode::kRandom;
  options.count = 5;
  options.seed = 1;
  const std::vector<CandidateClient> available = Clients(20);
  const int rounds = 4000;
  std::map<std::string, int> selected;
  for (int round = 1; round <= rounds; ++round) {
    for (const std::string& id : SelectClients(options, available, round)) ++selected[id];
  }
  ASSERT_EQ(selected.size(), 20u);
  const double bound = 5 * std::sqrt(0.25 * 0.75 / rounds);  // 0.0342
  for (const auto& [id, count] : selected) {
    EXPECT_NEAR(static_cast<double>(count) / rounds, 0.25, bound) << id;
  }
}

TEST(ClientSamplerTest, RandomPairsAreUniform) {
  // 2 of 4: each of the 6 pairs with p = 1/6.
  SamplingOptions options;
  options.mode = SelectionMode::kRandom;
  options.count = 2;
  options.seed = 3;
  const int rounds = 6000;
  std::map<std::vector<std::string>, int> pairs;
  for (int round = 1; round <= rounds; ++round) ++pairs[SelectClients(options, Clients(4), round)];
  ASSERT_EQ(pairs.size(), 6u);
  const double bound = 5 * std::sqrt((1.0 / 6) * (5.0 / 6) / rounds);  // 0.0241
  for (const auto& [pair, count] : pairs) {
    EXPECT_NEAR(static_cast<double>(count) / rounds, 1.0 / 6, bound);
  }
}

TEST(ClientSamplerTest, PoissonTakesEachClientWithProbabilityQ) {
  SamplingOptions options;
  options.mode = SelectionMode::kPoisson;
  options.fraction = 0.3;
  options.seed = 11;
  const std::vector<CandidateClient> available = Clients(20);
  const int rounds = 4000;
  std::map<std::string, int> selected;
  double total = 0;
  std::set<size_t> sizes;
  for (int round = 1; round <= rounds; ++round) {
    const std::vector<std::string> chosen = SelectClients(options, available, round);
    for (const std::string& id : chosen) ++selected[id];
    total += chosen.size();
    sizes.insert(chosen.size());
  }
  const double bound = 5 * std::sqrt(0.3 * 0.7 / rounds);  // 0.0362
  ASSERT_EQ(selected.size(), 20u);
  for (const auto& [id, count] : selected) {
    EXPECT_NEAR(static_cast<double>(count) / rounds, 0.3, bound) << id;
  }
  // The round size is Binomial(20, 0.3): mean 6, sd sqrt(4.2); its average
  // over the rounds is within 5 sd / sqrt(rounds) of 6, and it varies.
  EXPECT_NEAR(total / rounds, 6.0, 5 * std::sqrt(4.2 / rounds));
  EXPECT_GT(sizes.size(), 5u);
  EXPECT_EQ(SampleSize(options, 20), 6.0);
}

TEST(ClientSamplerTest, PoissonDecidesPerClientWhoeverElseIsThere) {
  SamplingOptions options;
  options.mode = SelectionMode::kPoisson;
  options.fraction = 0.5;
  const std::vector<CandidateClient> all = Clients(10);
  for (uint64_t round = 1; round <= 50; ++round) {
    const std::vector<std::string> chosen = SelectClients(options, all, round);
    const std::set<std::string> in_all(chosen.begin(), chosen.end());
    // The same client alone in the pool gets the same answer.
    for (const CandidateClient& client : all) {
      const bool alone = !SelectClients(options, {client}, round).empty();
      EXPECT_EQ(alone, in_all.count(client.id) == 1) << client.id << " round " << round;
    }
  }
  options.fraction = 1.0;
  EXPECT_EQ(SelectClients(options, all, 1).size(), 10u);
}

}  // namespace
}  // namespace tally
