// Process-wide logging. Two targets:
//   stderr   human lines "2026-11-25 08:05:31.565 info slot orders: ...";
//            stdout stays reserved for stdout sinks;
//   journal  native journald entries (sd_journal_sendv) with structured
//            fields: PRIORITY, SYSLOG_IDENTIFIER=pgslotd, SLOT= on every
//            slot-related entry, LSN= where one is relevant, a stable
//            MESSAGE_ID= per operational event (below, and docs/operations.md),
//            plus event-specific fields (e.g. LAG_BYTES=).
// Every function here is thread-safe.
#pragma once

#include <spdlog/common.h>

#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "pg/lsn.h"

namespace pgslotd {

// Stable journal MESSAGE_IDs. Never change one: alerting rules match them.
namespace msgid {
inline constexpr const char* kSlotStarted = "28413dc260c94f45b29d18c604dcac3d";
inline constexpr const char* kConnected = "54778a238bff4c8cba57065f80d58595";
inline constexpr const char* kReconnecting = "3aa695be47f9409091ae94bf8039d490";
inline constexpr const char* kSlotInvalidated = "519446e6ab854d50b659fa0346e917cd";
inline constexpr const char* kLagAlarmRaised = "a44e67a5586c43aea8c2abee8df6e874";
inline constexpr const char* kLagAlarmCleared = "bc88bca8ba3a4c7387b432440874c1cc";
inline constexpr const char* kReloaded = "d102425209a8406e8bf2227f4b31ede1";
inline constexpr const char* kSlotFailed = "19680df105604d62a1c38ed1bdd88cb6";
inline constexpr const char* kSlotStopped = "36c2c29d876c43d29cecb8436f761718";
inline constexpr const char* kFatal = "cf7bc0b92f094ea3bb950d0e2930bfc6";
}  // namespace msgid

enum class LogTarget { kStderr, kJournal };

// "auto": the journal when stderr is the journal stream systemd gave us
// (JOURNAL_STREAM names stderr's device and inode), else stderr.
// Returns false for an unknown name.
bool ParseLogTarget(const std::string& name, LogTarget* target);

// Installs the process's logger. Returns false for an unknown level
// (trace, debug, info, warning, error) or a journal that is unavailable.
bool SetupLogging(const std::string& level, LogTarget target);
// Changes the level (reload).
bool SetLogLevel(const std::string& level);

using Level = spdlog::level::level_enum;

// What an entry is about, beyond its text.
struct LogEvent {
  std::string_view slot;                                    // empty: not about one slot
  Lsn lsn = kInvalidLsn;                                    // kInvalidLsn: none
  const char* message_id = nullptr;                         // one of msgid::, or none
  std::vector<std::pair<const char*, std::string>> fields;  // extra NAME=value
  int priority = -1;  // journal PRIORITY override (5 = notice); -1: from the level
};

// Whether entries of `level` are written at the current log level (cheap:
// callers use it to skip building a message).
bool LogEnabled(spdlog::level::level_enum level);

// Writes one entry. On stderr a slot entry reads "slot <name>: <message>".
void Log(Level level, const LogEvent& event, const std::string& message);

// Shorthands for entries about no slot.
inline void LogInfo(const std::string& m) { Log(spdlog::level::info, LogEvent{}, m); }
inline void LogWarn(const std::string& m) { Log(spdlog::level::warn, LogEvent{}, m); }
inline void LogError(const std::string& m) { Log(spdlog::level::err, LogEvent{}, m); }

}  // namespace pgslotd
