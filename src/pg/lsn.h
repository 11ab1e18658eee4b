// Log sequence numbers: 64-bit WAL positions, written "X/Y" in hex.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace pgslotd {

using Lsn = uint64_t;
constexpr Lsn kInvalidLsn = 0;

// Parses "16/B374D848" (upper or lower case hex, 1..8 digits each side).
// Returns nullopt for anything else, including surrounding spaces.
std::optional<Lsn> ParseLsn(std::string_view text);

// Formats as PostgreSQL does: upper-case hex, no leading zeros ("0/16B3748").
std::string FormatLsn(Lsn lsn);

}  // namespace pgslotd
