// Durations ("500ms", "10s", "5m", "1h", "0") and sizes ("64MB", "1GiB").
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "config/config.h"

namespace pgslotd {

// The longest duration any key accepts: every timer and deadline of the
// daemon holds it (steady-clock nanoseconds overflow past about 292 years,
// and a status_interval of 106752d once made the worker spin).
inline constexpr Duration kMaxDuration{365LL * 24 * 60 * 60 * 1000};

// Accepts a non-negative integer followed by ms, s, m, h or d; "0" alone is
// accepted too. Returns nullopt otherwise: no sign, fraction, space or other
// unit, and nothing that overflows a Duration.
std::optional<Duration> ParseDuration(std::string_view text);

// Accepts a non-negative integer followed by B, kB/KB, MB, GB, TB (powers of
// 1000) or KiB, MiB, GiB, TiB (powers of 1024). Returns nullopt otherwise,
// also for a bare number and on overflow of uint64_t.
std::optional<uint64_t> ParseSize(std::string_view text);

// Prints `d` in the form ParseDuration accepts, using the largest unit that
// divides it exactly: 1500ms -> "1500ms", 10000ms -> "10s", 300000ms -> "5m",
// zero -> "0". A negative duration gets a leading "-" (which ParseDuration
// refuses).
std::string FormatDuration(Duration d);

}  // namespace pgslotd
