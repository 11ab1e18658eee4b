// A named pipe (FIFO). Created with mkfifo when missing; an existing FIFO is
// used as it is. Opened non-blocking: no reader never blocks the worker.
// Durable = taken out of the pipe by the reader (accepted minus what
// FIONREAD still counts in the pipe). See sink.h.
#pragma once

#include <string>

#include "sink/sink.h"

namespace pgslotd {

class PipeSink : public ByteSink {
 public:
  PipeSink(std::string path, uint32_t mode) : path_(std::move(path)), mode_(mode) {}
  ~PipeSink() override;

  std::string Describe() const override { return "pipe " + path_; }
  Status Open() override;
  Status Write(const char* data, size_t len, size_t* written) override;
  Status Sync() override;
  Wait WaitSpec() const override;
  Result<bool> Probe() override;
  std::chrono::milliseconds RecheckAfter() const override;
  Status Discard(uint64_t keep) override;
  Status Reopen() override;
  Status Close() override;

 private:
  // Opens the write end if a reader is there; fd_ stays -1 if not.
  Status TryOpenWriter();
  void CloseWriter();

  std::string path_;
  uint32_t mode_;
  int fd_ = -1;
  // The reader went away with bytes it had not taken: nothing more is
  // written until Discard() renumbers the stream.
  bool lost_reader_ = false;
};

}  // namespace pgslotd
