#include "server/privacy_driver.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "server/log.h"

namespace tally::server {

PrivacyDriver::PrivacyDriver(std::unique_ptr<Driver> inner, std::shared_ptr<PrivacyState> privacy,
                             ServerMetrics* metrics, bool schedule)
    : inner_(std::move(inner)), privacy_(std::move(privacy)), metrics_(metrics),
      schedule_(schedule) {
  if (privacy_->random().insecure_test_seed()) {
    LogWarning(absl::StrCat("privacy: noise comes from the INSECURE test seed (",
                            privacy::kInsecureTestSeedEnv,
                            " is set): the published models have NO privacy; tests only"));
  }
  const PrivacyProgress p = privacy_->Progress();
  if (p.steps > 0) {
    LogInfo(absl::StrCat("privacy: the ledger holds", privacy_->LogText()));
  }
  ExportMetrics();
  StopIfSpent();
}

void PrivacyDriver::ExportMetrics() {
  const PrivacyProgress p = privacy_->Progress();
  metrics_->privacy_epsilon.Set(p.epsilon);
  metrics_->privacy_steps.Set(static_cast<double>(p.steps));
  metrics_->privacy_clip_norm.Set(p.clip_norm);
}

void PrivacyDriver::Finished(const DriverBatch& batch, bool ok, uint64_t version, absl::Time now) {
  if (!ok || !batch.aggregate) {
    inner_->Finished(batch, ok, version, now);
    StopIfSpent();
    return;
  }
  // The noised step was released: charge it before the next round opens.
  privacy_->StepPublished();
  DriverBatch noted = batch;
  noted.note = privacy_->LogText();
  ExportMetrics();
  if (schedule_) LogInfo(absl::StrCat(batch.label, " published version ", version, noted.note));
  inner_->Finished(noted, ok, version, now);
  StopIfSpent();
}

void PrivacyDriver::StopIfSpent() {
  if (inner_->done() || privacy_->CanChargeStep()) return;
  const PrivacyProgress p = privacy_->Progress();
  LogInfo(absl::StrFormat(
      "privacy budget: epsilon=%.6g spent in %d step(s) at delta=%g; one more step would exceed "
      "target_epsilon=%g: stopping",
      p.epsilon, p.steps, p.delta, p.target_epsilon));
  inner_->Finish();
}

}  // namespace tally::server
