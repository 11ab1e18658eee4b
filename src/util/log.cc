#include "util/log.h"

#include <spdlog/sinks/stdout_sinks.h>
#include <spdlog/spdlog.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <string>

#ifdef PGSLOTD_HAVE_SYSTEMD
#define SD_JOURNAL_SUPPRESS_LOCATION
#include <systemd/sd-journal.h>
#endif

namespace pgslotd {

namespace {

std::atomic<LogTarget> g_target{LogTarget::kStderr};

bool ParseLevel(const std::string& level, Level* out) {
  static const std::pair<const char*, Level> kLevels[] = {
      {"trace", spdlog::level::trace}, {"debug", spdlog::level::debug},
      {"info", spdlog::level::info},   {"warning", spdlog::level::warn},
      {"warn", spdlog::level::warn},   {"error", spdlog::level::err},
  };
  for (const auto& [name, lvl] : kLevels) {
    if (level == name) {
      *out = lvl;
      return true;
    }
  }
  return false;
}

// syslog priorities, as journald wants them.
int Priority(Level level) {
  switch (level) {
    case spdlog::level::trace:
    case spdlog::level::debug:
      return 7;
    case spdlog::level::info:
      return 6;
    case spdlog::level::warn:
      return 4;
    case spdlog::level::err:
      return 3;
    case spdlog::level::critical:
      return 2;
    default:
      return 6;
  }
}

bool StderrIsJournal() {
  const char* js = std::getenv("JOURNAL_STREAM");
  if (!js) return false;
  unsigned long long dev = 0, ino = 0;
  if (std::sscanf(js, "%llu:%llu", &dev, &ino) != 2) return false;
  struct stat st;
  if (::fstat(STDERR_FILENO, &st) != 0) return false;
  return st.st_dev == dev && st.st_ino == ino;
}

// Appends `text` with every control character written as an escape, so
// that one entry is one line whatever a message holds (a server's error
// text with newlines cannot forge an entry of its own).
void AppendOneLine(std::string_view text, std::string* out) {
  static const char kHex[] = "0123456789abcdef";
  for (char ch : text) {
    auto c = static_cast<unsigned char>(ch);
    if (c >= 0x20 && c != 0x7f) {
      out->push_back(ch);
    } else if (c == '\n') {
      out->append("\\n");
    } else if (c == '\t') {
      out->append("\\t");
    } else {
      out->append("\\x");
      out->push_back(kHex[c >> 4]);
      out->push_back(kHex[c & 0xf]);
    }
  }
}

}  // namespace

bool ParseLogTarget(const std::string& name, LogTarget* target) {
  if (name == "stderr") {
    *target = LogTarget::kStderr;
  } else if (name == "journal") {
    *target = LogTarget::kJournal;
  } else if (name == "auto") {
    *target = StderrIsJournal() ? LogTarget::kJournal : LogTarget::kStderr;
  } else {
    return false;
  }
  return true;
}

bool SetupLogging(const std::string& level, LogTarget target) {
  Level lvl;
  if (!ParseLevel(level, &lvl)) return false;
#ifndef PGSLOTD_HAVE_SYSTEMD
  if (target == LogTarget::kJournal) return false;
#endif
  // The spdlog logger does the level filtering for both targets and the
  // formatting for stderr.
  auto logger = spdlog::get("pgslotd");
  if (!logger) logger = spdlog::stderr_logger_mt("pgslotd");
  logger->set_pattern("%Y-%m-%d %H:%M:%S.%e %l %v");
  logger->set_level(lvl);
  logger->flush_on(spdlog::level::trace);
  spdlog::set_default_logger(logger);
  g_target.store(target);
  return true;
}

bool SetLogLevel(const std::string& level) {
  Level lvl;
  if (!ParseLevel(level, &lvl)) return false;
  spdlog::default_logger()->set_level(lvl);
  return true;
}

bool LogEnabled(Level level) { return spdlog::default_logger_raw()->should_log(level); }

void Log(Level level, const LogEvent& event, const std::string& message) {
  auto logger = spdlog::default_logger();
  if (!logger->should_log(level)) return;
  std::string text;
  text.reserve(event.slot.size() + message.size() + 7);
  if (!event.slot.empty()) {
    text.append("slot ");
    AppendOneLine(event.slot, &text);
    text.append(": ");
  }
  AppendOneLine(message, &text);
#ifdef PGSLOTD_HAVE_SYSTEMD
  if (g_target.load(std::memory_order_relaxed) == LogTarget::kJournal) {
    std::vector<std::string> fields;
    fields.reserve(6 + event.fields.size());
    fields.push_back("MESSAGE=" + text);
    fields.push_back("PRIORITY=" +
                     std::to_string(event.priority >= 0 ? event.priority : Priority(level)));
    fields.push_back("SYSLOG_IDENTIFIER=pgslotd");
    if (!event.slot.empty()) fields.push_back("SLOT=" + std::string(event.slot));
    if (event.lsn != kInvalidLsn) fields.push_back("LSN=" + FormatLsn(event.lsn));
    if (event.message_id) fields.push_back(std::string("MESSAGE_ID=") + event.message_id);
    for (const auto& [name, value] : event.fields)
      fields.push_back(std::string(name) + "=" + value);
    std::vector<struct iovec> iov(fields.size());
    for (size_t i = 0; i < fields.size(); ++i) {
      iov[i].iov_base = fields[i].data();
      iov[i].iov_len = fields[i].size();
    }
    if (sd_journal_sendv(iov.data(), static_cast<int>(iov.size())) >= 0) return;
    // The journal is gone (shutdown of journald?): fall back to stderr.
  }
#endif
  logger->log(level, "{}", text);
}

}  // namespace pgslotd
