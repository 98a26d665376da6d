#include "server/report_evaluation_reactor.h"

#include <utility>

namespace tally::server {

ReportEvaluationReactor::ReportEvaluationReactor(Coordinator* coordinator, WorkflowRun* run,
                                                 absl::Status session,
                                                 const tally::v1::EvaluationReport* request,
                                                 tally::v1::EvaluationAck* response) {
  if (session.ok()) {
    session = coordinator->CheckSession(request->client_id(), request->session_token());
  }
  if (!session.ok()) {
    run->CountRejectedReport(session);
    FinishWith(session);
    return;
  }
  absl::StatusOr<tally::v1::EvaluationAck> ack = run->Report(request->client_id(), *request);
  if (!ack.ok()) {
    FinishWith(ack.status());
    return;
  }
  *response = *std::move(ack);
  FinishWith(absl::OkStatus());
}

}  // namespace tally::server
