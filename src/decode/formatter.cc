// Factories for the formatters of src/decode.
#include "decode/formatter.h"

#include "decode/pgoutput_formatter.h"

namespace pgslotd {

std::unique_ptr<Formatter> MakePgoutputFormatter(const JsonOptions& options) {
  return std::make_unique<PgoutputFormatter>(options);
}

}  // namespace pgslotd
