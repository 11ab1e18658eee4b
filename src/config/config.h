// The daemon's configuration: a YAML file listing replication slots.
//
// LoadConfig() reads and validates a whole file and reports *every* problem it
// finds, each as "<file>:<line>: <key path>: <what is wrong>", so that an
// operator fixes them in one go. The key path is dotted with indexes for
// sequences, e.g. "slots[1].sink.path". Line numbers are 1-based. The schema
// is the table kSchema in config.cc (and docs/config.md for operators): a row
// per key gives its type, its default, where it may appear, the field it
// fills and what a reload does when it changes. The structs below hold no
// default of their own: their constructors take every default from the rows,
// and their comparisons compare the fields the rows fill.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "util/status.h"

namespace pgslotd {

using Duration = std::chrono::milliseconds;

// The kinds of sink. Each is one row of kSinkKinds in config.cc (its name
// and what the loader checks of it) and one line of MakeSink's table in
// sink/sink.cc, both in this order; kCount is no kind, it counts them (both
// tables are checked against it when they compile).
enum class SinkType { kStdout, kFile, kPipe, kKafka, kCount };
constexpr size_t kSinkTypeCount = static_cast<size_t>(SinkType::kCount);
enum class OutputFormat { kRaw, kJson };
// When a slot reads the rows that exist already (docs/design-snapshots.md):
// never; at its start (and on request); only on request (pgslotd --snapshot).
enum class SnapshotMode { kNever, kInitial, kOnRequest };
// What a snapshot does with a table that has no primary key (nor a unique
// index over NOT NULL columns): fail it, or read it whole in one chunk.
enum class SnapshotKeyless { kRefuse, kReadWhole };
// What a kafka sink's records are keyed by.
enum class KafkaKey { kPrimaryKey, kNone };

// What a reload does when a key's value changed. Each asks more than the one
// before; a reload does what the most demanding changed key asks.
enum class Reload {
  kLive,            // applied at once; every slot keeps streaming
  kRestartsSlot,    // the slot's stream restarts (every slot's, for a key they inherit)
  kRestartsDaemon,  // the reload is refused: it takes a restart of pgslotd
};

// When a file sink starts a new file (at a transaction boundary): the
// current one is renamed to <path>.1 (older ones move up to <path>.<keep>,
// the oldest beyond that is deleted).
struct RotateConfig {
  RotateConfig();     // the schema's defaults
  uint64_t size = 0;  // rotate once the file holds this many bytes; 0: never by size
  uint32_t keep = 0;  // rotated files kept
  Duration age{0};    // rotate a non-empty file this old; 0: never by age

  bool enabled() const { return size > 0 || age.count() > 0; }
  bool operator==(const RotateConfig& o) const;  // every key
};

struct SinkConfig {
  SinkConfig();  // the schema's defaults
  SinkType type = SinkType::kStdout;
  std::string path;     // absolute; empty for a kind that takes no path (stdout)
  uint32_t mode = 0;    // permission bits used when created (file, pipe)
  RotateConfig rotate;  // for a kind that rotates (file)
  // kafka (see sink/kafka_sink.h and config/kafka_properties.h).
  std::string brokers;  // bootstrap.servers
  std::string topic;    // a template; empty: the format's default
  KafkaKey key{};
  bool exactly_once = false;
  std::vector<std::pair<std::string, std::string>> properties;  // librdkafka's, in file order
  std::string properties_file;                                  // absolute; empty: none
  std::string transactional_id;  // empty: derived from the server and slot
  std::string position_topic;    // exactly_once: where committed positions go
  // exactly_once: a Kafka transaction ends at the first PostgreSQL
  // transaction boundary past either bound, or fsync_interval after it began.
  uint64_t transaction_records = 0;
  uint64_t transaction_bytes = 0;
};

// When to warn that a slot falls behind. Watched by the monitor over a side
// connection, not by the slot's stream.
struct LagAlarmConfig {
  LagAlarmConfig();  // the schema's defaults
  // Alarm when the slot's lag stays above this many bytes for longer than
  // `seconds`.
  uint64_t bytes = 0;
  // Also alarm when the oldest change not yet durable is older than this.
  Duration seconds{0};
  // How often the warning is repeated while the alarm lasts.
  Duration repeat{0};
  // Alarm when the server's safe_wal_size for the slot falls below this; 0
  // disables this check.
  uint64_t safe_wal_size = 0;

