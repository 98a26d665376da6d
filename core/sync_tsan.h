// ThreadSanitizer stand-ins for tally::Mutex, MutexLock, ReaderMutexLock,
// WriterMutexLock and Notification. Included by core/sync.h only when
// TALLY_TSAN is defined (cmake -DTALLY_SANITIZE=thread); never include it
// directly.
//
// Why: Debian's Abseil is not compiled with TSan, so absl::Mutex's lock and
// unlock are invisible to it. These classes are built on std::shared_mutex,
// std::mutex and std::condition_variable(_any), i.e. on pthreads, which TSan
// intercepts, so it sees every happens-before edge our locks create.
//
// They expose the subset of the Abseil API tally uses, with the same
// thread-safety annotations, and the same semantics with these differences:
// - Reader locks are truly shared (pthread rwlock), so TSan still reports
//   races between two readers. Unlike absl::Mutex, a waiting writer does not
//   block new readers (glibc's default rwlock prefers readers).
// - Await/AwaitWithTimeout require the lock held exclusively (every caller
//   does). A waiter is woken by every exclusive Unlock and re-evaluates its
//   Condition under the lock: correct, not fast.
// - AssertHeld/AssertReaderHeld are annotations only; normal builds check.
// Thread safety: as the Abseil types.
#ifndef TALLY_CORE_SYNC_TSAN_H_
#define TALLY_CORE_SYNC_TSAN_H_

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <mutex>
#include <shared_mutex>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace tally {

class ABSL_LOCKABLE Mutex {
 public:
  Mutex() = default;
  Mutex(const Mutex&) = delete;
  Mutex& operator=(const Mutex&) = delete;

  void Lock() ABSL_EXCLUSIVE_LOCK_FUNCTION() { mu_.lock(); }
  void Unlock() ABSL_UNLOCK_FUNCTION() {
    // waiters_ is read under the lock; only Await changes it, under the lock.
    const bool wake = waiters_ > 0;
    mu_.unlock();
    if (wake) cv_.notify_all();
  }
  bool TryLock() ABSL_EXCLUSIVE_TRYLOCK_FUNCTION(true) { return mu_.try_lock(); }
  void AssertHeld() const ABSL_ASSERT_EXCLUSIVE_LOCK() {}

  // Readers cannot change what a Condition reads, so they wake no waiter
  // (which also keeps readers unordered with each other, as TSan should see).
  void ReaderLock() ABSL_SHARED_LOCK_FUNCTION() { mu_.lock_shared(); }
  void ReaderUnlock() ABSL_UNLOCK_FUNCTION() { mu_.unlock_shared(); }
  void AssertReaderHeld() const ABSL_ASSERT_SHARED_LOCK() {}

  void WriterLock() ABSL_EXCLUSIVE_LOCK_FUNCTION() { Lock(); }
  void WriterUnlock() ABSL_UNLOCK_FUNCTION() { Unlock(); }

  // Releases the lock until cond.Eval() is true, then returns holding it.
  void Await(const absl::Condition& cond) {
    if (cond.Eval()) return;
    BeginWait();
    RawLock raw{&mu_};
    cv_.wait(raw, [&cond] { return cond.Eval(); });
    --waiters_;
  }

  // As Await, giving up after `timeout`; returns cond.Eval() (true unless it
  // timed out). Always returns holding the lock.
  bool AwaitWithTimeout(const absl::Condition& cond, absl::Duration timeout) {
    if (timeout == absl::InfiniteDuration()) {
      Await(cond);
      return true;
    }
    if (cond.Eval()) return true;
    if (timeout <= absl::ZeroDuration()) return false;
    BeginWait();
    RawLock raw{&mu_};
    const bool met =
        cv_.wait_until(raw, std::chrono::steady_clock::now() + absl::ToChronoNanoseconds(timeout),
                       [&cond] { return cond.Eval(); });
    --waiters_;
    return met;
  }

