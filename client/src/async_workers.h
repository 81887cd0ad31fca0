// AsyncWorkers: the threads behind Client::*Async. Each worker owns its own Session (its own
// connection, and arena mapping when granted), so async requests never wait for the
// Client's synchronous connection and several workers run requests in parallel.
//
// A worker connects on its first task and reconnects on the next task after its connection
// broke, so one daemon restart or timeout costs only the requests in flight. Tasks are run
// in FIFO order per queue; destruction waits for running tasks and hands queued ones a
// Cancelled status. Submit() is thread-safe.
#pragma once

#include <condition_variable>
#include <deque>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "kvtier/client/client.h"
#include "session.h"

namespace kvtier::client {

class AsyncWorkers {
 public:
  // A task gets the worker's Session, or the reason there is none (connect failure, or
  // Cancelled at shutdown). It must not throw.
  using Task = std::function<void(absl::StatusOr<Session*>)>;

  AsyncWorkers(Endpoint endpoint, ClientOptions options);
  ~AsyncWorkers();
  AsyncWorkers(const AsyncWorkers&) = delete;
  AsyncWorkers& operator=(const AsyncWorkers&) = delete;

  void Submit(Task task);

 private:
  void Run();

  const Endpoint endpoint_;
  const ClientOptions options_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Task> queue_;  // guarded by mu_
  bool stopping_ = false;   // guarded by mu_
  std::vector<std::thread> threads_;
};

}  // namespace kvtier::client
