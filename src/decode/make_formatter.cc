#include "decode/formatter.h"
#include "decode/pgoutput_formatter.h"

namespace pgslotd {

std::unique_ptr<Formatter> MakeFormatter(const SlotConfig& config, PrimaryKeys* primary_keys) {
  switch (config.format) {
    case OutputFormat::kRaw:
      break;
    case OutputFormat::kJson: {
      JsonOptions options;
      options.include_transactions = config.include_transactions;
      // Streamed transactions wait in <state_directory>/spool until their
      // commit; files are named after the slot.
      if (!config.state_directory.empty()) options.spool_dir = config.state_directory + "/spool";
      options.slot_name = config.name;
      options.primary_keys = primary_keys;
      return MakePgoutputFormatter(options);
    }
  }
  return std::make_unique<RawFormatter>(RawFramingFor(config.plugin, config.options));
}

}  // namespace pgslotd
