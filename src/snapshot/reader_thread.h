// The thread that reads a slot's snapshot, so that the slot's worker never
// waits on a query: the worker asks (one request at a time), the thread
// runs it on its TableReader and posts the answer, then wakes the worker's
// wakeup descriptor; the worker takes the answer on its next turn.
//
// The thread starts at the first Ask.
//
// Thread-safety: Ask, TakeAnswer and busy are the worker's (one thread);
// the reader thread touches only the mailbox, under its mutex. Stop (or the
// destructor) interrupts a read in progress (its query is cancelled on the
// server) and joins.
#pragma once

#include <atomic>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "snapshot/snapshot_pass.h"
#include "snapshot/table_reader.h"
#include "util/fd.h"
#include "util/mutex.h"
#include "util/status.h"

namespace pgslotd {

struct SnapshotAsk {
  // kClose: the snapshot is done; the connection is closed (the answer
  // says nothing).
  enum class Kind { kListTables, kDescribe, kBeginPass, kRead, kClose };
  Kind kind = Kind::kListTables;
  std::vector<std::string> publications;     // kListTables, kDescribe
  std::string schema, table;                 // kDescribe
  std::vector<uint32_t> recently_committed;  // kBeginPass
  TableDescription described;                // kRead: the table
  ChunkRequest chunk;                        // kRead
  uint32_t chunk_rows = 0;                   // kRead
};

struct SnapshotAnswer {
  SnapshotAsk::Kind kind = SnapshotAsk::Kind::kListTables;
  Status status;  // not ok: the request failed (the fields below are empty)
  std::vector<std::pair<std::string, std::string>> tables;  // kListTables
  TableDescription described;                               // kDescribe
  Chunk chunk;                                              // kRead
};

// Where a snapshot's requests go: the reader thread, or a test's fake.
class SnapshotReads {
 public:
  virtual ~SnapshotReads() = default;
  // Hands over a request; only while !busy().
  virtual void Ask(SnapshotAsk ask) = 0;
  // Asked and not yet taken.
  virtual bool busy() const = 0;
  // The answer, once there (nullopt before).
  virtual std::optional<SnapshotAnswer> TakeAnswer() = 0;
};

class SnapshotReaderThread : public SnapshotReads {
 public:
  // `params`: the reading connection's (BuildSnapshotParams). `worker` is
  // woken whenever an answer is posted.
  SnapshotReaderThread(std::vector<std::pair<std::string, std::string>> params,
                       const WakeupFd* worker);
  ~SnapshotReaderThread() override;
  SnapshotReaderThread(const SnapshotReaderThread&) = delete;
  SnapshotReaderThread& operator=(const SnapshotReaderThread&) = delete;

  void Ask(SnapshotAsk ask) override;
  bool busy() const override { return busy_; }
  std::optional<SnapshotAnswer> TakeAnswer() override;
  // Interrupts and joins; idempotent.
  void Stop();

 private:
  void Run();
  SnapshotAnswer Serve(const SnapshotAsk& ask);

  const std::vector<std::pair<std::string, std::string>> params_;
  const WakeupFd* worker_;
  WakeupFd wakeup_;  // the thread's: a request, or stop
  std::atomic<bool> stop_{false};
  bool busy_ = false;   // the worker's
  TableReader reader_;  // the thread's
  Mutex mu_;
  std::optional<SnapshotAsk> ask_ GUARDED_BY(mu_);
  std::optional<SnapshotAnswer> answer_ GUARDED_BY(mu_);
  std::thread thread_;
};

}  // namespace pgslotd
