// Quoting for the replication command language (and plain SQL).
//
// Slot names and plugin option names go into commands as quoted identifiers,
// option values and SQL strings as quoted literals; nothing a config file
// holds can end the quote early. Text containing a NUL byte cannot be sent
// at all: callers refuse it first (the config loader does).
#pragma once

#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "pg/lsn.h"

namespace pgslotd {

// "name" with every " doubled.
std::string QuoteIdent(std::string_view name);

// 'value' with every ' doubled. The replication grammar and SQL with
// standard_conforming_strings (the default since 9.1) treat backslashes as
// ordinary characters; a backslash therefore needs no escaping, and the E''
// form is never produced.
std::string QuoteLiteral(std::string_view value);

// START_REPLICATION SLOT "slot" LOGICAL X/Y ("opt" 'val', ...)
std::string BuildStartReplication(std::string_view slot, Lsn start,
                                  const std::vector<std::pair<std::string, std::string>>& options);

// CREATE_REPLICATION_SLOT "slot" LOGICAL "plugin"
std::string BuildCreateSlot(std::string_view slot, std::string_view plugin);

}  // namespace pgslotd
