// The base of tally's callback-API reactors (the RPC edge). The callback API
// requires a reactor allocated with `new` per call; gRPC calls OnDone once,
// after the last reaction, and the reactor then deletes itself: that one
// `delete this` lives here. Reactors finish with an absl::Status, converted
// once through server/grpc_status.h.
//
// Ownership: a reactor owns itself from its handler's `new` until OnDone.
// Thread safety: as gRPC's reactors; a derived reactor guards its own state.
#ifndef TALLY_SERVER_REACTOR_BASE_H_
#define TALLY_SERVER_REACTOR_BASE_H_

#include "absl/status/status.h"
#include "grpcpp/support/server_callback.h"
#include "server/grpc_status.h"

namespace tally::server {

// `Base` is one of grpc::ServerUnaryReactor, grpc::ServerReadReactor<T> or
// grpc::ServerWriteReactor<T>.
template <typename Base>
class TallyReactor : public Base {
 public:
  // Releases what the reactor registered, then deletes it.
  void OnDone() final {
    Release();
    delete this;
  }

 protected:
  TallyReactor() = default;

  // Finishes the call with `status` (server/grpc_status.h converts it).
  void FinishWith(const absl::Status& status) { this->Finish(ToGrpcStatus(status)); }

  // Undoes what the reactor registered elsewhere (a guard, a subscription);
  // runs once, in OnDone, before the reactor is deleted.
  virtual void Release() {}
};

// A server stream refused before it starts (authentication, limits): it
// finishes with `status` at once.
template <typename T>
class RefusedWriter final : public TallyReactor<grpc::ServerWriteReactor<T>> {
 public:
  explicit RefusedWriter(const absl::Status& status) { this->FinishWith(status); }
};

}  // namespace tally::server

#endif  // TALLY_SERVER_REACTOR_BASE_H_
