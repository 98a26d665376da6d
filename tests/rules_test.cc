// Robust aggregation rules and pre-steps against the worked examples of
// docs/algorithms.md: #flag-worked-examples (Flag; reference scripts
// ref_flag.py / ref_flag_gram.py run outside the project),
// #worked-batches-of-the-robust-rules (byzfl's docstring examples, R-1, R-2;
// ref_robust.py / ref_robust2.py), #bulyan (hand-computed), #caf, row
// weights, plus a conformance suite over every registered rule and pre-step.
#include "aggregators/rules/rule.h"

#include <cmath>
#include <limits>
#include <memory>
#include <random>
#include <string>
#include <utility>
#include <variant>
#include <vector>

#include "aggregators/rules/counter_rng.h"
#include "aggregators/rules/flag.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/status_matchers.h"

namespace tally::aggregators {
namespace {

using ::tally::testing::IsOk;
using ::tally::testing::StatusIs;
using Rows = std::vector<std::vector<float>>;

// The references print 6 decimals; inputs here are float32.
constexpr double kTol = 2e-6;

std::vector<float> Flatten(const Rows& rows) {
  std::vector<float> flat;
  for (const auto& row : rows) flat.insert(flat.end(), row.begin(), row.end());
  return flat;
}

RuleOptions Options(const std::string& name, size_t f = 0, RuleSettings settings = NoOptions{}) {
  RuleOptions options;
  options.name = name;
  options.f = f;
  options.settings = std::move(settings);
  return options;
}

FlagOptions FlagWith(int r, const std::string& scale = "median_norm") {
  FlagOptions flag;
  flag.r = r;
  flag.scale = scale;
  return flag;
}

// The reference code's Flag Aggregator (r = 1, output (1/r) Y Yᵀ Σ x_i), the
// one the FA-1 and FA-2 reference numbers below are for.
RuleOptions ReferenceFlag() { return Options("flag", 0, FlagWith(1, "reference")); }

absl::StatusOr<std::vector<float>> RunRule(Rule& rule, const Rows& rows) {
  const std::vector<float> batch = Flatten(rows);
  std::vector<float> out(rows[0].size());
  absl::Status status = rule.Aggregate(batch, rows.size(), out.size(), absl::MakeSpan(out));
  if (!status.ok()) return status;
  return out;
}

absl::StatusOr<std::vector<float>> RunRule(const RuleOptions& options, const Rows& rows) {
  auto rule = CreateRule(options);
  if (!rule.ok()) return rule.status();
  return RunRule(**rule, rows);
}

absl::StatusOr<Rows> RunPre(const RuleOptions& options, const Rows& rows) {
  auto step = CreatePreStep(options);
  if (!step.ok()) return step.status();
  std::vector<float> batch = Flatten(rows);
  const size_t d = rows[0].size();
  auto n_out = (*step)->Apply(absl::MakeSpan(batch), rows.size(), d);
  if (!n_out.ok()) return n_out.status();
  Rows out(*n_out);
  for (size_t i = 0; i < *n_out; ++i) out[i].assign(&batch[i * d], &batch[(i + 1) * d]);
  return out;
}

void ExpectRowNear(const std::vector<float>& actual, const std::vector<double>& expected,
                   double tol = kTol) {
  ASSERT_EQ(actual.size(), expected.size());
  for (size_t j = 0; j < expected.size(); ++j) {
    EXPECT_NEAR(actual[j], expected[j], tol * std::max(1.0, std::fabs(expected[j])))
        << "coordinate " << j;
  }
}

void ExpectRule(const RuleOptions& options, const Rows& rows,
                const std::vector<double>& expected) {
  SCOPED_TRACE(options.name + " f=" + std::to_string(options.f));
  TALLY_ASSERT_OK_AND_ASSIGN(std::vector<float> out, RunRule(options, rows));
  ExpectRowNear(out, expected);
}

// The rules that agree on every worked batch: MultiKrum(f), MDA(f),
// MoNNA(f, idx), Meamed(f).
void ExpectSubsetMeans(const Rows& rows, size_t f, size_t monna_idx,
                       const std::vector<double>& expected) {
  const RuleOptions monna = Options("monna", f, MonnaOptions{monna_idx});
  for (const RuleOptions& options :
       {Options("multi_krum", f), Options("mda", f), monna, Options("meamed", f)}) {
    ExpectRule(options, rows, expected);
  }
}

// Pre-step, then rule.
void ExpectPipeline(const RuleOptions& pre, const RuleOptions& rule, const Rows& rows,
                    const std::vector<double>& expected) {
  SCOPED_TRACE(pre.name + " -> " + rule.name);
  TALLY_ASSERT_OK_AND_ASSIGN(Rows mixed, RunPre(pre, rows));
  ExpectRule(rule, mixed, expected);
}

// ---------------------------------------------------------------------------
// Docstring batch (docs/algorithms.md#worked-batches-of-the-robust-rules):
// x = [[1,2,3],[4,5,6],[7,8,9]].
const Rows kDocstring = {{1, 2, 3}, {4, 5, 6}, {7, 8, 9}};

TEST(RulesDocstringTest, CoordinateAndIterativeRules) {
  ExpectRule(Options("median"), kDocstring, {4, 5, 6});
  ExpectRule(Options("trimmed_mean", 1), kDocstring, {4, 5, 6});
  ExpectRule(Options("centered_clipping"), kDocstring, {4, 5, 6});
  ExpectRule(Options("geometric_median"), kDocstring, {3.787888, 4.787888, 5.787888});
}

TEST(RulesDocstringTest, DistanceRulesTieToLowerIndex) {
  ExpectRule(Options("krum", 1), kDocstring, {1, 2, 3});  // Scores tie at 27.
  ExpectSubsetMeans(kDocstring, 1, /*monna_idx=*/1, {2.5, 3.5, 4.5});
}

TEST(RulesDocstringTest, PreSteps) {
  TALLY_ASSERT_OK_AND_ASSIGN(Rows nnm, RunPre(Options("nnm", 1), kDocstring));
  ASSERT_EQ(nnm.size(), 3u);
  ExpectRowNear(nnm[0], {2.5, 3.5, 4.5});
  ExpectRowNear(nnm[1], {2.5, 3.5, 4.5});
  ExpectRowNear(nnm[2], {5.5, 6.5, 7.5});

  TALLY_ASSERT_OK_AND_ASSIGN(Rows clipped, RunPre(Options("clipping"), kDocstring));
  ExpectRowNear(clipped[0], {0.534522, 1.069045, 1.603567});

  TALLY_ASSERT_OK_AND_ASSIGN(Rows arc, RunPre(Options("arc", 1), kDocstring));
  ExpectRowNear(arc[0], {1, 2, 3});
  ExpectRowNear(arc[1], {4, 5, 6});
  ExpectRowNear(arc[2], {4.410040, 5.040046, 5.670052});  // Clipped to 8.774964.
}

// ---------------------------------------------------------------------------
// R-1 (docs/algorithms.md#worked-batches-of-the-robust-rules): n = 5, f = 1, d = 2.
const Rows kR1 = {{1, 1}, {1.2f, 0.8f}, {0.8f, 1.1f}, {1.1f, 1.3f}, {10, -10}};

TEST(RulesR1Test, Aggregators) {
  ExpectRule(Options("average"), kR1, {2.82, -1.16});
  ExpectRule(Options("median"), kR1, {1.1, 1.0});
  ExpectRule(Options("trimmed_mean", 1), kR1, {1.1, 0.966667});
  ExpectRule(Options("geometric_median"), kR1, {1.120026, 0.907593});
  ExpectRule(Options("krum", 1), kR1, {1, 1});
  ExpectSubsetMeans(kR1, 1, /*monna_idx=*/0, {1.025, 1.05});
}

// docs/algorithms.md#geometric-median, by hand: x = 1, 2, 4 (d = 1) from
// z = 0. Iteration 1: β = (1, 2, 4), z = 3 / (1 + 1/2 + 1/4) = 12/7.
// Iteration 2: |x_i − z| = 5/7, 2/7, 16/7, so 1/β = 1.4, 3.5, 0.4375 and
// z = (1.4 + 7 + 1.75) / 5.3375 = 1.901639 (towards the median, 2).
TEST(RulesGeometricMedianTest, OneDimensionByHand) {
  const Rows x = {{1}, {2}, {4}};
  GeometricMedianOptions gm;
  gm.iterations = 1;
  ExpectRule(Options("geometric_median", 0, gm), x, {12.0 / 7});
  gm.iterations = 2;
  ExpectRule(Options("geometric_median", 0, gm), x, {1.901639});
  gm.iterations = 0;
  ExpectRule(Options("geometric_median", 0, gm), x, {0});
}

TEST(RulesR1Test, CenteredClipping) {
  CenteredClippingOptions cc;
  cc.tau = 1;
  ExpectRule(Options("centered_clipping", 0, cc), kR1, {0.696076, 0.425365});
  cc.iterations = 3;
  ExpectRule(Options("centered_clipping", 0, cc), kR1, {1.165902, 0.841019});
}

// NNM(1) on R-1 (docs/algorithms.md#nnm): rows 0-3 are the mean of rows
// 0-3; row 4 (10, -10) of itself and its three nearest, rows 1, 0 and 3
// (squared distances 194.08, 202, 206.9 against 207.85 for row 2). Krum's
// selection of row 0 then credits rows 0-3, never row 4.
TEST(RulesR1Test, NnmSaysWhichRowsItMixedAndInfluenceGoesBackToThem) {
  RuleOptions options = Options("nnm", 1);
  TALLY_ASSERT_OK_AND_ASSIGN(std::unique_ptr<PreStep> step, CreatePreStep(options));
  std::vector<float> batch = Flatten(kR1);
  ASSERT_THAT(step->Apply(absl::MakeSpan(batch), 5, 2), IsOk());
  ASSERT_EQ(step->mixed_from().size(), 5u);
  for (size_t i = 0; i < 4; ++i) {
    EXPECT_THAT(step->mixed_from()[i], ::testing::UnorderedElementsAre(0, 1, 2, 3)) << i;
  }
  EXPECT_THAT(step->mixed_from()[4], ::testing::UnorderedElementsAre(0, 1, 3, 4));
  const std::vector<double> selected = {1, 0, 0, 0, 0};
  EXPECT_THAT(InfluenceBeforeMixing(selected, step->mixed_from()),
              ::testing::ElementsAre(1, 1, 1, 1, 0));
  const std::vector<double> outlier_half = {0, 0, 0, 0, 0.5};
  EXPECT_THAT(InfluenceBeforeMixing(outlier_half, step->mixed_from()),
              ::testing::ElementsAre(0.5, 0.5, 0, 0.5, 0.5));
  // Clipping keeps rows where they are: nothing mixed.
  TALLY_ASSERT_OK_AND_ASSIGN(step, CreatePreStep(Options("clipping")));
  ASSERT_THAT(step->Apply(absl::MakeSpan(batch), 5, 2), IsOk());
  EXPECT_TRUE(step->mixed_from().empty());
}

TEST(RulesR1Test, NnmThenRules) {
  TALLY_ASSERT_OK_AND_ASSIGN(Rows nnm, RunPre(Options("nnm", 1), kR1));
  ASSERT_EQ(nnm.size(), 5u);
  for (size_t i = 0; i < 4; ++i) ExpectRowNear(nnm[i], {1.025, 1.05});
  ExpectRowNear(nnm[4], {3.325, -1.725});
  for (const RuleOptions& rule :
       {Options("trimmed_mean", 1), Options("median"), Options("krum", 1)}) {
    ExpectPipeline(Options("nnm", 1), rule, kR1, {1.025, 1.05});
  }
}

// Influence (how much each row counted) on R-1, by hand: the outlier row 4
// is rejected or nearly so by every rule that judges rows.
std::vector<double> InfluenceOf(const RuleOptions& options, const Rows& rows) {
  auto rule = CreateRule(options);
  EXPECT_THAT(rule, IsOk());
  if (!rule.ok()) return {};
  (*rule)->set_report_influence(true);
  EXPECT_THAT(RunRule(**rule, rows), IsOk());
  return (*rule)->influence();
}

TEST(RulesR1Test, InfluenceOfEveryRow) {
  using ::testing::DoubleNear;
  using ::testing::ElementsAre;
  EXPECT_THAT(InfluenceOf(Options("krum", 1), kR1), ElementsAre(1, 0, 0, 0, 0));
  // Scores (0.0767, 0.1967, 0.1433, 0.1633, 200.99): rows 0-3 kept.
  EXPECT_THAT(InfluenceOf(Options("multi_krum", 1), kR1), ElementsAre(1, 1, 1, 1, 0));
  EXPECT_THAT(InfluenceOf(Options("mda", 1), kR1), ElementsAre(1, 1, 1, 1, 0));
  EXPECT_THAT(InfluenceOf(Options("monna", 1), kR1), ElementsAre(1, 1, 1, 1, 0));
  // Column 0 sorted 0.8, 1, 1.1, 1.2, 10 trims rows 2 and 4; column 1 sorted
  // -10, 0.8, 1, 1.1, 1.3 trims rows 4 and 3.
  EXPECT_THAT(InfluenceOf(Options("trimmed_mean", 1), kR1), ElementsAre(1, 1, 0.5, 0.5, 0));
  // Centered clipping from v = 0, tau = 1: min(1, 1/‖x_i‖).
  CenteredClippingOptions cc;
  cc.tau = 1;
  EXPECT_THAT(InfluenceOf(Options("centered_clipping", 0, cc), kR1),
              ElementsAre(DoubleNear(0.707107, 1e-6), DoubleNear(0.693375, 1e-6),
                          DoubleNear(0.735215, 1e-6), DoubleNear(0.587220, 1e-6),
                          DoubleNear(0.070711, 1e-6)));
  // Geometric median, one iteration from 0: 1/max(‖x_i‖, nu) over the largest.
  GeometricMedianOptions gm;
  gm.iterations = 1;
  EXPECT_THAT(InfluenceOf(Options("geometric_median", 0, gm), kR1),
              ElementsAre(DoubleNear(0.961769, 1e-6), DoubleNear(0.943092, 1e-6), 1.0,
                          DoubleNear(0.798706, 1e-6), DoubleNear(0.096177, 1e-6)));
  // Nothing unless asked for.
  auto krum = CreateRule(Options("krum", 1));
  ASSERT_THAT(krum, IsOk());
  ASSERT_THAT(RunRule(**krum, kR1), IsOk());
  EXPECT_THAT((*krum)->influence(), ::testing::IsEmpty());
  // Rules that do not judge rows report nothing.
  EXPECT_THAT(InfluenceOf(Options("average"), kR1), ::testing::IsEmpty());
  EXPECT_THAT(InfluenceOf(Options("median"), kR1), ::testing::IsEmpty());
}

// FA-1 (docs/algorithms.md#flag-worked-examples): x = e1, e1, e2; Y = e1 =
// (x_0 + x_1)/2, so a = 1·x_0 + 1·x_1 + 0·x_2: the orthogonal row does not
// count.
TEST(FlagTest, InfluenceIsTheRelativeCoefficient) {
  EXPECT_THAT(InfluenceOf(ReferenceFlag(), {{1, 0, 0}, {2, 0, 0}, {0, 5, 0}}),
              ::testing::ElementsAre(::testing::DoubleNear(1, 1e-9), ::testing::DoubleNear(1, 1e-9),
                                     ::testing::DoubleNear(0, 1e-9)));
}

TEST(RulesR1Test, Arc) {
  TALLY_ASSERT_OK_AND_ASSIGN(Rows arc, RunPre(Options("arc", 1), kR1));
  for (size_t i = 0; i < 4; ++i) ExpectRowNear(arc[i], {kR1[i][0], kR1[i][1]});
  ExpectRowNear(arc[4], {1.204159, -1.204159});  // Clipped to 1.702939.
}

// ---------------------------------------------------------------------------
// R-2 (docs/algorithms.md#worked-batches-of-the-robust-rules): n = 6, f = 2,
// d = 3, two colluding outliers, distance ties.
const Rows kR2 = {{0, 1, 2}, {1, 0, 2}, {0.5f, 0.5f, 1}, {2, 1, 0}, {5, 5, 5}, {5, 5, 6}};

TEST(RulesR2Test, Aggregators) {
  ExpectRule(Options("average"), kR2, {2.25, 2.083333, 2.666667});
  ExpectRule(Options("median"), kR2, {1.5, 1.0, 2.0});
  ExpectRule(Options("trimmed_mean", 2), kR2, {1.5, 1.0, 2.0});
  ExpectRule(Options("geometric_median"), kR2, {1.105323, 0.919383, 1.732626});
  ExpectRule(Options("krum", 2), kR2, {0.5, 0.5, 1.0});
  ExpectSubsetMeans(kR2, 2, /*monna_idx=*/3, {0.875, 0.625, 1.25});
}

TEST(RulesR2Test, NnmBreaksThreeWayTieByIndex) {
  TALLY_ASSERT_OK_AND_ASSIGN(Rows nnm, RunPre(Options("nnm", 2), kR2));
  ASSERT_EQ(nnm.size(), 6u);
  for (size_t i = 0; i < 4; ++i) ExpectRowNear(nnm[i], {0.875, 0.625, 1.25});
  ExpectRowNear(nnm[4], {2.75, 2.75, 3.75});
  ExpectRowNear(nnm[5], {2.75, 2.75, 3.75});
  ExpectPipeline(Options("nnm", 2), Options("trimmed_mean", 2), kR2, {0.875, 0.625, 1.25});
  ExpectPipeline(Options("nnm", 2), Options("median"), kR2, {0.875, 0.625, 1.25});
}

TEST(RulesR2Test, Arc) {
  TALLY_ASSERT_OK_AND_ASSIGN(Rows arc, RunPre(Options("arc", 2), kR2));
  ExpectRowNear(arc[4], {1.290994, 1.290994, 1.290994});  // Threshold 2.236068.
  ExpectRowNear(arc[5], {1.205607, 1.205607, 1.446728});
  for (size_t i = 0; i < 4; ++i) ExpectRowNear(arc[i], {kR2[i][0], kR2[i][1], kR2[i][2]});
}

TEST(RulesR2Test, CenteredClippingKeepsStateAcrossCalls) {
  CenteredClippingOptions cc;
  cc.tau = 2;
  TALLY_ASSERT_OK_AND_ASSIGN(std::unique_ptr<Rule> rule,
                             CreateRule(Options("centered_clipping", 0, cc)));
  TALLY_ASSERT_OK_AND_ASSIGN(std::vector<float> first, RunRule(*rule, kR2));
  ExpectRowNear(first, {0.902718, 0.753647, 1.171067});
  TALLY_ASSERT_OK_AND_ASSIGN(std::vector<float> second, RunRule(*rule, kR2));
  ExpectRowNear(second, {1.257520, 1.054744, 1.616239});
}

// ---------------------------------------------------------------------------
// Bulyan (docs/algorithms.md#bulyan, hand-computed): selection 0.2, 0.1, 0.3, 0, 0.4; output 0.2.
TEST(RulesBulyanTest, WorkedExample) {
  const Rows x = {{0}, {0.1f}, {0.2f}, {0.3f}, {0.4f}, {10}, {-10}};
  ExpectRule(Options("bulyan", 1), x, {0.2});
}

TEST(RulesBulyanTest, RequiresFourFPlusThree) {
  const Rows x = {{0}, {1}, {2}, {3}, {4}, {5}};
  EXPECT_THAT(RunRule(Options("bulyan", 1), x), StatusIs(absl::StatusCode::kInvalidArgument));
}

// ---------------------------------------------------------------------------
// Flag Aggregator (docs/algorithms.md#flag-worked-examples).
TEST(RulesFlagTest, Fa1DeterministicAndExplicitInit) {
  const Rows g = {{1, 0, 0}, {2, 0, 0}, {0, 5, 0}};
  ExpectRule(ReferenceFlag(), g, {2, 0, 0});
  const std::vector<float> batch = Flatten(g);
  std::vector<float> out(3);
  const std::vector<double> e3 = {0, 0, 1};
  ASSERT_THAT(FlagAggregate(batch.data(), 3, 3, FlagParams{}, e3, out.data()), IsOk());
  ExpectRowNear(out, {2, 0, 0});
}

struct Fa2Case {
  int r;
  double lambda;
  int iterations;
  std::vector<double> output;
  std::vector<double> coefficients;
};

TEST(RulesFlagTest, Fa2Table) {
  const Rows g = {{1, 0.2f, 0}, {0.9f, 0.1f, 0.1f}, {1.1f, 0, -0.1f}, {-3, 4, 0}};
  const std::vector<float> batch = Flatten(g);
  const double s = 1 / std::sqrt(3.0);
  const std::vector<double> y0_r1 = {s, s, s};
  const std::vector<double> y0_r2 = {1, 0, 0, 0, 0, 1};  // [e1, e3], 3 x 2 row-major.
  const std::vector<Fa2Case> cases = {
      {1, 0, 1, {2.341222, -0.046844, 0.025326}, {0.722021, 0.777339, 0.662702, -0.342210}},
      {1, 1, 1, {2.323300, -0.080294, 0.024666}, {0.704006, 0.764186, 0.654047, -0.377802}},
      {1, 0, 3, {2.425069, 0.155445, -0.014709}, {0.845712, 0.626173, 0.921625, -0.098930}},
      {1, 1, 3, {2.421142, 0.143760, -0.020559}, {0.843059, 0.593658, 0.946826, -0.108425}},
      {2, 0, 1, {1.186320, 0.539098, 0.055495}, {0.555797, 0.691222, 0.225066, 0.442782}},
      {2, 1, 1, {1.185943, 0.540720, 0.051321}, {0.558433, 0.670127, 0.245594, 0.447058}},
      {2, 0, 3, {1.175789, 0.557612, -0.065391}, {0.621536, 0.076313, 0.814789, 0.534178}},
  };
  for (const Fa2Case& c : cases) {
    SCOPED_TRACE(::testing::Message() << "r=" << c.r << " lambda=" << c.lambda
                                      << " n_its=" << c.iterations);
    std::vector<float> out(3);
    std::vector<double> coefficients;
    ASSERT_THAT(FlagAggregate(batch.data(), 4, 3, FlagParams{c.r, c.lambda, c.iterations},
                              c.r == 1 ? y0_r1 : y0_r2, out.data(), &coefficients),
                IsOk());
    // float32 inputs against float64 reference values: compare at 1e-5.
    ExpectRowNear(out, c.output, 1e-5);
    ASSERT_EQ(coefficients.size(), 4u);
    for (size_t i = 0; i < 4; ++i) EXPECT_NEAR(coefficients[i], c.coefficients[i], 1e-5) << i;
  }
}

TEST(RulesFlagTest, AllZeroBatchGivesZero) {
  ExpectRule(Options("flag"), {{0, 0}, {0, 0}}, {0, 0});
  ExpectRule(ReferenceFlag(), {{0, 0}, {0, 0}}, {0, 0});
}

// The default scale (flag.h FlagScale::kMedianNorm), by hand. g = (3,4,0),
// (0,0,2), (6,8,0): x_0 = x_2 = u = (0.6, 0.8, 0), x_1 = e3. P0 = 0 gives
// equal first weights, A Aᵀ ∝ 2 u uᵀ + e3 e3ᵀ, so for r = 1 Y = u. The mean
// of the x_i is (2u + e3)/3, its projection on u is 2u/3 = (0.4, 0.5333, 0);
// the norms are 5, 2, 10 with median 5, so out = (2, 2.6667, 0). The
// reference scale gives Y Yᵀ Σ x_i / 1 = 2u = (1.2, 1.6, 0). With r = 2 Y
// spans u and e3, the projection is the whole mean: out = 5 (2u + e3)/3.
TEST(RulesFlagTest, MedianNormScaleByHand) {
  const Rows g = {{3, 4, 0}, {0, 0, 2}, {6, 8, 0}};
  ExpectRule(Options("flag", 0, FlagWith(1)), g, {2, 8.0 / 3, 0});
  ExpectRule(Options("flag", 0, FlagWith(1, "reference")), g, {1.2, 1.6, 0});
  ExpectRule(Options("flag", 0, FlagWith(2)), g, {2, 8.0 / 3, 5.0 / 3});
  // r = 0: ceil(3/2) = 2.
  ExpectRule(Options("flag", 0, FlagWith(0)), g, {2, 8.0 / 3, 5.0 / 3});
  // The defaults: r = 1, median-norm scale.
  ExpectRule(Options("flag"), g, {2, 8.0 / 3, 0});
}

// Even n: the median norm is the mean of the two middle norms. g = 2e1, 4e1,
// e2, 8e1: Y = e1 for r = 1 (A Aᵀ ∝ 3 e1 e1ᵀ + e2 e2ᵀ), mean of x = (3/4,
// 1/4, 0), projection (3/4, 0, 0), norms 1, 2, 4, 8 -> median 3: out =
// (2.25, 0, 0). A fifth row of norm 1e6 along e1 moves the median to 4 only:
// out = 4 · (4/5) e1 = (3.2, 0, 0).
TEST(RulesFlagTest, MedianNormOfEvenBatchAndAHugeRow) {
  const RuleOptions scaled = Options("flag", 0, FlagWith(1));
  ExpectRule(scaled, {{2, 0, 0}, {4, 0, 0}, {0, 1, 0}, {8, 0, 0}}, {2.25, 0, 0});
  ExpectRule(scaled, {{2, 0, 0}, {4, 0, 0}, {0, 1, 0}, {8, 0, 0}, {1e6f, 0, 0}}, {3.2, 0, 0});
}

TEST(RulesFlagTest, AutoRIsCeilHalfN) {
  EXPECT_EQ(FlagAutoR(1), 1);
  EXPECT_EQ(FlagAutoR(2), 1);
  EXPECT_EQ(FlagAutoR(7), 4);  // The paper's r for 7 workers.
  EXPECT_EQ(FlagAutoR(10), 5);
  EXPECT_EQ(FlagAutoR(15), 8);  // The paper's r for 15 workers.
}

// ---------------------------------------------------------------------------
// CAF (docs/algorithms.md#caf). Expected values: byzfl's docstring example (one iteration, and
// its outcome does not depend on the start vector because every row lies on
// one line) and, for d = 1 — where the power step is exact whatever the start
// vector (v = ±1, λ̂ = the weighted variance) — a 15-line float64 Python
// re-implementation of byzfl's loop, run outside the project.
TEST(RulesCafTest, DocstringExample) {
  // μ = (4,5,6), τ = (27, 0, 27): rows 0 and 2 drop to weight 0, Σc = 1.
  ExpectRule(Options("caf", 1), kDocstring, {4, 5, 6});
}

TEST(RulesCafTest, OneDimensionalOutlierIsFilteredOut) {
  // Iteration 1: μ = 1.8, τ = (33.64, 23.04, 0.64, 4.84, 84.64): the outlier
  // gets weight 0, Σc = 3.2656 > n − 2f = 3. Iteration 2: μ = 0.0521 with a
  // smaller variance; Σc drops below 3 and that μ is returned.
  ExpectRule(Options("caf", 1), {{-4}, {-3}, {1}, {4}, {11}}, {0.05209840810419704});
}

TEST(RulesCafTest, StopsAfterNIterations) {
  // byzfl's loop never ends here: the two rows at 1 sit at μ (τ = 0) while
  // the removed outlier keeps the largest τ, so Σc stays above n − 2f = 1.
  // The reference stopped after n = 5 iterations gives 1.0431600579393536.
  ExpectRule(Options("caf", 2), {{0}, {1}, {1}, {2}, {9}}, {1.0431600579393536});
}

TEST(RulesCafTest, FZeroAndIdenticalRowsGiveTheMean) {
  // byzfl returns None for f = 0 and divides 0/0 for identical rows.
  ExpectRule(Options("caf", 0), kR1, {2.82, -1.16});
  ExpectRule(Options("caf", 2), Rows(5, {1.5f, -2, 3}), {1.5, -2, 3});
}

TEST(RulesCafTest, DeterministicForASeed) {
  std::mt19937 rng(11);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  Rows x(9, std::vector<float>(50));
  for (auto& row : x) {
    for (float& v : row) v = normal(rng);
  }
  RuleOptions options = Options("caf", 2);
  options.seed = 5;
  TALLY_ASSERT_OK_AND_ASSIGN(std::vector<float> a, RunRule(options, x));
  TALLY_ASSERT_OK_AND_ASSIGN(std::vector<float> b, RunRule(options, x));
  EXPECT_EQ(a, b);
  options.seed = 6;
  TALLY_ASSERT_OK_AND_ASSIGN(std::vector<float> c, RunRule(options, x));
  EXPECT_NE(a, c);
}

TEST(RulesCafTest, IgnoresFarSignFlippedRowsInHighDimension) {
  // 7 honest rows 1 + N(0, 0.1²) and 3 rows at −100 × their mean, d = 1000:
  // the result must stay near the honest mean, which the plain mean misses.
  constexpr size_t kDim = 1000;
  std::mt19937 rng(3);
  std::normal_distribution<float> noise(0.0f, 0.1f);
  Rows x(7, std::vector<float>(kDim));
  std::vector<double> honest(kDim, 0.0);
  for (auto& row : x) {
    for (size_t j = 0; j < kDim; ++j) {
      row[j] = 1.0f + noise(rng);
      honest[j] += row[j] / 7.0;
    }
  }
  std::vector<float> flipped(kDim);
  for (size_t j = 0; j < kDim; ++j) flipped[j] = static_cast<float>(-100 * honest[j]);
  x.insert(x.end(), 3, flipped);
  TALLY_ASSERT_OK_AND_ASSIGN(std::vector<float> out, RunRule(Options("caf", 3), x));
  double err = 0, norm = 0;
  for (size_t j = 0; j < kDim; ++j) {
    err += (out[j] - honest[j]) * (out[j] - honest[j]);
    norm += honest[j] * honest[j];
  }
  EXPECT_LT(std::sqrt(err / norm), 0.05);
}

// ---------------------------------------------------------------------------
// Row weights: only average uses them (hand computations).
TEST(RulesWeightsTest, AverageIsTheWeightedMean) {
  TALLY_ASSERT_OK_AND_ASSIGN(std::unique_ptr<Rule> rule, CreateRule(Options("average")));
  EXPECT_TRUE(rule->UsesWeights());
  const std::vector<float> batch = Flatten(kR1);
  std::vector<float> out(2);
  // (1·(1,1) + 2·(1.2,0.8) + 1·(0.8,1.1)) / 4 = (1.05, 0.925).
  const std::vector<double> weights = {1, 2, 1, 0, 0};
  ASSERT_THAT(rule->Aggregate(batch, 5, 2, absl::MakeSpan(out), weights), IsOk());
  ExpectRowNear(out, {1.05, 0.925});
  // Equal weights: the plain mean; no weights: the plain mean.
  ASSERT_THAT(rule->Aggregate(batch, 5, 2, absl::MakeSpan(out), std::vector<double>(5, 3.0)),
              IsOk());
  ExpectRowNear(out, {2.82, -1.16});
  ASSERT_THAT(rule->Aggregate(batch, 5, 2, absl::MakeSpan(out)), IsOk());
  ExpectRowNear(out, {2.82, -1.16});
}

TEST(RulesWeightsTest, RobustRulesIgnoreWeights) {
  TALLY_ASSERT_OK_AND_ASSIGN(std::unique_ptr<Rule> rule, CreateRule(Options("median")));
  EXPECT_FALSE(rule->UsesWeights());
  const std::vector<float> batch = Flatten(kR1);
  std::vector<float> out(2);
  ASSERT_THAT(rule->Aggregate(batch, 5, 2, absl::MakeSpan(out), std::vector<double>{9, 0, 0, 0, 1}),
              IsOk());
  ExpectRowNear(out, {1.1, 1.0});
}

TEST(RulesWeightsTest, InvalidWeightsAreInvalidArgumentNamingTheRule) {
  const std::vector<float> batch = Flatten(kR1);
  std::vector<float> out(2);
  const double inf = std::numeric_limits<double>::infinity();
  const std::vector<std::vector<double>> invalid = {
      {1, 1, 1, 1},                 // Wrong size.
      {1, -1, 1, 1, 1},             // Negative.
      {1, std::nan(""), 1, 1, 1},   // NaN.
      {1, inf, 1, 1, 1},            // Infinite.
      {0, 0, 0, 0, 0},              // Zero sum.
      {1e308, 1e308, 1e308, 1, 1},  // Sum overflows.
  };
  for (const std::string& name : {std::string("average"), std::string("krum")}) {
    TALLY_ASSERT_OK_AND_ASSIGN(std::unique_ptr<Rule> rule, CreateRule(Options(name, 1)));
    for (const std::vector<double>& weights : invalid) {
      absl::Status status = rule->Aggregate(batch, 5, 2, absl::MakeSpan(out), weights);
      EXPECT_THAT(status, StatusIs(absl::StatusCode::kInvalidArgument));
      EXPECT_THAT(std::string(status.message()), ::testing::StartsWith(name + ": "));
    }
  }
}

// ---------------------------------------------------------------------------
// Flag Aggregator, seeded random initial subspace
// (docs/algorithms.md#flag-initial-subspace).
RuleOptions RandomFlag(int r, uint64_t seed) {
  FlagOptions flag = FlagWith(r, "reference");
  flag.init = "random";
  RuleOptions options = Options("flag", 0, flag);
  options.seed = seed;
  return options;
}

TEST(RulesFlagTest, RandomInitWhenYSpansTheRows) {
  // d = r = 1, g = 1, 2, 4: Y0 = ±1 and ‖Y0ᵀx_i‖ = 1 exactly (powers of two),
  // so E(Y0) = 0, the IRLS loop never runs and FA falls back to Y0,
  // regenerating Y_raw: a = Y0 Y0ᵀ s / r = s = 3. No coefficients on this path.
  const std::vector<float> powers = {1, 2, 4};
  float out = 0;
  std::vector<double> coefficients = {1};
  ASSERT_THAT(FlagAggregate(powers.data(), 3, 1, FlagParams{1, 0, 1, FlagInit::kRandom, 9}, {},
                            &out, &coefficients),
              IsOk());
  EXPECT_NEAR(out, 3, 1e-6);
  EXPECT_TRUE(coefficients.empty());
  // g = (3,4), (1,0), (0,2): x = (0.6,0.8), e1, e2, s = Σx = (1.6, 1.8).
  // d = r = 2: Y0 spans R², so ‖Y0ᵀx_i‖ = 1 (P0 = L⁻¹Q must get this right)
  // and whether Y1 or the fallback to Y0 is used, a = s / 2.
  ExpectRule(RandomFlag(2, 3), {{3, 4}, {1, 0}, {0, 2}}, {0.8, 0.9});
  // The same rows in the plane z = 0 of R³, r = 2: a random Y0 misses the
  // plane, Y1 is the plane (rank 2), E(Y1) = 0 < E(Y0): accepted, a = s / 2.
  ExpectRule(RandomFlag(2, 3), {{3, 4, 0}, {1, 0, 0}, {0, 2, 0}}, {0.8, 0.9, 0});
}

TEST(RulesFlagTest, RandomInitEqualsExplicitOrthonormalisedYRaw) {
  // The same Y_raw (flag.h: CounterRng stream kFlagRandomStream), made
  // orthonormal here by Gram–Schmidt and passed as an explicit Y0, must give
  // what the Gram-form random init computes from S, Q and P0 = L⁻¹Q.
  const Rows g = {{1, 0.2f, 0, 0.5f, -0.3f},
                  {0.9f, 0.1f, 0.1f, -0.4f, 0.2f},
                  {1.1f, 0, -0.1f, 0.3f, 0.6f},
                  {-3, 4, 0, 1, -1}};
  const std::vector<float> batch = Flatten(g);
  constexpr size_t kDim = 5, kR = 2;
  std::vector<double> y(kDim * kR);
  CounterRng(4, kFlagRandomStream).FillUniform(0, -0.5, 0.5, absl::MakeSpan(y));
  for (size_t a = 0; a < kR; ++a) {
    for (size_t b = 0; b < a; ++b) {
      double dot = 0;
      for (size_t j = 0; j < kDim; ++j) dot += y[j * kR + a] * y[j * kR + b];
      for (size_t j = 0; j < kDim; ++j) y[j * kR + a] -= dot * y[j * kR + b];
    }
    double norm = 0;
    for (size_t j = 0; j < kDim; ++j) norm += y[j * kR + a] * y[j * kR + a];
    for (size_t j = 0; j < kDim; ++j) y[j * kR + a] /= std::sqrt(norm);
  }
  for (double lambda : {0.0, 1.0}) {
    SCOPED_TRACE(lambda);
    std::vector<float> random_out(kDim), explicit_out(kDim);
    std::vector<double> random_c, explicit_c;
    ASSERT_THAT(FlagAggregate(batch.data(), 4, kDim, FlagParams{2, lambda, 1, FlagInit::kRandom, 4},
                              {}, random_out.data(), &random_c),
                IsOk());
    ASSERT_THAT(FlagAggregate(batch.data(), 4, kDim, FlagParams{2, lambda, 1}, y,
                              explicit_out.data(), &explicit_c),
                IsOk());
    ExpectRowNear(random_out, std::vector<double>(explicit_out.begin(), explicit_out.end()), 1e-5);
    ASSERT_EQ(random_c.size(), explicit_c.size());
    for (size_t i = 0; i < random_c.size(); ++i) EXPECT_NEAR(random_c[i], explicit_c[i], 1e-6);
  }
}

TEST(RulesFlagTest, RandomInitIsSeeded) {
  const Rows g = {{1, 0.2f, 0, 0.5f, -0.3f},
                  {0.9f, 0.1f, 0.1f, -0.4f, 0.2f},
                  {1.1f, 0, -0.1f, 0.3f, 0.6f},
                  {-3, 4, 0, 1, -1}};
  TALLY_ASSERT_OK_AND_ASSIGN(std::vector<float> a, RunRule(RandomFlag(1, 7), g));
  TALLY_ASSERT_OK_AND_ASSIGN(std::vector<float> b, RunRule(RandomFlag(1, 7), g));
  TALLY_ASSERT_OK_AND_ASSIGN(std::vector<float> c, RunRule(RandomFlag(1, 8), g));
  EXPECT_EQ(a, b);
  EXPECT_NE(a, c);  // At d = 5, ‖Y0ᵀx‖² ≈ r/d is far from 0: the start matters.
}

TEST(RulesFlagTest, RandomInitIsCloseToDeterministicInHighDimension) {
  // The two inits differ by O(r/d) (1.46e-5 relative at d = 20000,
  // n = 6, r = 2 in ref_flag_highd.py). Rows: two shared directions with
  // distinct loadings plus noise, so the top two eigenvalues are separated.
  constexpr size_t kDim = 20000;
  std::mt19937 rng(17);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<float> m1(kDim), m2(kDim);
  for (size_t j = 0; j < kDim; ++j) {
    m1[j] = normal(rng);
    m2[j] = normal(rng);
  }
  const float loading[6] = {0.9f, 0.6f, 0.3f, -0.2f, 0.5f, 0.1f};
  Rows g(6, std::vector<float>(kDim));
  for (size_t i = 0; i < 6; ++i) {
    for (size_t j = 0; j < kDim; ++j) g[i][j] = m1[j] + loading[i] * m2[j] + 0.3f * normal(rng);
  }
  TALLY_ASSERT_OK_AND_ASSIGN(std::vector<float> a,
                             RunRule(Options("flag", 0, FlagWith(2, "reference")), g));
  TALLY_ASSERT_OK_AND_ASSIGN(std::vector<float> b, RunRule(RandomFlag(2, 1), g));
  double diff = 0, norm = 0;
  for (size_t j = 0; j < kDim; ++j) {
    diff += (a[j] - b[j]) * static_cast<double>(a[j] - b[j]);
    norm += a[j] * static_cast<double>(a[j]);
  }
  EXPECT_LT(std::sqrt(diff / norm), 1e-4);  // O(r/d) = 1e-4.
  EXPECT_GT(norm, 0);
}

TEST(RulesFlagTest, RandomInitNeedsDAtLeastR) {
  EXPECT_THAT(RunRule(RandomFlag(3, 1), {{1, 0}, {0, 1}}),
              StatusIs(absl::StatusCode::kInvalidArgument));
  FlagOptions bogus;
  bogus.init = "bogus";
  EXPECT_THAT(CreateRule(Options("flag", 0, bogus)), StatusIs(absl::StatusCode::kInvalidArgument));
}

// ---------------------------------------------------------------------------
// Errors.
TEST(RuleErrorsTest, MessageNamesRuleAndF) {
  const Rows x = {{1}, {2}, {3}, {4}, {5}};
  auto out = RunRule(Options("krum", 3), x);
  EXPECT_THAT(out, StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_EQ(out.status().message(), "krum: f=3 requires n > 2f, got n=5");
}

TEST(RuleErrorsTest, CreateChecksFAgainstExpectedN) {
  RuleOptions options = Options("trimmed_mean", 3);
  options.expected_n = 6;
  EXPECT_THAT(CreateRule(options), StatusIs(absl::StatusCode::kInvalidArgument));
  options.expected_n = 7;
  EXPECT_THAT(CreateRule(options), IsOk());
}

TEST(RuleErrorsTest, UnknownNamesAndBadOptions) {
  EXPECT_THAT(CreateRule(Options("nope")), StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(CreatePreStep(Options("krum")), StatusIs(absl::StatusCode::kInvalidArgument));
  GeometricMedianOptions gm;
  gm.nu = 0;
  EXPECT_THAT(CreateRule(Options("geometric_median", 0, gm)),
              StatusIs(absl::StatusCode::kInvalidArgument));
  CenteredClippingOptions cc;
  cc.iterations = 0;
  EXPECT_THAT(CreateRule(Options("centered_clipping", 0, cc)),
              StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(CreateRule(Options("flag", 0, FlagWith(-1))),
              StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(CreateRule(Options("flag", 0, FlagWith(0))), IsOk());  // ceil(n/2).
  EXPECT_THAT(CreateRule(Options("flag", 0, FlagWith(0, "unit"))),
              StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(CreatePreStep(Options("bucketing", 0, BucketingOptions{0})),
              StatusIs(absl::StatusCode::kInvalidArgument));
}

// Each rule takes its own settings struct (or none); another rule's is
// refused, naming the rule.
TEST(RuleErrorsTest, SettingsOfAnotherRuleAreRefused) {
  auto krum = CreateRule(Options("krum", 1, GeometricMedianOptions{}));
  EXPECT_THAT(krum, StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(std::string(krum.status().message()), ::testing::HasSubstr("krum: "));
  EXPECT_THAT(CreateRule(Options("geometric_median", 0, FlagOptions{})),
              StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(CreatePreStep(Options("clipping", 0, BucketingOptions{})),
              StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(CreatePreStep(Options("clipping", 0, ClippingOptions{})), IsOk());
}

// DefaultSettings names each rule's settings struct, at its defaults.
TEST(RuleErrorsTest, DefaultSettingsOfEachRule) {
  EXPECT_TRUE(std::holds_alternative<NoOptions>(DefaultSettings("krum")));
  EXPECT_TRUE(std::holds_alternative<NoOptions>(DefaultSettings("nope")));
  ASSERT_TRUE(std::holds_alternative<GeometricMedianOptions>(DefaultSettings("geometric_median")));
  EXPECT_EQ(std::get<GeometricMedianOptions>(DefaultSettings("geometric_median")).nu, 0.1);
  EXPECT_TRUE(std::holds_alternative<CenteredClippingOptions>(DefaultSettings("centered_clipping")));
  EXPECT_TRUE(std::holds_alternative<MdaOptions>(DefaultSettings("mda")));
  EXPECT_TRUE(std::holds_alternative<MonnaOptions>(DefaultSettings("monna")));
  EXPECT_TRUE(std::holds_alternative<FlagOptions>(DefaultSettings("flag")));
  EXPECT_TRUE(std::holds_alternative<ClippingOptions>(DefaultSettings("clipping")));
  ASSERT_TRUE(std::holds_alternative<BucketingOptions>(DefaultSettings("bucketing")));
  EXPECT_EQ(std::get<BucketingOptions>(DefaultSettings("bucketing")).bucket_size, 1u);
}

TEST(RuleErrorsTest, MdaRefusesTooManySubsets) {
  Rows x(40, std::vector<float>{1.0f});
  auto out = RunRule(Options("mda", 10), x);  // C(40, 10) ≈ 8.5e8.
  EXPECT_THAT(out, StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(std::string(out.status().message()), ::testing::HasSubstr("mda: C(n=40, f=10)"));
}

TEST(RuleErrorsTest, MonnaIdxOutOfRange) {
  const RuleOptions options = Options("monna", 0, MonnaOptions{3});
  EXPECT_THAT(RunRule(options, {{1}, {2}, {3}}), StatusIs(absl::StatusCode::kInvalidArgument));
}

TEST(RuleErrorsTest, ShapeMismatch) {
  TALLY_ASSERT_OK_AND_ASSIGN(std::unique_ptr<Rule> rule, CreateRule(Options("average")));
  std::vector<float> batch(5), out(2);
  EXPECT_THAT(rule->Aggregate(batch, 3, 2, absl::MakeSpan(out)),
              StatusIs(absl::StatusCode::kInvalidArgument));
}

// ---------------------------------------------------------------------------
// Bucketing: seeded, s = 1 permutes, s = 2 averages pairs.
TEST(RulePreStepsTest, BucketingIsSeededAndAveragesBuckets) {
  const Rows x = {{0}, {1}, {2}, {3}, {4}};
  RuleOptions options = Options("bucketing");
  options.seed = 7;
  TALLY_ASSERT_OK_AND_ASSIGN(Rows once, RunPre(options, x));
  TALLY_ASSERT_OK_AND_ASSIGN(Rows again, RunPre(options, x));
  EXPECT_EQ(once, again);
  std::vector<float> values;
  for (const auto& row : once) values.push_back(row[0]);
  EXPECT_THAT(values, ::testing::UnorderedElementsAre(0, 1, 2, 3, 4));

  options.settings = BucketingOptions{2};
  TALLY_ASSERT_OK_AND_ASSIGN(Rows buckets, RunPre(options, x));
  ASSERT_EQ(buckets.size(), 3u);
  float total = 0;
  for (size_t k = 0; k < 2; ++k) total += 2 * buckets[k][0];
  total += buckets[2][0];  // The last, partial bucket holds one row.
  EXPECT_NEAR(total, 10.0f, 1e-5);
}

// ---------------------------------------------------------------------------
// Conformance over every registered rule and pre-step.
constexpr size_t kN = 7;
constexpr size_t kD = 5;
constexpr size_t kF = 1;  // Valid for every rule at n = 7 (Bulyan: 4f + 3 = 7).

RuleOptions ConformanceOptions(const std::string& name) {
  RuleOptions options = Options(name, kF, DefaultSettings(name));
  if (name == "clipping") options.settings = ClippingOptions{100};  // Leaves the rows alone.
  if (name == "bucketing") options.settings = BucketingOptions{2};
  return options;
}

Rows RandomRows(uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  Rows rows(kN, std::vector<float>(kD));
  for (auto& row : rows) {
    for (float& v : row) v = normal(rng);
  }
  return rows;
}

TEST(RuleConformanceTest, IdenticalRowsReturnThatRow) {
  const std::vector<float> row = {0.5f, -1, 2, 0.25f, 3};
  const Rows x(kN, row);
  for (const std::string& name : RuleNames()) {
    SCOPED_TRACE(name);
    TALLY_ASSERT_OK_AND_ASSIGN(std::vector<float> out, RunRule(ConformanceOptions(name), x));
    ExpectRowNear(out, std::vector<double>(row.begin(), row.end()), 1e-5);
  }
  for (const std::string& name : PreStepNames()) {
    SCOPED_TRACE(name);
    TALLY_ASSERT_OK_AND_ASSIGN(Rows out, RunPre(ConformanceOptions(name), x));
    ASSERT_FALSE(out.empty());
    for (const auto& r : out) ExpectRowNear(r, std::vector<double>(row.begin(), row.end()), 1e-5);
  }
}

TEST(RuleConformanceTest, PermutationInvariance) {
  const Rows x = RandomRows(42);
  const std::vector<size_t> perm = {3, 6, 0, 5, 1, 4, 2};
  Rows permuted;
  for (size_t i : perm) permuted.push_back(x[i]);
  for (const std::string& name : RuleNames()) {
    // MoNNA's output depends on which row is trusted (idx), by design. Bulyan's
    // late selection steps use one nearest neighbour (|R| − f − 2 < 1 -> 1,
    // docs/algorithms.md#bulyan), where mutual nearest neighbours tie exactly and the lower index
    // wins: order-dependent by the spec.
    if (name == "monna" || name == "bulyan") continue;
    SCOPED_TRACE(name);
    TALLY_ASSERT_OK_AND_ASSIGN(std::vector<float> a, RunRule(ConformanceOptions(name), x));
    TALLY_ASSERT_OK_AND_ASSIGN(std::vector<float> b, RunRule(ConformanceOptions(name), permuted));
    ExpectRowNear(b, std::vector<double>(a.begin(), a.end()), 1e-5);
  }
}

TEST(RuleConformanceTest, InvalidFAndEmptyBatchAreInvalidArgument) {
  const Rows x = RandomRows(7);
  std::vector<float> batch = Flatten(x);
  std::vector<float> out(kD);
  for (const std::string& name : RuleNames()) {
    SCOPED_TRACE(name);
    TALLY_ASSERT_OK_AND_ASSIGN(std::unique_ptr<Rule> ok_rule, CreateRule(ConformanceOptions(name)));
    EXPECT_THAT(ok_rule->Aggregate({}, 0, kD, absl::MakeSpan(out)),
                StatusIs(absl::StatusCode::kInvalidArgument));
    if (RequirementOf(name) == FRequirement::kNone) continue;
    RuleOptions options = ConformanceOptions(name);
    options.f = 4;  // 2f > 7 and 4f + 3 > 7.
    TALLY_ASSERT_OK_AND_ASSIGN(std::unique_ptr<Rule> rule, CreateRule(options));
    EXPECT_THAT(rule->Aggregate(batch, kN, kD, absl::MakeSpan(out)),
                StatusIs(absl::StatusCode::kInvalidArgument));
    options.expected_n = kN;
    EXPECT_THAT(CreateRule(options), StatusIs(absl::StatusCode::kInvalidArgument));
  }
  for (const std::string& name : PreStepNames()) {
    SCOPED_TRACE(name);
    TALLY_ASSERT_OK_AND_ASSIGN(std::unique_ptr<PreStep> ok_step,
                               CreatePreStep(ConformanceOptions(name)));
    EXPECT_THAT(ok_step->Apply({}, 0, kD), StatusIs(absl::StatusCode::kInvalidArgument));
    const FRequirement req = RequirementOf(name);
    if (req == FRequirement::kNone) continue;
    RuleOptions options = ConformanceOptions(name);
    options.f = req == FRequirement::kFLessThanN ? kN : kN + 1;
    TALLY_ASSERT_OK_AND_ASSIGN(std::unique_ptr<PreStep> step, CreatePreStep(options));
    EXPECT_THAT(step->Apply(absl::MakeSpan(batch), kN, kD),
                StatusIs(absl::StatusCode::kInvalidArgument));
  }
}

}  // namespace
}  // namespace tally::aggregators
