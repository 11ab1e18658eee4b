// Process-wide logging setup. Logs go to stderr (stdout belongs to stdout
// sinks). Loggers are thread-safe; slot messages start with "slot <name>: ".
#pragma once

#include <string>

namespace pgslotd {

// Installs the default logger at `level` (trace, debug, info, warning,
// error). Returns false for an unknown level.
bool SetupLogging(const std::string& level);

}  // namespace pgslotd
