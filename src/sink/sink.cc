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

}  // namespace pgslotd
