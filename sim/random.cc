#include "sim/random.h"

namespace tally::sim {

namespace {

uint64_t SplitMix64(uint64_t x) {
  // Steele, Lea, Flood: "Fast splittable pseudorandom number generators".
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

}  // namespace

uint64_t DeriveSeed(uint64_t seed, uint64_t stream) {
  return SplitMix64(SplitMix64(seed) ^ SplitMix64(~stream));
}

std::vector<double> SampleDirichlet(double alpha, int k, std::mt19937_64& rng) {
  std::gamma_distribution<double> gamma(alpha, 1.0);
  std::vector<double> p(k);
  double sum = 0;
  for (double& x : p) {
    x = gamma(rng);
    sum += x;
  }
  if (sum > 0) {
    for (double& x : p) x /= sum;
  } else {
    std::uniform_int_distribution<int> pick(0, k - 1);
    p[pick(rng)] = 1.0;
  }
  return p;
}

}  // namespace tally::sim
