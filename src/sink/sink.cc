#include "sink/sink.h"

#include <cstddef>
#include <iterator>
#include <memory>

#include "sink/file_sink.h"
#include "sink/kafka_sink.h"
#include "sink/pipe_sink.h"
#include "sink/stdout_sink.h"

namespace pgslotd {
namespace {

using Made = std::unique_ptr<Sink>;

// How to make a kind of sink from its config; `stdout_fd` as for MakeSink.
struct Factory {
  SinkType type;
  Made (*make)(const SlotConfig& config, int stdout_fd);
};

// One line per kind of sink, in SinkType's order (checked below). What the
// loader checks of a kind is its row of kSinkKinds in config/config.cc.
constexpr Factory kFactories[] = {
    {SinkType::kStdout,
     [](const SlotConfig&, int fd) -> Made { return std::make_unique<StdoutSink>(fd); }},
    {SinkType::kFile,
     [](const SlotConfig& c, int) -> Made {
       return std::make_unique<FileSink>(c.sink.path, c.sink.mode, c.sink.rotate);
     }},
    {SinkType::kPipe,
     [](const SlotConfig& c, int) -> Made {
       return std::make_unique<PipeSink>(c.sink.path, c.sink.mode);
     }},
    {SinkType::kKafka,
     [](const SlotConfig& c, int) -> Made { return std::make_unique<KafkaSink>(c); }},
};

constexpr bool FactoriesFollowSinkType() {
  if (std::size(kFactories) != kSinkTypeCount) return false;
  for (size_t i = 0; i < kSinkTypeCount; ++i) {
    if (static_cast<size_t>(kFactories[i].type) != i) return false;
  }
  return true;
}
static_assert(FactoriesFollowSinkType(),
              "kFactories needs one line for each SinkType (before kCount), in its order");

}  // namespace

std::unique_ptr<Sink> MakeSink(const SlotConfig& config, int stdout_fd) {
  return kFactories[static_cast<size_t>(config.sink.type)].make(config, stdout_fd);
}

}  // namespace pgslotd