 private:
  // The exclusive side of mu_ without the wake-up Unlock does (the condition
  // variable calls unlock() while holding its own internal mutex).
  struct RawLock {
    std::shared_mutex* mu;
    void lock() { mu->lock(); }
    void unlock() { mu->unlock(); }
  };

  // Waiting releases the lock, so other waiters must re-check first: the
  // caller may have changed what they wait for.
  void BeginWait() {
    if (waiters_ > 0) cv_.notify_all();
    ++waiters_;
  }

  std::shared_mutex mu_;
  std::condition_variable_any cv_;
  int waiters_ = 0;  // Threads in Await; under the exclusive lock.
};

class ABSL_SCOPED_LOCKABLE MutexLock {
 public:
  explicit MutexLock(Mutex* mu) ABSL_EXCLUSIVE_LOCK_FUNCTION(mu) : mu_(mu) { mu_->Lock(); }
  MutexLock(const MutexLock&) = delete;
  MutexLock& operator=(const MutexLock&) = delete;
  ~MutexLock() ABSL_UNLOCK_FUNCTION() { mu_->Unlock(); }

 private:
  Mutex* const mu_;
};

class ABSL_SCOPED_LOCKABLE ReaderMutexLock {
 public:
  explicit ReaderMutexLock(Mutex* mu) ABSL_SHARED_LOCK_FUNCTION(mu) : mu_(mu) { mu_->ReaderLock(); }
  ReaderMutexLock(const ReaderMutexLock&) = delete;
  ReaderMutexLock& operator=(const ReaderMutexLock&) = delete;
  ~ReaderMutexLock() ABSL_UNLOCK_FUNCTION() { mu_->ReaderUnlock(); }

 private:
  Mutex* const mu_;
};

class ABSL_SCOPED_LOCKABLE WriterMutexLock {
 public:
  explicit WriterMutexLock(Mutex* mu) ABSL_EXCLUSIVE_LOCK_FUNCTION(mu) : mu_(mu) {
    mu_->WriterLock();
  }
  WriterMutexLock(const WriterMutexLock&) = delete;
  WriterMutexLock& operator=(const WriterMutexLock&) = delete;
  ~WriterMutexLock() ABSL_UNLOCK_FUNCTION() { mu_->WriterUnlock(); }

 private:
  Mutex* const mu_;
};

class Notification {
 public:
  Notification() = default;
  explicit Notification(bool prenotify) : notified_(prenotify) {}
  Notification(const Notification&) = delete;
  Notification& operator=(const Notification&) = delete;
  // Waits for a Notify() still returning on another thread, as Abseil does.
  ~Notification() { std::lock_guard<std::mutex> lock(mu_); }

  bool HasBeenNotified() const { return notified_.load(std::memory_order_acquire); }

  void Notify() {
    std::lock_guard<std::mutex> lock(mu_);
    if (notified_.load(std::memory_order_relaxed)) {
      std::fprintf(stderr, "tally::Notification::Notify() called more than once\n");
      std::abort();
    }
    notified_.store(true, std::memory_order_release);
    cv_.notify_all();
  }

  void WaitForNotification() const {
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait(lock, [this] { return HasBeenNotified(); });
  }

  bool WaitForNotificationWithTimeout(absl::Duration timeout) const {
    if (timeout == absl::InfiniteDuration()) {
      WaitForNotification();
      return true;
    }
    std::unique_lock<std::mutex> lock(mu_);
    if (timeout <= absl::ZeroDuration()) return HasBeenNotified();
    return cv_.wait_until(lock,
                          std::chrono::steady_clock::now() + absl::ToChronoNanoseconds(timeout),
                          [this] { return HasBeenNotified(); });
  }

 private:
  mutable std::mutex mu_;
  mutable std::condition_variable cv_;
  std::atomic<bool> notified_{false};
};

}  // namespace tally

#endif  // TALLY_CORE_SYNC_TSAN_H_
