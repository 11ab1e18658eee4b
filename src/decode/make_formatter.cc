#include "decode/formatter.h"

namespace pgslotd {

std::unique_ptr<Formatter> MakeFormatter(const SlotConfig& config) {
  switch (config.format) {
    case OutputFormat::kRaw:
    case OutputFormat::kJson:  // wired to the pgoutput decoder when it lands
      break;
  }
  return std::make_unique<RawFormatter>();
}

}  // namespace pgslotd
