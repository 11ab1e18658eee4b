// Starts one SlotWorker per configured slot and runs the main thread's loop:
// signals (taken with signalfd; no handler does any work), worker exits and
// the end of an --end-lsn run.
//
//   SIGTERM, SIGINT  stop every slot cleanly (sync, final ack, end copy) and exit 0
//   SIGHUP           reopen every sink (logrotate's create mode)
//
// The caller must block SIGTERM, SIGINT and SIGHUP in every thread before
// constructing the Supervisor (BlockSignals does it), so that no worker
// thread ever receives them.
#pragma once

#include <memory>
#include <optional>
#include <vector>

#include "config/config.h"
#include "pg/lsn.h"
#include "slot/slot_worker.h"

namespace pgslotd {

// Blocks the signals the supervisor takes and ignores SIGPIPE (a pipe
// reader that goes away is an error value, not a signal).
void BlockSignals();

class Supervisor {
 public:
  struct Options {
    std::optional<Lsn> end_lsn;
  };
  Supervisor(Config config, Options options);
  ~Supervisor();

  // Runs until stopped by a signal, until every slot has reached the end
  // position, or until a fatal error. Returns the process exit code: 0 on a
  // clean stop or when every slot reached --end-lsn; 1 when a slot failed
  // with --end-lsn, when every slot has failed, or on a process-fatal error.
  int Run();

 private:
  void StopAll();
  Config config_;
  Options options_;
  int done_fd_ = -1;  // eventfd: a worker finished
  std::vector<std::unique_ptr<SlotWorker>> workers_;
};

}  // namespace pgslotd
