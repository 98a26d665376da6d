// Seeded randomness helpers for the simulator. Every random draw in tally-sim
// comes from a std::mt19937_64 seeded through DeriveSeed, so a run is fully
// determined by its --seed.
//
// Thread-compatible free functions.
#ifndef TALLY_SIM_RANDOM_H_
#define TALLY_SIM_RANDOM_H_

#include <cstdint>
#include <random>
#include <vector>

namespace tally::sim {

// An independent seed for stream `stream` of a run seeded with `seed`
// (SplitMix64 finaliser over both), so that e.g. client 3's training and the
// test-set draw never share a generator.
uint64_t DeriveSeed(uint64_t seed, uint64_t stream);

// One draw from a symmetric Dirichlet(alpha, ..., alpha) over `k` outcomes,
// via normalised Gamma(alpha, 1) draws. Requires alpha > 0 and k >= 1. When
// every Gamma draw underflows to zero (very small alpha) all mass goes to one
// uniformly chosen outcome, which is the distribution's limit.
std::vector<double> SampleDirichlet(double alpha, int k, std::mt19937_64& rng);

}  // namespace tally::sim

#endif  // TALLY_SIM_RANDOM_H_
