#include "sink/sink.h"

#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "sink/file_sink.h"
#include "sink/pipe_sink.h"
#include "sink/stdout_sink.h"

namespace pgslotd {

std::unique_ptr<Sink> MakeSink(const SinkConfig& config, int stdout_fd) {
  switch (config.type) {
    case SinkType::kFile:
      return std::make_unique<FileSink>(config.path, config.mode, config.rotate);
    case SinkType::kPipe:
      return std::make_unique<PipeSink>(config.path, config.mode);
    case SinkType::kStdout:
      break;
  }
  return std::make_unique<StdoutSink>(stdout_fd);
}

int WriteFully(int fd, const char* data, size_t len, size_t* done) {
  *done = 0;
  while (*done < len) {
    ssize_t n = ::write(fd, data + *done, len - *done);
    if (n < 0) {
      if (errno == EINTR) continue;
      return errno;
    }
    if (n == 0) return EIO;
    *done += static_cast<size_t>(n);
  }
  return 0;
}

}  // namespace pgslotd
