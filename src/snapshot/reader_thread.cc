#include "snapshot/reader_thread.h"

#include <poll.h>

#include <chrono>

namespace pgslotd {

namespace {

// How long one request may take before it fails (and is asked again).
constexpr std::chrono::minutes kRequestTimeout{10};

}  // namespace

SnapshotReaderThread::SnapshotReaderThread(std::vector<std::pair<std::string, std::string>> params,
                                           const WakeupFd* worker)
    : params_(std::move(params)), worker_(worker), reader_(wakeup_.fd(), &stop_) {}

SnapshotReaderThread::~SnapshotReaderThread() { Stop(); }

void SnapshotReaderThread::Stop() {
  stop_.store(true, std::memory_order_release);
  wakeup_.Notify();
  if (thread_.joinable()) thread_.join();
}

void SnapshotReaderThread::Ask(SnapshotAsk ask) {
  // Started at the first request: a slot that may take snapshots but has
  // none to take costs no thread.
  if (!thread_.joinable() && !stop_.load(std::memory_order_acquire)) {
    thread_ = std::thread([this] { Run(); });
  }
  {
    MutexLock lock(&mu_);
    ask_ = std::move(ask);
  }
  busy_ = true;
  wakeup_.Notify();
}

std::optional<SnapshotAnswer> SnapshotReaderThread::TakeAnswer() {
  MutexLock lock(&mu_);
  std::optional<SnapshotAnswer> answer = std::move(answer_);
  answer_.reset();
  if (answer) busy_ = false;
  return answer;
}

void SnapshotReaderThread::Run() {
  while (!stop_.load(std::memory_order_acquire)) {
    std::optional<SnapshotAsk> ask;
    {
      MutexLock lock(&mu_);
      ask = std::move(ask_);
      ask_.reset();
    }
    if (!ask) {
      struct pollfd p = {wakeup_.fd(), POLLIN, 0};
      (void)::poll(&p, 1, -1);
      wakeup_.Drain();
      continue;
    }
    if (ask->kind == SnapshotAsk::Kind::kClose) {
      reader_.Close();
      MutexLock lock(&mu_);
      answer_ = SnapshotAnswer{SnapshotAsk::Kind::kClose, Status::Ok(), {}, {}, {}};
      continue;  // nobody waits for it
    }
    SnapshotAnswer answer = Serve(*ask);
    {
      MutexLock lock(&mu_);
      answer_ = std::move(answer);
    }
    worker_->Notify();
  }
  reader_.Close();
}

SnapshotAnswer SnapshotReaderThread::Serve(const SnapshotAsk& ask) {
  SnapshotAnswer answer;
  answer.kind = ask.kind;
  auto deadline = TableReader::Clock::now() + kRequestTimeout;
  answer.status = reader_.Connect(params_, deadline);
  if (!answer.status.ok()) {
    answer.status = answer.status.Prefixed("connecting to read the snapshot");
    return answer;
  }
  switch (ask.kind) {
    case SnapshotAsk::Kind::kListTables: {
      auto r = reader_.ListTables(ask.publications, deadline);
      answer.status = r.status();
      if (r.ok()) answer.tables = std::move(r.value());
      break;
    }
    case SnapshotAsk::Kind::kDescribe: {
      auto r = reader_.Describe(ask.schema, ask.table, ask.publications, deadline);
      answer.status = r.status();
      if (r.ok()) answer.described = std::move(r.value());
      break;
    }
    case SnapshotAsk::Kind::kBeginPass:
      answer.status = reader_.BeginPass(ask.recently_committed, deadline);
      break;
    case SnapshotAsk::Kind::kClose:
      break;
    case SnapshotAsk::Kind::kRead: {
      const ChunkRequest& c = ask.chunk;
      auto r = c.keys.empty()
                   ? reader_.Read(ask.described, c.after_key, ask.chunk_rows, c.watermark, deadline)
                   : reader_.ReadKeys(ask.described, c.keys, c.watermark, deadline);
      answer.status = r.status();
      if (r.ok()) answer.chunk = std::move(r.value());
      break;
    }
  }
  return answer;
}

}  // namespace pgslotd
