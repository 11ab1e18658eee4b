// A recording sink for tests: keeps every byte it accepted and what was
// durable, and fails Write or Sync on demand. Thread-safe for the test
// thread to inspect while a worker thread writes.
#pragma once

#include <mutex>
#include <string>
#include <vector>

#include "sink/sink.h"
#include "util/fd.h"

namespace pgslotd::test {

class FakeSink : public ByteSink {
 public:
  struct Shared {
    std::mutex mu;
    std::string content;       // every accepted byte, minus discarded ones
    size_t durable_bytes = 0;  // prefix of content that Sync made durable
    bool fail_write = false;   // Write accepts half, then fails (retryable)
    bool fail_sync = false;    // Sync fails
    bool hold = false;  // Sync succeeds but nothing becomes durable (a reader that never reads)
    Status::Code sync_error = Status::Code::kProcessFatal;
    int syncs = 0;
    int discards = 0;
  };
  explicit FakeSink(Shared* shared) : s_(shared) {}

  std::string Describe() const override { return "fake"; }
  Status Open() override { return Status::Ok(); }
  Status Write(const char* data, size_t len, size_t* written) override {
    std::lock_guard<std::mutex> l(s_->mu);
    if (s_->fail_write) {
      *written = len / 2;
      s_->content.append(data, *written);
      CountAccepted(*written);
      return Status::Retryable("injected write failure");
    }
    *written = len;
    s_->content.append(data, len);
    CountAccepted(len);
    return Status::Ok();
  }
  bool SyncIsCostly() const override { return accepted() > durable(); }
  Status Sync() override {
    std::lock_guard<std::mutex> l(s_->mu);
    ++s_->syncs;
    if (accepted() == durable() || s_->hold) return Status::Ok();  // as a file: nothing to sync
    if (s_->fail_sync) {
      return s_->sync_error == Status::Code::kProcessFatal
                 ? Status::ProcessFatal("injected fsync failure")
                 : Status::Retryable("injected fsync failure");
    }
    CountDurableUpTo(accepted());
    s_->durable_bytes = s_->content.size();
    return Status::Ok();
  }
  bool CanRetract() const override { return true; }  // like a file
  Status Discard(uint64_t keep) override {
    std::lock_guard<std::mutex> l(s_->mu);
    ++s_->discards;
    uint64_t drop = accepted() - keep;
    s_->content.resize(s_->content.size() - drop);
    if (s_->durable_bytes > s_->content.size()) s_->durable_bytes = s_->content.size();
    CountRenumbered(keep);
    return Status::Ok();
  }
  Status Reopen() override { return Status::Ok(); }
  Status Close() override { return Sync(); }

 private:
  Shared* s_;
};

// A record sink that learns later, out of order, what is durable, as one
// with a broker's delivery reports does: it takes whole records only (every
// one it is offered; at most `take_at_most` a call), keeps each with its
// description, durable() never moves by Sync, and the test completes ranges
// of stream offsets when it likes (Complete), which wakes the worker through
// CompletionFd. It cannot take records back: what it took stays taken.
class AsyncFakeSink : public Sink {
 public:
  // A record as the sink saw it.
  struct Taken {
    std::string payload;
    std::string key;
    std::string schema;  // empty: no table
    std::string table;
    RecordInfo info;
    uint64_t end = 0;  // its stream offset's end
  };
  struct Shared {
    std::mutex mu;
    std::string content;         // every byte taken
    std::vector<Taken> records;  // every record taken
    size_t take_at_most = SIZE_MAX;
    std::vector<Range> reports;  // completed, not yet handed over
    int taken_reports = 0;       // ranges handed to the worker so far
    WakeupFd completion;
    // Records the test completes: [begin, end) of stream offsets.
    void Complete(uint64_t begin, uint64_t end) {
      std::lock_guard<std::mutex> l(mu);
      reports.push_back(Range{begin, end});
      completion.Notify();
    }
  };
  explicit AsyncFakeSink(Shared* shared) : s_(shared) {}

  std::string Describe() const override { return "async fake"; }
  Status Open() override { return Status::Ok(); }
  Status Append(const RecordBuffer& records, size_t limit, size_t* taken) override {
    std::lock_guard<std::mutex> l(s_->mu);
    *taken = 0;
    for (size_t i = 0; i < records.record_count() && i < s_->take_at_most; ++i) {
      Record r = records.record(i);
      size_t end = static_cast<size_t>(r.info->end - records.offset());
      if (end > limit) break;
      s_->content.append(records.data() + *taken, end - *taken);
      CountAccepted(end - *taken);
      *taken = end;
      Taken t{std::string(r.payload), std::string(r.key), "", "", *r.info, accepted()};
      if (r.table) {
        t.schema = r.table->schema;
        t.table = r.table->table;
      }
      s_->records.push_back(std::move(t));
    }
    return Status::Ok();
  }
  Status Sync() override { return Status::Ok(); }
  int CompletionFd() const override { return s_->completion.fd(); }
  void TakeCompleted(std::vector<Range>* ranges) override {
    std::lock_guard<std::mutex> l(s_->mu);
    s_->completion.Drain();
    ranges->insert(ranges->end(), s_->reports.begin(), s_->reports.end());
    s_->taken_reports += static_cast<int>(s_->reports.size());
    s_->reports.clear();
  }
  Status Discard(uint64_t keep) override {
    CountRenumbered(keep);
    return Status::Ok();
  }
  Status Reopen() override { return Status::Ok(); }
  Status Close() override { return Status::Ok(); }

 private:
  Shared* s_;
};

}  // namespace pgslotd::test
