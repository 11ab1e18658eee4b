// The process's standard output. Durable = taken by write(). When stdout is
// a pipe it is reopened through /proc/self/fd so that it can be made
// non-blocking without touching the description other processes share (when
// /proc is not there, each write of at most PIPE_BUF bytes waits for
// POLLOUT, which a pipe only reports with that much room); a socket is
// written with MSG_DONTWAIT. A slow reader therefore never stops
// the worker from answering the server. Only one slot may use stdout.
#pragma once

#include "sink/sink.h"

namespace pgslotd {

class StdoutSink : public ByteSink {
 public:
  explicit StdoutSink(int fd) : fd_(fd) {}
  ~StdoutSink() override;

  std::string Describe() const override { return "stdout"; }
  Status Open() override;
  Status Write(const char* data, size_t len, size_t* written) override;
  Status Sync() override;
  Wait WaitSpec() const override;
  Result<bool> Probe() override;
  Status Discard(uint64_t keep) override;
  Status Reopen() override { return Status::Ok(); }
  Status Close() override;

 private:
  int fd_;                    // the descriptor we were given
  int own_fd_ = -1;           // our non-blocking reopening of a pipe, if any
  bool socket_ = false;       // write with send(MSG_DONTWAIT)
  bool fifo_polled_ = false;  // a pipe we could not reopen: poll, then write <= PIPE_BUF
};

}  // namespace pgslotd
