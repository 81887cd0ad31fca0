#include "async_workers.h"

#include <memory>
#include <utility>

#include "absl/status/status.h"

namespace kvtier::client {

AsyncWorkers::AsyncWorkers(Endpoint endpoint, ClientOptions options)
    : endpoint_(std::move(endpoint)), options_(std::move(options)) {
  threads_.reserve(options_.async_workers);
  for (int i = 0; i < options_.async_workers; ++i) threads_.emplace_back([this] { Run(); });
}

AsyncWorkers::~AsyncWorkers() {
  std::deque<Task> cancelled;
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
    cancelled.swap(queue_);
  }
  cv_.notify_all();
  for (auto& t : threads_) t.join();
  for (auto& task : cancelled) {
    task(absl::CancelledError("the kvtier Client was destroyed before this request ran"));
  }
}

void AsyncWorkers::Submit(Task task) {
  {
    std::lock_guard lock(mu_);
    if (!stopping_) {
      queue_.push_back(std::move(task));
      task = nullptr;
    }
  }
  if (task) {
    task(absl::CancelledError("the kvtier Client is shutting down"));
    return;
  }
  cv_.notify_one();
}

void AsyncWorkers::Run() {
  std::unique_ptr<Session> session;
  for (;;) {
    Task task;
    {
      std::unique_lock lock(mu_);
      cv_.wait(lock, [this] { return stopping_ || !queue_.empty(); });
      if (stopping_) return;
      task = std::move(queue_.front());
      queue_.pop_front();
    }
    if (session != nullptr && session->broken()) session.reset();
    if (session == nullptr) {
      auto opened = Session::Open(endpoint_, options_);
      if (!opened.ok()) {
        task(opened.status());
        continue;
      }
      session = *std::move(opened);
    }
    task(session.get());
  }
}

}  // namespace kvtier::client
