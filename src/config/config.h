// The daemon's configuration: a YAML file listing replication slots.
//
// LoadConfig() reads and validates a whole file and reports *every* problem it
// finds, each as "<file>:<line>: <key path>: <what is wrong>", so that an
// operator fixes them in one go. The key path is dotted with indexes for
// sequences, e.g. "slots[1].sink.path". Line numbers are 1-based. The schema
// (key, type, default) is the table kSchema in config.cc and docs/config.md.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "util/status.h"

namespace pgslotd {

using Duration = std::chrono::milliseconds;

enum class SinkType { kStdout, kFile, kPipe };
enum class OutputFormat { kRaw, kJson };

// When a file sink starts a new file (at a transaction boundary): the
// current one is renamed to <path>.1 (older ones move up to <path>.<keep>,
// the oldest beyond that is deleted).
struct RotateConfig {
  uint64_t size = 0;   // rotate once the file holds this many bytes; 0: never by size
  uint32_t keep = 10;  // rotated files kept
  Duration age{0};     // rotate a non-empty file this old; 0: never by age

  bool enabled() const { return size > 0 || age.count() > 0; }
  bool operator==(const RotateConfig& o) const {
    return size == o.size && keep == o.keep && age == o.age;
  }
};

struct SinkConfig {
  SinkType type = SinkType::kStdout;
  std::string path;      // absolute; empty for stdout
  uint32_t mode = 0600;  // file and pipe: permission bits used when created
  RotateConfig rotate;   // file only
};

// When to warn that a slot falls behind. Watched by the monitor over a side
// connection, not by the slot's stream.
struct LagAlarmConfig {
  // Alarm when the slot's lag stays above this many bytes for longer than
  // `seconds`.
  uint64_t bytes = 1ull << 30;
  // Also alarm when the oldest change not yet durable is older than this.
  Duration seconds{300000};
  // How often the warning is repeated while the alarm lasts.
  Duration repeat{600000};
  // Alarm when the server's safe_wal_size for the slot falls below this; 0
  // disables this check.
  uint64_t safe_wal_size = 2ull << 30;

  bool operator==(const LagAlarmConfig& o) const;  // all fields
  bool operator!=(const LagAlarmConfig& o) const { return !(*this == o); }
};

struct SlotConfig {
  std::string name;        // [a-z0-9_]{1,63}
  std::string connection;  // top-level conninfo merged with the slot's override
  std::string plugin;
  bool create = false;
  // Plugin options in file order (names and values as text).
  std::vector<std::pair<std::string, std::string>> options;
  OutputFormat format = OutputFormat::kRaw;
  bool include_transactions = false;  // json: begin/commit lines too
  SinkConfig sink;
  Duration status_interval{10000};
  Duration fsync_interval{1000};
  // While reading, how long the server may stay silent before the connection
  // is taken for dead (a ping is sent at half of it); 0: never.
  Duration receive_timeout{60000};
  // How long the sink may take nothing before the stream is ended (and the
  // slot paused until the sink takes bytes), so that a stuck reader never
  // leaves the server's walsender blocked on an unread socket; 0: never.
  Duration sink_stall_timeout{5000};
  uint64_t buffer_size = 8u << 20;  // bytes held in memory waiting for the sink
  int line = 0;                     // line of the slot's entry, for messages
  // The effective thresholds: the slot's own lag_alarm keys, else the
  // top-level ones, else the defaults.
  LagAlarmConfig lag_alarm;
  std::string state_directory;  // the top-level one, for this slot's files

  // Whether the two describe the same stream: on reload, a slot whose new
  // SlotConfig is not equal to the running one has its stream restarted.
  // Ignores `line`, and ignores `lag_alarm` on purpose: alarm thresholds do
  // not affect the stream, so changing them must not restart it.
  bool operator==(const SlotConfig& o) const;
  bool operator!=(const SlotConfig& o) const { return !(*this == o); }
};

struct Config {
  std::string path;  // the file it came from
  // Where pgslotd keeps its own files (its lock, spools of streamed
  // transactions, sink state): state_directory, else derived from the
  // config file's name (DefaultDirectory("/var/lib/pgslotd", instance)).
  // Also copied into each SlotConfig.
  std::string state_directory = "/var/lib/pgslotd";
  // Where the control socket lives (runtime_directory, else
  // DefaultDirectory("/run/pgslotd", instance)), and the socket itself.
  std::string runtime_directory = "/run/pgslotd";
  std::string control_socket = "/run/pgslotd/pgslotd.sock";
  std::string log_level = "info";
  // How often the server's pg_replication_slots and pg_current_wal_lsn() are
  // polled over a normal (non-replication) side connection.
  Duration monitor_interval{10000};
  std::string metrics_file;  // absolute and normalized; empty: no metrics written
  std::vector<SlotConfig> slots;
};

// One problem found in a config file.
struct ConfigError {
  std::string file;
  int line = 0;     // 1-based; 0 when the problem has no single place
  std::string key;  // e.g. "slots[0].sink.path"
  std::string message;
  std::string ToString() const;  // "<file>:<line>: <key>: <message>"
};

// The instance a config file stands for: its name without ".yaml" or
// ".yml" ("/etc/pgslotd/orders.yaml" -> "orders"). Every path an instance
// owns by default follows from it, so that a shell finds the same daemon
// that systemd started (pgslotd@orders.service reads orders.yaml).
std::string InstanceName(const std::string& config_path);
// `root` for the instance "pgslotd" (the default config,
// /etc/pgslotd/pgslotd.yaml), else `root`/<instance>.
std::string DefaultDirectory(const std::string& root, const std::string& instance);

// What LoadConfig checks beyond the file itself.
struct LoadOptions {
  // --check: look at the file system too. The directory of each file or
  // pipe sink and of metrics_file must exist (an error), as must
  // state_directory or its parent (pgslotd creates one level); one the user
  // running the check cannot write to is a warning (the daemon may run as
  // another user). At run time these are the slot's own errors instead.
  // Sinks, metrics_file and state records are also compared by where they
  // lead (real directory, device and inode), not only by their text.
  bool check_paths = false;
  // At start and with --check: warn (in `warnings`) when the config file,
  // or the directory of a file or pipe sink, may be written by every user
  // (S_IWOTH). Group write is a grant to chosen users, and not warned about.
  bool warn_world_writable = false;
};

// Loads and validates `path`. On failure `errors` holds at least one entry
// and the returned Config must not be used. `warnings`, if given, gets
// problems that do not stop the load (same form as errors).
bool LoadConfig(const std::string& path, Config* config, std::vector<ConfigError>* errors,
                const LoadOptions& options = LoadOptions(),
                std::vector<ConfigError>* warnings = nullptr);

// Merges two libpq conninfo strings (key=value or URI): keys of `override_`
// replace those of `base`. Returns the merged "key='value' ..." string, or an
// error message in *err.
bool MergeConninfo(const std::string& base, const std::string& override_, std::string* merged,
                   std::string* err);

}  // namespace pgslotd