  bool operator==(const LagAlarmConfig& o) const;  // every key
  bool operator!=(const LagAlarmConfig& o) const { return !(*this == o); }
};

struct SlotConfig {
  // The schema's defaults: those of a slot in a file that sets no optional
  // key, top-level ones included.
  SlotConfig();
  std::string name;        // [a-z0-9_]{1,63}
  std::string connection;  // top-level conninfo merged with the slot's override
  std::string plugin;
  bool create = false;
  // Plugin options in file order (names and values as text).
  std::vector<std::pair<std::string, std::string>> options;
  OutputFormat format{};
  bool include_transactions = false;  // json: begin/commit lines too
  // json: read every table of the publications when pgslotd creates the
  // slot, in chunks of snapshot_chunk_rows rows.
  SnapshotMode snapshot{};
  uint64_t snapshot_chunk_rows = 0;
  SnapshotKeyless snapshot_keyless{};
  SinkConfig sink;
  Duration status_interval{0};
  Duration fsync_interval{0};
  // While reading, how long the server may stay silent before the connection
  // is taken for dead (a ping is sent at half of it); 0: never.
  Duration receive_timeout{0};
  // How long the sink may take nothing before the stream is ended (and the
  // slot paused until the sink takes bytes), so that a stuck reader never
  // leaves the server's walsender blocked on an unread socket; 0: never.
  Duration sink_stall_timeout{0};
  uint64_t buffer_size = 0;  // bytes held in memory waiting for the sink
  int line = 0;              // line of the slot's entry, for messages
  // The effective thresholds: the slot's own lag_alarm keys, else the
  // top-level ones, else the defaults.
  LagAlarmConfig lag_alarm;
  std::string state_directory;  // the top-level one, for this slot's files

  // Whether the two describe the same stream: SlotReload(*this, o) is
  // Reload::kLive, i.e. every field a row with another policy fills is
  // equal. So `line` is ignored, and so is `lag_alarm` on purpose (its rows
  // are applied live): alarm thresholds do not affect the stream, so
  // changing them must not restart it. `state_directory` is the top level's,
  // whose change a reload refuses before any slot is compared.
  bool operator==(const SlotConfig& o) const;
  bool operator!=(const SlotConfig& o) const { return !(*this == o); }
};

struct Config {
  // The schema's defaults, with the directories of the instance "pgslotd".
  Config();
  std::string path;  // the file it came from
  // Where pgslotd keeps its own files (its lock, spools of streamed
  // transactions, sink state): state_directory, else derived from the
  // config file's name (DefaultDirectory("/var/lib/pgslotd", instance)).
  // Also copied into each SlotConfig.
  std::string state_directory;
  // Where the control socket lives (runtime_directory, else
  // DefaultDirectory("/run/pgslotd", instance)), and the socket itself.
  std::string runtime_directory;
  std::string control_socket;
  std::string log_level;
  // How often the server's pg_replication_slots and pg_current_wal_lsn() are
  // polled over a normal (non-replication) side connection.
  Duration monitor_interval{0};
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

// What a reload that turns the running `slot` into `fresh` does, from the
// rows whose fields differ: the most demanding of their policies, kLive when
// none differs.
Reload SlotReload(const SlotConfig& slot, const SlotConfig& fresh);

// Why `fresh` cannot replace the running `config` without a restart of
// pgslotd, e.g. "state_directory changed from /a to /b" (the first row with
// Reload::kRestartsDaemon whose value differs); "" when it can.
std::string DaemonRestartReason(const Config& config, const Config& fresh);

// A key that holds a value (not a map or a list), named as docs/config.md
// does ("lag_alarm.bytes"; a slot's as "slots[].sink.rotate.keep"), and what
// a reload does when it changes.
struct KeyReload {
  std::string key;
  Reload reload;
};
// Every such key, in the schema's order.
std::vector<KeyReload> ReloadPolicies();

// Merges two libpq conninfo strings (key=value or URI): keys of `override_`
// replace those of `base`. Returns the merged "key='value' ..." string, or an
// error message in *err.
bool MergeConninfo(const std::string& base, const std::string& override_, std::string* merged,
                   std::string* err);

}  // namespace pgslotd
