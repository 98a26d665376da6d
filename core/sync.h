// tally's synchronisation vocabulary: Mutex, MutexLock, ReaderMutexLock,
// WriterMutexLock and Notification, used everywhere instead of naming the
// Abseil types directly.
//
// In normal builds these ARE the Abseil types (aliases: no cost, the same
// thread-safety annotations). ThreadSanitizer builds (TALLY_SANITIZE=thread,
// which defines TALLY_TSAN) swap in equivalents built on std::mutex and
// std::condition_variable: Debian's Abseil is not compiled with TSan, so
// absl::Mutex's lock and unlock are invisible to it and every access they
// order would be reported as a race, while pthread mutexes are intercepted.
#ifndef TALLY_CORE_SYNC_H_
#define TALLY_CORE_SYNC_H_

#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"

#ifdef TALLY_TSAN
#include "core/sync_tsan.h"
#else

namespace tally {

using Mutex = absl::Mutex;
using MutexLock = absl::MutexLock;
using ReaderMutexLock = absl::ReaderMutexLock;
using WriterMutexLock = absl::WriterMutexLock;
using Notification = absl::Notification;

}  // namespace tally

#endif  // TALLY_TSAN

#endif  // TALLY_CORE_SYNC_H_
