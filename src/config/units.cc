#include "config/units.h"

#include <iterator>
#include <limits>

namespace pgslotd {
namespace {

struct Unit {
  std::string_view suffix;
  uint64_t factor;
};

// In increasing order: FormatDuration walks them from the largest.
constexpr Unit kDurationUnits[] = {
    {"ms", 1}, {"s", 1000}, {"m", 60 * 1000}, {"h", 60 * 60 * 1000}, {"d", 24 * 60 * 60 * 1000},
};

constexpr uint64_t kKiB = 1024;
constexpr uint64_t kKB = 1000;
constexpr Unit kSizeUnits[] = {
    {"B", 1},
    {"kB", kKB},
    {"KB", kKB},
    {"MB", kKB* kKB},
    {"GB", kKB* kKB* kKB},
    {"TB", kKB* kKB* kKB* kKB},
    {"KiB", kKiB},
    {"MiB", kKiB* kKiB},
    {"GiB", kKiB* kKiB* kKiB},
    {"TiB", kKiB* kKiB* kKiB* kKiB},
};

// Splits "<digits><suffix>" and returns digits * factor of the suffix's unit,
// or nullopt if the text has another shape or the product exceeds `max`.
template <size_t N>
std::optional<uint64_t> ParseWithUnit(std::string_view text, const Unit (&units)[N], uint64_t max) {
  size_t digits = 0;
  while (digits < text.size() && text[digits] >= '0' && text[digits] <= '9') ++digits;
  if (digits == 0) return std::nullopt;
  std::string_view suffix = text.substr(digits);
  const Unit* unit = nullptr;
  for (const Unit& u : units) {
    if (u.suffix == suffix) unit = &u;
  }
  if (unit == nullptr) return std::nullopt;

  uint64_t number = 0;
  for (size_t i = 0; i < digits; ++i) {
    uint64_t digit = static_cast<uint64_t>(text[i] - '0');
    if (number > (max - digit) / 10) return std::nullopt;
    number = number * 10 + digit;
  }
  if (number != 0 && number > max / unit->factor) return std::nullopt;
  return number * unit->factor;
}

}  // namespace

std::optional<Duration> ParseDuration(std::string_view text) {
  if (text == "0") return Duration(0);
  auto max = static_cast<uint64_t>(std::numeric_limits<Duration::rep>::max());
  std::optional<uint64_t> ms = ParseWithUnit(text, kDurationUnits, max);
  if (!ms) return std::nullopt;
  return Duration(static_cast<Duration::rep>(*ms));
}

std::optional<uint64_t> ParseSize(std::string_view text) {
  return ParseWithUnit(text, kSizeUnits, std::numeric_limits<uint64_t>::max());
}

std::string FormatDuration(Duration d) {
  Duration::rep ms = d.count();
  if (ms == 0) return "0";
  // Largest unit first: the first one that divides exactly wins.
  for (auto it = std::rbegin(kDurationUnits); it != std::rend(kDurationUnits); ++it) {
    auto factor = static_cast<Duration::rep>(it->factor);
    if (ms % factor == 0) return std::to_string(ms / factor) + std::string(it->suffix);
  }
  return std::to_string(ms) + "ms";  // not reached: the factor of "ms" is 1
}

}  // namespace pgslotd
