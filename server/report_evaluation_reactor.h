// ReportEvaluation: a client's metrics for an EVALUATE task
// (docs/workflow.md). The session is checked, then the workflow takes the
// report (server/workflow_run.h); refusals are counted by reason
// (tally_evaluation_reports_rejected_total) and finish through the one
// absl -> gRPC status conversion.
//
// Ownership: owns itself (server/reactor_base.h); AggregatorService creates
// it. The coordinator, request and response must outlive it.
#ifndef TALLY_SERVER_REPORT_EVALUATION_REACTOR_H_
#define TALLY_SERVER_REPORT_EVALUATION_REACTOR_H_

#include "server/coordinator.h"
#include "server/reactor_base.h"
#include "server/workflow_run.h"
#include "tally/v1/tally.grpc.pb.h"

namespace tally::server {

class ReportEvaluationReactor final : public TallyReactor<grpc::ServerUnaryReactor> {
 public:
  // `session`: the caller's identity check (auth), already made.
  ReportEvaluationReactor(Coordinator* coordinator, WorkflowRun* run, absl::Status session,
                          const tally::v1::EvaluationReport* request,
                          tally::v1::EvaluationAck* response);
};

}  // namespace tally::server

#endif  // TALLY_SERVER_REPORT_EVALUATION_REACTOR_H_
