#include "config/config.h"

#include <fcntl.h>
#include <libpq-fe.h>
#include <sys/stat.h>
#include <unistd.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <set>
#include <type_traits>
#include <utility>
#include <variant>

#include "config/kafka_properties.h"
#include "config/units.h"
#include "util/path.h"

namespace pgslotd {
namespace {

// ---------------------------------------------------------------------------
// The schema, as data. Every key of every level is one row of kSchema: its
// type, its default, where it may appear, the field its value fills and
// what a reload does when it changes. The loader below reads a YAML map by
// looking its keys up here and fills the fields through the rows, the
// structs' constructors take their defaults from the rows, and their
// comparisons (so the reload decision) compare the fields the rows fill: a
// new key is a new row. docs/config.md describes the same keys for
// operators.

// kLagAlarm holds the keys of a lag_alarm map, which the top level and each
// slot may have. At the top level, an absent key takes its default; in a
// slot, it takes the top level's value (see Loader::ReadLagAlarm).
enum class Scope { kTop, kSlot, kSink, kRotate, kLagAlarm };

enum class Kind {
  kString,    // any scalar, taken as its text; no NUL byte
  kConninfo,  // a kString the loader merges (a slot's over the top level's)
  kPath,      // a kString the loader checks is absolute and normalizes
  kBool,      // true or false
  kDuration,  // see ParseDuration
  kSize,      // see ParseSize
  kCount,     // a whole number, 0 or more
  kChoice,    // one of the names in KeySpec::choices
  kMode,      // octal permission bits, at most 0777
  kOptions,   // a map of name -> scalar, kept in file order
  kList,      // a sequence, read by the caller (slots)
  kMap,       // a map, read by the caller (sink)
};

enum class Need {
  kOptional,   // when absent, default_text applies (no value if nullptr)
  kRequired,   // when absent, an error
  kInherited,  // when absent, the top-level key of the same name applies
};

struct Choice {
  const char* name;  // nullptr ends a list
  int value;
};

using Options = std::vector<std::pair<std::string, std::string>>;

// A converted value. monostate: absent, refused, or a kList/kMap node.
using Value = std::variant<std::monostate, std::string, bool, Duration, uint64_t, uint32_t,
                           const Choice*, Options>;

// A rule beyond the type; returns what is wrong, or "" when the value is fine.
using Check = std::string (*)(const Value&);

// The struct whose field a row fills: Config for a setting of the daemon
// itself; for a slot's key, the struct of the part its scope names. A
// top-level key that every slot inherits fills the slot's field.
enum class Target { kNone, kConfig, kSlot, kSink, kRotate, kLagAlarm };

template <typename Owner>
constexpr Target kTargetOf = Target::kNone;
template <>
constexpr Target kTargetOf<Config> = Target::kConfig;
template <>
constexpr Target kTargetOf<SlotConfig> = Target::kSlot;
template <>
constexpr Target kTargetOf<SinkConfig> = Target::kSink;
template <>
constexpr Target kTargetOf<RotateConfig> = Target::kRotate;
template <>
constexpr Target kTargetOf<LagAlarmConfig> = Target::kLagAlarm;

// The field a row fills, in a struct of kind `target`: `set` writes a
// converted value into it (a value of another type leaves it alone),
// `same` compares it in two structs, `text` prints it (Config's only, for
// the reload messages). All nullptr for a map or a list.
struct Binding {
  Target target = Target::kNone;
  void (*set)(void* owner, const Value& value) = nullptr;
  bool (*same)(const void* a, const void* b) = nullptr;
  std::string (*text)(const void* owner) = nullptr;
};

void Assign(const Value& value, std::string* out) {
  if (const auto* text = std::get_if<std::string>(&value)) *out = *text;
  if (const auto* choice = std::get_if<const Choice*>(&value)) *out = (*choice)->name;
}

template <typename T>
void Assign(const Value& value, T* out) {
  if constexpr (std::is_enum_v<T>) {
    if (const auto* choice = std::get_if<const Choice*>(&value)) {
      *out = static_cast<T>((*choice)->value);
    }
  } else if constexpr (std::is_same_v<T, uint32_t>) {
    // A kMode, or a kCount its check keeps small.
    if (const auto* n = std::get_if<uint32_t>(&value)) *out = *n;
    if (const auto* n = std::get_if<uint64_t>(&value)) *out = static_cast<uint32_t>(*n);
  } else if (const T* v = std::get_if<T>(&value)) {
    *out = *v;
  }
}

std::string Text(const std::string& value) { return value; }
std::string Text(Duration value) { return FormatDuration(value); }

template <typename Member>
struct MemberOf;
template <typename T, typename O>
struct MemberOf<T O::*> {
  using Owner = O;
};

// The Binding of the data member `kMember` (e.g. &SlotConfig::plugin).
template <auto kMember>
constexpr Binding Bind() {
  using Owner = typename MemberOf<decltype(kMember)>::Owner;
  static_assert(kTargetOf<Owner> != Target::kNone, "a row fills a field of a config struct");
  Binding b;
  b.target = kTargetOf<Owner>;
  b.set = [](void* owner, const Value& value) {
    Assign(value, &(static_cast<Owner*>(owner)->*kMember));
  };
  b.same = [](const void* x, const void* y) {
    return static_cast<const Owner*>(x)->*kMember == static_cast<const Owner*>(y)->*kMember;
  };
  if constexpr (std::is_same_v<Owner, Config>) {
    b.text = [](const void* owner) { return Text(static_cast<const Config*>(owner)->*kMember); };
  }
  return b;
}

constexpr Binding kNoField{};  // a map or a list: its rows fill the fields

struct KeySpec {
  Scope scope;
  const char* name;
  Kind kind;
  Need need;
  const char* default_text;  // kOptional: read as if it were written in the file
  const Choice* choices;     // kChoice only
  Check check;               // nullptr: the type is the only rule
  Reload reload;             // what a reload does when the value changes
  Binding field;             // the field the value fills
  const char* description;
};

// The names a kChoice key accepts. A new output format is one more row here
// (and its enumerator in config.h); a new sink type is a row of kSinkKinds.
constexpr Choice kLogLevels[] = {
    {"trace", 0}, {"debug", 0}, {"info", 0}, {"warning", 0}, {"error", 0}, {nullptr, 0},
};
constexpr Choice kKafkaKeys[] = {
    {"primary_key", static_cast<int>(KafkaKey::kPrimaryKey)},
    {"none", static_cast<int>(KafkaKey::kNone)},
    {nullptr, 0},
};
constexpr Choice kFormats[] = {
    {"raw", static_cast<int>(OutputFormat::kRaw)},
    {"json", static_cast<int>(OutputFormat::kJson)},
    {nullptr, 0},
};

constexpr Choice kSnapshotKeyless[] = {
    {"refuse", static_cast<int>(SnapshotKeyless::kRefuse)},
    {"read_whole", static_cast<int>(SnapshotKeyless::kReadWhole)},
    {nullptr, 0},
};

constexpr Choice kSnapshotModes[] = {
    {"never", static_cast<int>(SnapshotMode::kNever)},
    {"initial", static_cast<int>(SnapshotMode::kInitial)},
    {"on_request", static_cast<int>(SnapshotMode::kOnRequest)},
    {nullptr, 0},
};

// A kind of sink as the loader sees it. Every check that depends on the
// kind is derived from these fields; none names a kind.
struct SinkKind {
  SinkType type;     // the row's identity: rows follow SinkType's order
  const char* name;  // the value of sink.type
  // The keys of the sink map it takes besides `type`; every other one is
  // refused (see SinkKeyRefusal). With "path" the path is required, without
  // it refused; with "rotate" the sink may rotate.
  std::array<const char*, 12> keys;
  const char* required;  // a key it needs besides type (and path), or nullptr
  // Checks what the schema's types cannot (nullptr: none): returns what is
  // wrong and sets *key to the sink key it concerns.
  std::string (*check)(const SlotConfig& slot, bool check_paths, const char** key);
  bool one_slot;      // at most one slot may use it
  bool unique_path;   // no other sink, metrics_file or state record may be its file
  bool exactly_once;  // keeps a state record, <state_directory>/<slot>.state
};

// clang-format off
constexpr SinkKind kSinkKinds[] = {
  // type, name, keys, required, check,
  //   one_slot, unique_path, exactly_once
  {SinkType::kStdout, "stdout", {}, nullptr, nullptr,
   true, false, false},
  {SinkType::kFile, "file", {"path", "mode", "rotate"}, nullptr, nullptr,
   false, true, true},
  {SinkType::kPipe, "pipe", {"path", "mode"}, nullptr, nullptr,
   false, true, false},
  {SinkType::kKafka, "kafka", {"brokers", "topic", "key", "exactly_once", "properties",
                               "properties_file", "transactional_id", "position_topic",
                               "transaction_records", "transaction_bytes"},
   "brokers", CheckKafkaSink,
   false, false, false},
};
// clang-format on
static_assert(std::size(kSinkKinds) == kSinkTypeCount,
              "kSinkKinds needs one row for each SinkType (before kCount)");

constexpr bool SameText(const char* a, const char* b) {
  while (*a != '\0' && *a == *b) ++a, ++b;
  return *a == *b;
}

// Whether the sink map of a `kind` sink may hold `key`.
constexpr bool Takes(const SinkKind& kind, const char* key) {
  if (SameText(key, "type")) return true;
  for (const char* k : kind.keys) {
    if (k != nullptr && SameText(k, key)) return true;
  }
  return false;
}

const SinkKind& KindOf(SinkType type) { return kSinkKinds[static_cast<size_t>(type)]; }

// The sink.type choices: the rows' names, in the rows' order.
constexpr std::array<Choice, kSinkTypeCount + 1> SinkTypeChoices() {
  std::array<Choice, kSinkTypeCount + 1> choices{};
  for (size_t i = 0; i < kSinkTypeCount; ++i) {
    choices[i] = Choice{kSinkKinds[i].name, static_cast<int>(kSinkKinds[i].type)};
  }
  choices[kSinkTypeCount] = Choice{nullptr, 0};
  return choices;
}
constexpr std::array<Choice, kSinkTypeCount + 1> kSinkTypes = SinkTypeChoices();

constexpr uint64_t kMinBufferSize = 64 * 1024;
constexpr size_t kMaxSlotNameLength = 63;  // PostgreSQL's NAMEDATALEN - 1
constexpr size_t kMaxIdentifierLength = 63;
constexpr char kControlSocketName[] = "pgslotd.sock";
// Where an instance's directories are unless the file names them (see
// DefaultDirectory).
constexpr char kStateRoot[] = "/var/lib/pgslotd";
constexpr char kRuntimeRoot[] = "/run/pgslotd";
constexpr size_t kMaxSocketPath = 107;  // sockaddr_un's sun_path, NUL included

std::string ControlSocketIn(const std::string& runtime_directory) {
  return runtime_directory + "/" + kControlSocketName;
}

// `text` in double quotes, control characters escaped and long text cut, so
// that a message stays on one line whatever the file holds.
std::string Quote(const std::string& text) {
  constexpr size_t kMaxShown = 64;
  static const char kHex[] = "0123456789abcdef";
  std::string out = "\"";
  for (size_t i = 0; i < text.size() && i < kMaxShown; ++i) {
    auto c = static_cast<unsigned char>(text[i]);
    if (c == '"' || c == '\\') {
      out += '\\';
      out += static_cast<char>(c);
    } else if (c < 0x20 || c == 0x7f) {
      out += "\\x";
      out += kHex[c >> 4];
      out += kHex[c & 0xf];
    } else {
      out += static_cast<char>(c);
    }
  }
  if (text.size() > kMaxShown) out += "...";
  return out + "\"";
}

std::string CheckPositive(const Value& v) {
  return std::get<Duration>(v).count() > 0 ? "" : "must be greater than 0";
}

std::string CheckPositiveSize(const Value& v) {
  return std::get<uint64_t>(v) > 0 ? "" : "must be greater than 0";
}

std::string CheckBufferSize(const Value& v) {
  return std::get<uint64_t>(v) >= kMinBufferSize ? "" : "must be at least 64KiB (65536 bytes)";
}

std::string CheckNotEmpty(const Value& v) {
  return std::get<std::string>(v).empty() ? "must not be empty" : "";
}

std::string CheckKeep(const Value& v) {
  uint64_t n = std::get<uint64_t>(v);
  return n >= 1 && n <= 1000 ? "" : "must be from 1 to 1000";
}

// Option and plugin names travel as quoted identifiers in the replication
// commands. The grammar of those commands takes any bytes but a double
// quote inside one (PostgreSQL 15 up to 15.18 at least answers "syntax
// error" to a doubled one), and the server cuts an identifier at 63 bytes
// (NAMEDATALEN - 1), so a longer name would reach the plugin as another.
std::string IdentifierProblem(const std::string& name, const char* what) {
  if (name.find('"') != std::string::npos) {
    return std::string(what) + " " + Quote(name) +
           " contains a double quote, which the server's replication command grammar does not "
           "accept in a name";
  }
  if (name.size() > kMaxIdentifierLength) {
    return std::string(what) + " " + Quote(name) + " is " + std::to_string(name.size()) +
           " bytes long; the server cuts names at 63 bytes, so it would see another name";
  }
  return "";
}

std::string CheckPluginName(const Value& v) {
  const std::string& name = std::get<std::string>(v);
  if (name.empty()) return "must not be empty";
  return IdentifierProblem(name, "plugin name");
}

std::string CheckSlotName(const Value& v) {
  const std::string& name = std::get<std::string>(v);
  bool ok = !name.empty() && name.size() <= kMaxSlotNameLength;
  for (char c : name) {
    ok = ok && ((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_');
  }
  if (ok) return "";
  return "invalid slot name " + Quote(name) + ": use 1 to 63 characters from a-z, 0-9 and _";
}

// clang-format off
constexpr KeySpec kSchema[] = {
  // scope, name, kind, need, default, choices,
  //   check, reload, field,
  //   description
  {Scope::kTop,  "connection",      Kind::kConninfo, Need::kOptional,  "",      nullptr,
   nullptr, Reload::kRestartsSlot, Bind<&SlotConfig::connection>(),
   "libpq connection string (key=value or URI) shared by every slot"},
  {Scope::kTop,  "status_interval", Kind::kDuration, Need::kOptional,  "10s",   nullptr,
   CheckPositive, Reload::kRestartsSlot, Bind<&SlotConfig::status_interval>(),
   "longest time between two standby status updates to the server"},
  {Scope::kTop,  "fsync_interval",  Kind::kDuration, Need::kOptional,  "1s",    nullptr,
   nullptr, Reload::kRestartsSlot, Bind<&SlotConfig::fsync_interval>(),
   "longest time written data waits for its sync; 0 syncs every batch"},
  {Scope::kTop,  "sink_stall_timeout", Kind::kDuration, Need::kOptional, "5s", nullptr,
   nullptr, Reload::kRestartsSlot, Bind<&SlotConfig::sink_stall_timeout>(),
   "how long a sink may take nothing before the stream pauses; 0: never"},
  {Scope::kTop,  "receive_timeout", Kind::kDuration, Need::kOptional,  "60s",   nullptr,
   nullptr, Reload::kRestartsSlot, Bind<&SlotConfig::receive_timeout>(),
   "how long the server may stay silent before the connection is taken for dead; 0: never"},
  {Scope::kTop,  "buffer_size",     Kind::kSize,     Need::kOptional,  "8MiB",  nullptr,
   CheckBufferSize, Reload::kRestartsSlot, Bind<&SlotConfig::buffer_size>(),
   "bytes a slot holds in memory waiting for its sink"},
  {Scope::kTop,  "log_level",       Kind::kChoice,   Need::kOptional,  "info",  kLogLevels,
   nullptr, Reload::kLive, Bind<&Config::log_level>(),
   "least severe message that is logged"},
  {Scope::kTop,  "monitor_interval", Kind::kDuration, Need::kOptional, "10s",   nullptr,
   CheckPositive, Reload::kLive, Bind<&Config::monitor_interval>(),
   "how often the server's slots and WAL position are polled"},
  {Scope::kTop,  "state_directory", Kind::kPath,     Need::kOptional,  nullptr, nullptr,
   nullptr, Reload::kRestartsDaemon, Bind<&Config::state_directory>(),
   "directory for pgslotd's own files (and its lock); default from the config file's name"},
  {Scope::kTop,  "runtime_directory", Kind::kPath,   Need::kOptional,  nullptr, nullptr,
   nullptr, Reload::kRestartsDaemon, Bind<&Config::runtime_directory>(),
   "directory of the control socket; default from the config file's name"},
  {Scope::kTop,  "metrics_file",    Kind::kPath,     Need::kOptional,  nullptr, nullptr,
   nullptr, Reload::kLive, Bind<&Config::metrics_file>(),
   "absolute path of the metrics file; none when absent"},
  {Scope::kTop,  "lag_alarm",       Kind::kMap,      Need::kOptional,  nullptr, nullptr,
   nullptr, Reload::kLive, kNoField,
   "when to warn that a slot falls behind, for every slot"},
  {Scope::kTop,  "slots",           Kind::kList,     Need::kRequired,  nullptr, nullptr,
   nullptr, Reload::kRestartsSlot, kNoField,
   "the replication slots to stream, at least one (one added or removed starts or stops)"},

  {Scope::kSlot, "name",            Kind::kString,   Need::kRequired,  nullptr, nullptr,
   CheckSlotName, Reload::kRestartsSlot, Bind<&SlotConfig::name>(),
   "the replication slot's name on the server"},
  {Scope::kSlot, "connection",      Kind::kConninfo, Need::kOptional,  "",      nullptr,
   nullptr, Reload::kRestartsSlot, Bind<&SlotConfig::connection>(),
   "connection keys of this slot, merged over the top-level connection"},
  {Scope::kSlot, "plugin",          Kind::kString,   Need::kRequired,  nullptr, nullptr,
   CheckPluginName, Reload::kRestartsSlot, Bind<&SlotConfig::plugin>(),
   "logical decoding output plugin"},
  {Scope::kSlot, "create",          Kind::kBool,     Need::kOptional,  "false", nullptr,
   nullptr, Reload::kRestartsSlot, Bind<&SlotConfig::create>(),
   "create the slot when it does not exist"},
  {Scope::kSlot, "options",         Kind::kOptions,  Need::kOptional,  nullptr, nullptr,
   nullptr, Reload::kRestartsSlot, Bind<&SlotConfig::options>(),
   "plugin options, sent in file order"},
  {Scope::kSlot, "include_transactions", Kind::kBool, Need::kOptional, "false", nullptr,
   nullptr, Reload::kRestartsSlot, Bind<&SlotConfig::include_transactions>(),
   "format json: write begin and commit lines too"},
  {Scope::kSlot, "format",          Kind::kChoice,   Need::kOptional,  "raw",   kFormats,
   nullptr, Reload::kRestartsSlot, Bind<&SlotConfig::format>(),
   "how changes are written to the sink"},
  {Scope::kSlot, "snapshot",        Kind::kChoice,   Need::kOptional,  "never", kSnapshotModes,
   nullptr, Reload::kRestartsSlot, Bind<&SlotConfig::snapshot>(),
   "format json: initial reads every table of the publications at the slot's first start; "
   "initial and on_request read tables again on request (pgslotd --snapshot)"},
  {Scope::kSlot, "snapshot_chunk_rows", Kind::kCount, Need::kOptional, "10000", nullptr,
   CheckPositiveSize, Reload::kRestartsSlot, Bind<&SlotConfig::snapshot_chunk_rows>(),
   "rows a snapshot reads in one chunk (one short transaction)"},
  {Scope::kSlot, "snapshot_keyless", Kind::kChoice, Need::kOptional, "refuse", kSnapshotKeyless,
   nullptr, Reload::kRestartsSlot, Bind<&SlotConfig::snapshot_keyless>(),
   "a table without a key: refuse it (a failed line), or read_whole it in one chunk"},
  {Scope::kSlot, "sink",            Kind::kMap,      Need::kRequired,  nullptr, nullptr,
   nullptr, Reload::kRestartsSlot, kNoField,
   "where changes go"},
  {Scope::kSlot, "status_interval", Kind::kDuration, Need::kInherited, nullptr, nullptr,
   CheckPositive, Reload::kRestartsSlot, Bind<&SlotConfig::status_interval>(),
   "overrides the top-level status_interval"},
  {Scope::kSlot, "fsync_interval",  Kind::kDuration, Need::kInherited, nullptr, nullptr,
   nullptr, Reload::kRestartsSlot, Bind<&SlotConfig::fsync_interval>(),
   "overrides the top-level fsync_interval"},
  {Scope::kSlot, "receive_timeout", Kind::kDuration, Need::kInherited, nullptr, nullptr,
   nullptr, Reload::kRestartsSlot, Bind<&SlotConfig::receive_timeout>(),
   "overrides the top-level receive_timeout"},
  {Scope::kSlot, "sink_stall_timeout", Kind::kDuration, Need::kInherited, nullptr, nullptr,
   nullptr, Reload::kRestartsSlot, Bind<&SlotConfig::sink_stall_timeout>(),
   "overrides the top-level sink_stall_timeout"},
  {Scope::kSlot, "buffer_size",     Kind::kSize,     Need::kInherited, nullptr, nullptr,
   CheckBufferSize, Reload::kRestartsSlot, Bind<&SlotConfig::buffer_size>(),
   "overrides the top-level buffer_size"},
  {Scope::kSlot, "lag_alarm",       Kind::kMap,      Need::kInherited, nullptr, nullptr,
   nullptr, Reload::kLive, kNoField,
   "overrides the top-level lag_alarm keys, each on its own"},

  {Scope::kSink, "type",            Kind::kChoice,   Need::kRequired,  nullptr, kSinkTypes.data(),
   nullptr, Reload::kRestartsSlot, Bind<&SinkConfig::type>(),
   "the kind of sink: the name of a row of kSinkKinds"},
  {Scope::kSink, "path",            Kind::kPath,     Need::kOptional,  nullptr, nullptr,
   nullptr, Reload::kRestartsSlot, Bind<&SinkConfig::path>(),
   "absolute path of the sink; required for a kind that takes it, refused for the others"},
  {Scope::kSink, "mode",            Kind::kMode,     Need::kOptional,  "0600",  nullptr,
   nullptr, Reload::kRestartsSlot, Bind<&SinkConfig::mode>(),
   "permission bits of a file or FIFO that pgslotd creates"},
  {Scope::kSink, "rotate",          Kind::kMap,      Need::kOptional,  nullptr, nullptr,
   nullptr, Reload::kRestartsSlot, kNoField,
   "a kind that rotates (file): start a new file by size or age, at a transaction boundary"},
  {Scope::kSink, "brokers",         Kind::kString,   Need::kOptional,  nullptr, nullptr,
   CheckNotEmpty, Reload::kRestartsSlot, Bind<&SinkConfig::brokers>(),
   "kafka: the bootstrap servers, host:port[,host:port...]; required"},
  {Scope::kSink, "topic",           Kind::kString,   Need::kOptional,  "",      nullptr,
   nullptr, Reload::kRestartsSlot, Bind<&SinkConfig::topic>(),
   "kafka: the topic template ({slot}, {schema}, {table}); default {slot}, json {slot}.{schema}.{table}"},
  {Scope::kSink, "key",             Kind::kChoice,   Need::kOptional,  "primary_key", kKafkaKeys,
   nullptr, Reload::kRestartsSlot, Bind<&SinkConfig::key>(),
   "kafka: primary_key (json: records keyed by the table's primary key) or none"},
  {Scope::kSink, "exactly_once",    Kind::kBool,     Need::kOptional,  "true",  nullptr,
   nullptr, Reload::kRestartsSlot, Bind<&SinkConfig::exactly_once>(),
   "kafka: Kafka transactions, each committed transaction exactly once"},
  {Scope::kSink, "properties",      Kind::kOptions,  Need::kOptional,  nullptr, nullptr,
   nullptr, Reload::kRestartsSlot, Bind<&SinkConfig::properties>(),
   "kafka: librdkafka settings, passed through"},
  {Scope::kSink, "properties_file", Kind::kPath,     Need::kOptional,  nullptr, nullptr,
   nullptr, Reload::kRestartsSlot, Bind<&SinkConfig::properties_file>(),
   "kafka: a file of librdkafka settings (key=value lines) for secrets; mode 0600"},
  {Scope::kSink, "transactional_id", Kind::kString,  Need::kOptional,  "",      nullptr,
   nullptr, Reload::kRestartsSlot, Bind<&SinkConfig::transactional_id>(),
   "kafka: the transactional.id; default pgslotd-<system identifier>-<slot>"},
  {Scope::kSink, "position_topic",  Kind::kString,   Need::kOptional,  "pgslotd_positions", nullptr,
   CheckNotEmpty, Reload::kRestartsSlot, Bind<&SinkConfig::position_topic>(),
   "kafka with exactly_once: the topic of pgslotd's committed positions (compacted)"},
  {Scope::kSink, "transaction_records", Kind::kCount, Need::kOptional, "10000", nullptr,
   CheckPositiveSize, Reload::kRestartsSlot, Bind<&SinkConfig::transaction_records>(),
   "kafka with exactly_once: a Kafka transaction ends after this many records"},
  {Scope::kSink, "transaction_bytes", Kind::kSize,   Need::kOptional,  "16MiB", nullptr,
   CheckPositiveSize, Reload::kRestartsSlot, Bind<&SinkConfig::transaction_bytes>(),
   "kafka with exactly_once: a Kafka transaction ends after this many bytes of values"},

  {Scope::kRotate, "size",          Kind::kSize,     Need::kOptional,  nullptr, nullptr,
   CheckPositiveSize, Reload::kRestartsSlot, Bind<&RotateConfig::size>(),
   "rotate once the file holds this many bytes"},
  {Scope::kRotate, "keep",          Kind::kCount,    Need::kOptional,  "10",    nullptr,
   CheckKeep, Reload::kRestartsSlot, Bind<&RotateConfig::keep>(),
   "how many rotated files are kept (<path>.1 is the newest)"},
  {Scope::kRotate, "age",           Kind::kDuration, Need::kOptional,  nullptr, nullptr,
   CheckPositive, Reload::kRestartsSlot, Bind<&RotateConfig::age>(),
   "rotate a non-empty file once it is this old"},

  // Live: the supervisor's alarms read the running config every second.
  {Scope::kLagAlarm, "bytes",       Kind::kSize,     Need::kOptional,  "1GiB",  nullptr,
   CheckPositiveSize, Reload::kLive, Bind<&LagAlarmConfig::bytes>(),
   "alarm when the lag stays above this many bytes for `seconds`"},
  {Scope::kLagAlarm, "seconds",     Kind::kDuration, Need::kOptional,  "5m",    nullptr,
   CheckPositive, Reload::kLive, Bind<&LagAlarmConfig::seconds>(),
   "... and when the oldest change not yet durable is older than this"},
  {Scope::kLagAlarm, "repeat",      Kind::kDuration, Need::kOptional,  "10m",   nullptr,
   CheckPositive, Reload::kLive, Bind<&LagAlarmConfig::repeat>(),
   "how often the warning is repeated while the alarm lasts"},
  {Scope::kLagAlarm, "safe_wal_size", Kind::kSize,   Need::kOptional,  "2GiB",  nullptr,
   nullptr, Reload::kLive, Bind<&LagAlarmConfig::safe_wal_size>(),
   "alarm when the slot's safe_wal_size falls below this; 0 disables"},
};
// clang-format on

// Whether every row fills a field of the struct its scope stands for (a
// top-level key: Config's, or the SlotConfig's of every slot that inherits
// it), and only maps and lists fill none.
constexpr bool RowsFitTheirScopes() {
  constexpr Target kScopeTarget[] = {Target::kSlot, Target::kSlot, Target::kSink, Target::kRotate,
                                     Target::kLagAlarm};
  for (const KeySpec& spec : kSchema) {
    Target t = spec.field.target;
    bool container = spec.kind == Kind::kMap || spec.kind == Kind::kList;
    bool fits = t == kScopeTarget[static_cast<int>(spec.scope)] ||
                (spec.scope == Scope::kTop && t == Target::kConfig);
    if (container ? t != Target::kNone : !fits) return false;
  }
  return true;
}
static_assert(RowsFitTheirScopes(), "a row of kSchema fills a field outside its scope");

// Whether `key` is a key of the sink map other than `type`.
constexpr bool IsSinkKey(const char* key) {
  for (const KeySpec& spec : kSchema) {
    if (spec.scope == Scope::kSink && SameText(spec.name, key)) return !SameText(key, "type");
  }
  return false;
}

// Whether kSinkKinds has a row for each SinkType, in its order, each with a
// name of its own and taking only keys of the sink map, and whether a kind
// whose path must be unique has one.
constexpr bool SinkKindsAreWellFormed() {
  for (size_t i = 0; i < kSinkTypeCount; ++i) {
    const SinkKind& kind = kSinkKinds[i];
    if (static_cast<size_t>(kind.type) != i) return false;
    for (size_t j = 0; j < i; ++j) {
      if (SameText(kSinkKinds[j].name, kind.name)) return false;
    }
    for (const char* key : kind.keys) {
      if (key != nullptr && !IsSinkKey(key)) return false;
    }
    if (kind.unique_path && !Takes(kind, "path")) return false;
  }
  return true;
}
static_assert(SinkKindsAreWellFormed(), "a row of kSinkKinds is out of order or takes a bad key");

// How docs/config.md names the keys of `scope`: the part before the key's
// own name, for each place the scope's map may appear (nullptr: no more).
std::array<const char*, 2> KeyPrefixes(Scope scope) {
  switch (scope) {
    case Scope::kTop:
      return {"", nullptr};
    case Scope::kSlot:
      return {"slots[].", nullptr};
    case Scope::kSink:
      return {"slots[].sink.", nullptr};
    case Scope::kRotate:
      return {"slots[].sink.rotate.", nullptr};
    case Scope::kLagAlarm:
      return {"lag_alarm.", "slots[].lag_alarm."};
  }
  return {nullptr, nullptr};
}

// ---------------------------------------------------------------------------
// Text helpers.

int LineOf(const YAML::Node& node) {
  int line = node.Mark().line;
  return line >= 0 ? line + 1 : 0;
}

std::string Join(const std::string& path, const std::string& key) {
  return path.empty() ? key : path + "." + key;
}

std::string Describe(const YAML::Node& node) {
  switch (node.Type()) {
    case YAML::NodeType::Scalar:
      return Quote(node.Scalar());
    case YAML::NodeType::Sequence:
      return "a list";
    case YAML::NodeType::Map:
      return "a map";
    default:
      return "no value";
  }
}

std::string ChoiceNames(const Choice* choices) {
  std::string out;
  for (const Choice* c = choices; c->name != nullptr; ++c) {
    if (!out.empty()) out += ", ";
    out += c->name;
  }
  return out;
}

std::string Expected(const KeySpec& spec) {
  switch (spec.kind) {
    case Kind::kString:
    case Kind::kConninfo:
    case Kind::kPath:
      return "a string";
    case Kind::kBool:
      return "true or false";
    case Kind::kDuration:
      return "a duration such as 500ms, 10s, 5m, 1h, 1d or 0";
    case Kind::kSize:
      return "a size such as 64KiB, 8MiB or 1GB";
    case Kind::kCount:
      return "a whole number";
    case Kind::kChoice:
      return "one of " + ChoiceNames(spec.choices);
    case Kind::kMode:
      return "an octal mode such as \"0640\"";
    case Kind::kOptions:
      return "a map of option names to values";
    case Kind::kList:
      return "a list";
    case Kind::kMap:
      return "a map";
  }
  return "";
}

std::optional<uint32_t> ParseMode(const std::string& text) {
  if (text.empty()) return std::nullopt;
  uint32_t mode = 0;
  for (char c : text) {
    if (c < '0' || c > '7') return std::nullopt;
    mode = mode * 8 + static_cast<uint32_t>(c - '0');
    if (mode > 0777) return std::nullopt;
  }
  return mode;
}

std::optional<bool> ParseBool(const std::string& text) {
  if (text == "true" || text == "True" || text == "TRUE") return true;
  if (text == "false" || text == "False" || text == "FALSE") return false;
  return std::nullopt;
}

// Converts the text of a scalar (from the file or a default) to the key's
// type. Returns false with *err set when the text is not a valid value.
bool Convert(const KeySpec& spec, const std::string& text, Value* out, std::string* err) {
  switch (spec.kind) {
    case Kind::kString:
    case Kind::kConninfo:
    case Kind::kPath:
      if (text.find('\0') != std::string::npos) {
        *err = "must not contain a NUL byte";
        return false;
      }
      *out = text;
      return true;
    case Kind::kBool:
      if (auto b = ParseBool(text)) {
        *out = *b;
        return true;
      }
      *err = "invalid value " + Quote(text) + ": expected true or false";
      return false;
    case Kind::kDuration:
      if (auto d = ParseDuration(text); d && *d > kMaxDuration) {
        *err = "invalid duration " + Quote(text) + ": longer than " + FormatDuration(kMaxDuration) +
               ", the longest pgslotd accepts";
        return false;
      } else if (d) {
        *out = *d;
        return true;
      }
      *err = "invalid duration " + Quote(text) +
             ": expected a whole number followed by ms, s, m, h or d (e.g. 500ms, 10s, 5m, 1h, "
             "1d), or 0";
      return false;
    case Kind::kSize:
      if (auto s = ParseSize(text)) {
        *out = *s;
        return true;
      }
      *err = "invalid size " + Quote(text) +
             ": expected a whole number followed by B, kB, MB, GB, TB (powers of 1000) or KiB, "
             "MiB, GiB, TiB (powers of 1024), e.g. 64KiB or 8MiB";
      return false;
    case Kind::kCount: {
      uint64_t n = 0;
      bool ok = !text.empty() && text.size() <= 9;
      for (char ch : text) {
        ok = ok && ch >= '0' && ch <= '9';
        if (ok) n = n * 10 + static_cast<uint64_t>(ch - '0');
      }
      if (ok) {
        *out = n;
        return true;
      }
      *err = "invalid value " + Quote(text) + ": expected a whole number such as 10";
      return false;
    }
    case Kind::kChoice:
      for (const Choice* c = spec.choices; c->name != nullptr; ++c) {
        if (text == c->name) {
          *out = c;
          return true;
        }
      }
      *err = "invalid value " + Quote(text) + ": expected one of " + ChoiceNames(spec.choices);
      return false;
    case Kind::kMode:
      if (auto m = ParseMode(text)) {
        *out = *m;
        return true;
      }
      *err = "invalid mode " + Quote(text) +
             ": expected octal permission bits from 0 to 0777, e.g. \"0640\" or \"640\"";
      return false;
    case Kind::kOptions:
    case Kind::kList:
    case Kind::kMap:
      break;
  }
  *err = "expected " + Expected(spec);
  return false;
}

// The value of one key of a map.
struct Field {
  Value value;      // monostate when absent, refused, or a kList/kMap
  YAML::Node node;  // as written; undefined when absent
  bool present = false;
  int line = 0;  // of the value; of the enclosing map when absent
};

// The keys of one map, read through kSchema.
struct Section {
  std::map<std::string, Field> fields;  // every key of the scope, present or not
  int line = 0;

  template <typename T>
  const T* Get(const std::string& name) const {
    auto it = fields.find(name);
    return it == fields.end() ? nullptr : std::get_if<T>(&it->second.value);
  }
  const Field& At(const std::string& name) const { return fields.at(name); }
};

// Writes the value of each key of `scope` given in the file (and valid)
// into the field its row binds in *owner. A kConninfo or kPath value is the
// loader's to assemble.
template <typename Owner>
void Fill(const Section& section, Scope scope, Owner* owner) {
  for (const KeySpec& spec : kSchema) {
    if (spec.scope != scope || spec.field.target != kTargetOf<Owner>) continue;
    if (spec.kind == Kind::kConninfo || spec.kind == Kind::kPath) continue;
    const Field& field = section.At(spec.name);
    if (field.present) spec.field.set(owner, field.value);
  }
}

// Sets every field of *owner that a row with a default binds to that
// default. (Each default is read as a file's text is, by Convert; a bad one
// is reported by every load, see Loader::ReadSection.)
template <typename Owner>
void ApplyDefaults(Owner* owner) {
  for (const KeySpec& spec : kSchema) {
    if (spec.field.target != kTargetOf<Owner> || spec.default_text == nullptr) continue;
    Value value;
    std::string err;
    if (Convert(spec, spec.default_text, &value, &err)) spec.field.set(owner, value);
  }
}

// The most demanding reload policy among the rows whose field differs
// between `a` and `b`; nullopt when none differs.
template <typename Owner>
std::optional<Reload> Difference(const Owner& a, const Owner& b) {
  std::optional<Reload> most;
  for (const KeySpec& spec : kSchema) {
    if (spec.field.target != kTargetOf<Owner> || spec.field.same(&a, &b)) continue;
    if (!most || *most < spec.reload) most = spec.reload;
  }
  return most;
}

// A slot being read, with what the checks across slots need to know.
struct SlotDraft {
  SlotConfig slot;
  std::string path;               // "slots[1]"
  int name_line = 0;              // 0 when the name is missing or invalid
  int type_line = 0;              // 0 when the sink type is missing or invalid
  int sink_path_line = 0;         // 0 when there is no valid absolute sink path
  int transactional_id_line = 0;  // 0 when the sink gives none
};

// Removes "//", "/./" and a trailing "/" from an absolute path; ".." stays,
// since only the file system knows where it leads.
std::string NormalizePath(const std::string& path) {
  std::string out;
  size_t start = 0;
  while (start <= path.size()) {
    size_t end = path.find('/', start);
    if (end == std::string::npos) end = path.size();
    std::string part = path.substr(start, end - start);
    if (!part.empty() && part != ".") out += "/" + part;
    start = end + 1;
  }
  return out.empty() ? "/" : out;
}

// How a message names slot `d`: by name when it has one, with its line.
std::string DescribeSlot(const SlotDraft& d) {
  std::string who = d.name_line != 0 ? "slot " + Quote(d.slot.name) : d.path;
  return who + " (line " + std::to_string(d.slot.line) + ")";
}

// A file pgslotd writes, as the config names it: no two may be one.
struct Claim {
  enum class Kind { kSink, kMetrics, kStateRecord };
  Kind kind;
  std::string path;
  std::string what;        // "the sink of slot "a" (line 2)", "metrics_file", ...
  const SlotDraft* draft;  // the slot of a sink or a state record
  int line;                // where an error about it goes; 0: nowhere (a state record)
  std::string key;
  FileIdentity id{};
};

}  // namespace

std::string InstanceName(const std::string& config_path) {
  std::string base = config_path.substr(config_path.rfind('/') + 1);
  for (const char* ext : {".yaml", ".yml"}) {
    size_t n = std::strlen(ext);
    if (base.size() > n && base.compare(base.size() - n, n, ext) == 0) {
      base.resize(base.size() - n);
      break;
    }
  }
  return base.empty() ? "pgslotd" : base;
}

std::string DefaultDirectory(const std::string& root, const std::string& instance) {
  return instance == "pgslotd" ? root : root + "/" + instance;
}

namespace {

class Loader {
 public:
  Loader(std::string file, std::vector<ConfigError>* errors, LoadOptions options,
         std::vector<ConfigError>* warnings)
      : file_(std::move(file)), errors_(errors), options_(options), warnings_(warnings) {}

  bool Load(Config* config);

 private:
  // The files and directories the top level names for pgslotd itself.
  struct OwnFiles {
    std::string metrics_file;
    int metrics_line = 0;  // 0 when there is no valid metrics_file
    // As given, else the instance's default; a directory given but refused
    // (a relative path) is checked no further.
    std::string state_directory;
    bool state_refused = false;
    std::string runtime_directory;
    bool runtime_refused = false;
    std::string control_socket;
  };

  void Error(int line, std::string key, std::string message) {
    errors_->push_back(ConfigError{file_, line, std::move(key), std::move(message)});
  }

  // The file's top-level map; false (reported) when there is none.
  bool ReadRoot(YAML::Node* root);
  Section ReadSection(const YAML::Node& map, Scope scope, const std::string& path);
  void ReadValue(const KeySpec& spec, const std::string& key, Field* field);
  void ReadOptions(const std::string& key, Field* field);
  // The top-level connection, checked once here rather than once per slot;
  // nullptr when it is invalid.
  const std::string* ReadBaseConninfo(const Section& top);
  OwnFiles ReadOwnFiles(const Section& top);
  std::vector<SlotDraft> ReadSlots(const Section& top, const std::string* base_conninfo,
                                   const SlotConfig& inherited);
  // A slot's entry, over `inherited` (the defaults with the top-level keys
  // slots inherit).
  void ReadSlot(const YAML::Node& node, const SlotConfig& inherited,
                const std::string* base_conninfo, SlotDraft* draft);
  void CheckFormat(const Section& s, SlotDraft* draft);
  void CheckSnapshot(const Section& s, SlotDraft* draft);
  void CheckPluginOptions(const Section& s, SlotDraft* draft);
  // The sink map, checked against the row of its kind in kSinkKinds.
  void ReadSink(const YAML::Node& node, const std::string& path, SlotDraft* draft);
  // The path of a kind that takes one: required, absolute.
  void ReadSinkPath(const Section& s, const SinkKind& kind, const std::string& path,
                    SlotDraft* draft);
  // What the kind's row asks beyond the schema: its required key, its check.
  void CheckSinkKind(const Section& s, const SinkKind& kind, const std::string& path,
                     SlotDraft* draft);
  void ReadRotate(const Field& field, const std::string& path, RotateConfig* rotate);
  void ReadLagAlarm(const Field& field, const std::string& path, LagAlarmConfig* alarm);
  Config Assemble(const Section& top, OwnFiles own, std::vector<SlotDraft> drafts) const;
  bool ReadAbsolutePath(const Field& field, const std::string& key, std::string* out);
  // No slot name twice, and no one_slot kind of sink in two slots.
  void CheckAcrossSlots(const std::vector<SlotDraft>& drafts);
  // No two of the sinks of a unique_path kind, metrics_file and the state
  // records of the exactly_once sinks (and their temporary files) may be
  // one file: compared by their normalized text, or with check_paths by
  // where they lead on the file system (symbolic links, "..", the same
  // device and inode).
  void CheckPathClashes(const std::vector<SlotDraft>& drafts, const std::string& metrics_file,
                        int metrics_line, const std::string& state_directory);
  std::vector<Claim> Claims(const std::vector<SlotDraft>& drafts, const std::string& metrics_file,
                            int metrics_line, const std::string& state_directory);
  void ReportClash(const Claim& at, const Claim& other);
  // --check: the directories the sinks, the metrics file and pgslotd
  // itself need (state_directory or runtime_directory "": refused already).
  void CheckPaths(const std::vector<SlotDraft>& drafts, const std::string& metrics_file,
                  int metrics_line, const std::string& state_directory,
                  const std::string& runtime_directory, const Section& top);
  // warn_world_writable: the config file, the sinks' directories.
  void WarnWorldWritable(const std::vector<SlotDraft>& drafts);
  void Warn(int line, const std::string& key, const std::string& message) {
    if (warnings_ != nullptr) warnings_->push_back(ConfigError{file_, line, key, message});
  }
  // The directory `dir` that `key` (at `line`) needs. One that pgslotd (or
  // the unit's StateDirectory=/RuntimeDirectory=) creates at start, one
  // level, need not exist yet: then its parent must.
  void CheckDirectory(std::string dir, int line, const std::string& key, std::string role,
                      bool created_at_start);

  std::string file_;
  std::vector<ConfigError>* errors_;
  LoadOptions options_;
  std::vector<ConfigError>* warnings_;
};

bool ReadWholeFile(const std::string& path, std::string* text, int* err) {
  int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    *err = errno;
    return false;
  }
  char buf[64 * 1024];
  for (;;) {
    ssize_t n = read(fd, buf, sizeof(buf));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      *err = errno;
      close(fd);
      return false;
    }
    if (n == 0) break;
    text->append(buf, static_cast<size_t>(n));
  }
  close(fd);
  return true;
}

bool Loader::Load(Config* config) {
  size_t errors_before = errors_->size();
  YAML::Node root;
  if (!ReadRoot(&root)) return false;
  Section top = ReadSection(root, Scope::kTop, "");
  const std::string* base_conninfo = ReadBaseConninfo(top);
  SlotConfig inherited;
  Fill(top, Scope::kTop, &inherited);
  ReadLagAlarm(top.At("lag_alarm"), "lag_alarm", &inherited.lag_alarm);
  OwnFiles own = ReadOwnFiles(top);
  std::vector<SlotDraft> drafts = ReadSlots(top, base_conninfo, inherited);

  CheckAcrossSlots(drafts);
  CheckPathClashes(drafts, own.metrics_file, own.metrics_line, own.state_directory);
  if (options_.check_paths) {
    CheckPaths(drafts, own.metrics_file, own.metrics_line,
               own.state_refused ? "" : own.state_directory,
               own.runtime_refused ? "" : own.runtime_directory, top);
  }
  if (options_.warn_world_writable) WarnWorldWritable(drafts);
  if (errors_->size() != errors_before) return false;
  *config = Assemble(top, std::move(own), std::move(drafts));
  return true;
}

bool Loader::ReadRoot(YAML::Node* root) {
  std::string text;
  int err = 0;
  if (!ReadWholeFile(file_, &text, &err)) {
    Error(0, "", std::string("cannot read the config file: ") + std::strerror(err));
    return false;
  }
  std::vector<YAML::Node> documents;
  try {
    documents = YAML::LoadAll(text);
  } catch (const YAML::Exception& e) {
    int line = e.mark.line >= 0 ? e.mark.line + 1 : 0;
    std::string where =
        e.mark.column >= 0 ? " (column " + std::to_string(e.mark.column + 1) + ")" : std::string();
    Error(line, "", "invalid YAML: " + e.msg + where);
    return false;
  }
  if (documents.size() > 1) {
    Error(LineOf(documents[1]), "", "the file holds more than one YAML document");
    return false;
  }
  *root = documents.empty() ? YAML::Node() : documents[0];
  if (root->IsMap()) return true;
  if (root->IsNull()) {
    Error(LineOf(*root), "", "the file holds no settings; expected a map with a slots key");
  } else {
    Error(LineOf(*root), "", "expected a map of settings at the top level, got " + Describe(*root));
  }
  return false;
}

const std::string* Loader::ReadBaseConninfo(const Section& top) {
  const std::string* base_conninfo = top.Get<std::string>("connection");
  if (base_conninfo == nullptr) return nullptr;
  std::string merged, err;
  if (!MergeConninfo(*base_conninfo, "", &merged, &err)) {
    Error(top.At("connection").line, "connection", "invalid connection string: " + err);
    return nullptr;
  }
  return base_conninfo;
}

Loader::OwnFiles Loader::ReadOwnFiles(const Section& top) {
  OwnFiles own;
  if (ReadAbsolutePath(top.At("metrics_file"), "metrics_file", &own.metrics_file)) {
    own.metrics_line = top.At("metrics_file").line;
  }
  // The directories this instance owns: the file's, else derived from the
  // config file's name alone (never from the environment), so that
  // `--status` from a shell finds the daemon systemd started.
  const std::string instance = InstanceName(file_);
  if (!ReadAbsolutePath(top.At("state_directory"), "state_directory", &own.state_directory)) {
    own.state_directory = DefaultDirectory(kStateRoot, instance);
    own.state_refused = top.At("state_directory").present;
  }
  const Field& rd = top.At("runtime_directory");
  if (!ReadAbsolutePath(rd, "runtime_directory", &own.runtime_directory)) {
    own.runtime_directory = DefaultDirectory(kRuntimeRoot, instance);
    own.runtime_refused = rd.present;
  }
  own.control_socket = ControlSocketIn(own.runtime_directory);
  if (own.control_socket.size() > kMaxSocketPath) {
    Error(rd.present ? rd.line : 0, "runtime_directory",
          "the control socket " + Quote(own.control_socket) + " would be " +
              std::to_string(own.control_socket.size()) +
              " bytes long; a Unix socket path holds at most " + std::to_string(kMaxSocketPath) +
              ": choose a shorter runtime_directory");
  }
  return own;
}

std::vector<SlotDraft> Loader::ReadSlots(const Section& top, const std::string* base_conninfo,
                                         const SlotConfig& inherited) {
  std::vector<SlotDraft> drafts;
  const Field& slots = top.At("slots");
  if (!slots.present || !slots.node.IsSequence()) return drafts;
  if (slots.node.size() == 0) Error(slots.line, "slots", "at least one slot is required");
  for (const YAML::Node& node : slots.node) {
    SlotDraft draft;
    draft.path = "slots[" + std::to_string(drafts.size()) + "]";
    ReadSlot(node, inherited, base_conninfo, &draft);
    drafts.push_back(std::move(draft));
  }
  return drafts;
}

Config Loader::Assemble(const Section& top, OwnFiles own, std::vector<SlotDraft> drafts) const {
  Config loaded;
  loaded.path = file_;
  Fill(top, Scope::kTop, &loaded);
  loaded.metrics_file = std::move(own.metrics_file);
  loaded.state_directory = std::move(own.state_directory);
  loaded.runtime_directory = std::move(own.runtime_directory);
  loaded.control_socket = std::move(own.control_socket);
  for (SlotDraft& draft : drafts) {
    draft.slot.state_directory = loaded.state_directory;
    loaded.slots.push_back(std::move(draft.slot));
  }
  return loaded;
}

Section Loader::ReadSection(const YAML::Node& map, Scope scope, const std::string& path) {
  Section section;
  section.line = LineOf(map);
  std::map<std::string, int> seen;  // key -> line of its first use
  for (const auto& entry : map) {
    const YAML::Node& key_node = entry.first;
    int key_line = LineOf(key_node);
    if (!key_node.IsScalar()) {
      Error(key_line, path, "keys must be plain strings, got " + Describe(key_node));
      continue;
    }
    const std::string& name = key_node.Scalar();
    std::string key = Join(path, name);
    const KeySpec* spec = nullptr;
    std::string known;
    for (const KeySpec& s : kSchema) {
      if (s.scope != scope) continue;
      if (name == s.name) spec = &s;
      known += known.empty() ? s.name : std::string(", ") + s.name;
    }
    if (spec == nullptr) {
      Error(key_line, key, "unknown key " + Quote(name) + " (known keys: " + known + ")");
      continue;
    }
    auto [first, inserted] = seen.emplace(name, key_line);
    if (!inserted) {
      Error(key_line, key, "key given twice (first at line " + std::to_string(first->second) + ")");
      continue;
    }
    Field& field = section.fields[name];
    field.present = true;
    field.node = entry.second;
    // A null value ("key:" and nothing) sits wherever the parser stopped,
    // often the next line; the key's line is where the operator looks.
    field.line = entry.second.IsNull() ? key_line : LineOf(entry.second);
    ReadValue(*spec, key, &field);
  }

  for (const KeySpec& spec : kSchema) {
    if (spec.scope != scope || section.fields.count(spec.name) != 0) continue;
    Field& field = section.fields[spec.name];
    field.line = section.line;
    if (spec.need == Need::kRequired) {
      Error(section.line, Join(path, spec.name), "missing required key");
    } else if (spec.need == Need::kOptional && spec.kind == Kind::kOptions) {
      field.value = Options();
    } else if (spec.need == Need::kOptional && spec.default_text != nullptr) {
      std::string err;
      if (!Convert(spec, spec.default_text, &field.value, &err)) {
        Error(0, Join(path, spec.name), "internal error: bad default: " + err);
      }
    }
  }
  return section;
}

void Loader::ReadValue(const KeySpec& spec, const std::string& key, Field* field) {
  const YAML::Node& node = field->node;
  if (node.IsNull()) {
    Error(field->line, key, "no value given; expected " + Expected(spec));
    return;
  }
  switch (spec.kind) {
    case Kind::kList:
      if (!node.IsSequence()) {
        Error(field->line, key, "expected a list, got " + Describe(node));
      }
      return;  // the caller reads the items
    case Kind::kMap:
      if (!node.IsMap()) {
        Error(field->line, key, "expected a map, got " + Describe(node));
      }
      return;  // the caller reads the keys
    case Kind::kOptions:
      ReadOptions(key, field);
      return;
    default:
      break;
  }
  if (!node.IsScalar()) {
    Error(field->line, key, "expected " + Expected(spec) + ", got " + Describe(node));
    return;
  }
  std::string err;
  if (!Convert(spec, node.Scalar(), &field->value, &err)) {
    Error(field->line, key, err);
    return;
  }
  if (spec.check != nullptr) {
    std::string problem = spec.check(field->value);
    if (!problem.empty()) {
      Error(field->line, key, problem);
      field->value = std::monostate();
    }
  }
}

void Loader::ReadOptions(const std::string& key, Field* field) {
  const YAML::Node& node = field->node;
  if (!node.IsMap()) {
    Error(field->line, key, "expected a map of option names to values, got " + Describe(node));
    return;
  }
  Options options;
  std::map<std::string, int> seen;
  bool ok = true;
  for (const auto& entry : node) {
    const YAML::Node& name_node = entry.first;
    const YAML::Node& value_node = entry.second;
    int line = LineOf(name_node);
    if (!name_node.IsScalar()) {
      Error(line, key, "option names must be strings, got " + Describe(name_node));
      ok = false;
      continue;
    }
    const std::string& name = name_node.Scalar();
    if (name.empty()) {
      Error(line, key, "option names must not be empty");
      ok = false;
      continue;
    }
    if (name.find('\0') != std::string::npos) {
      Error(line, key, "option name " + Quote(name) + " contains a NUL byte");
      ok = false;
      continue;
    }
    if (std::string problem = IdentifierProblem(name, "option name"); !problem.empty()) {
      Error(line, Join(key, name), problem);
      ok = false;
      continue;
    }
    std::string option_key = Join(key, name);
    auto [first, inserted] = seen.emplace(name, line);
    if (!inserted) {
      Error(line, option_key,
            "option given twice (first at line " + std::to_string(first->second) + ")");
      ok = false;
      continue;
    }
    if (!value_node.IsScalar()) {
      std::string got = value_node.IsNull() ? "no value given" : "got " + Describe(value_node);
      Error(value_node.IsNull() ? line : LineOf(value_node), option_key,
            got + "; expected a string, number or boolean");
      ok = false;
      continue;
    }
    const std::string& value = value_node.Scalar();
    if (value.find('\0') != std::string::npos) {
      Error(LineOf(value_node), option_key, "option value must not contain a NUL byte");
      ok = false;
      continue;
    }
    options.emplace_back(name, value);
  }
  if (ok) field->value = std::move(options);
}

void Loader::ReadSlot(const YAML::Node& node, const SlotConfig& inherited,
                      const std::string* base_conninfo, SlotDraft* draft) {
  SlotConfig& slot = draft->slot;
  slot = inherited;
  slot.line = LineOf(node);
  if (!node.IsMap()) {
    Error(slot.line, draft->path, "expected a map describing a slot, got " + Describe(node));
    return;
  }
  Section s = ReadSection(node, Scope::kSlot, draft->path);
  // The slot's own values; an inherited key it does not give keeps the top
  // level's.
  Fill(s, Scope::kSlot, &slot);
  if (s.Get<std::string>("name") != nullptr) draft->name_line = s.At("name").line;
  CheckFormat(s, draft);
  CheckPluginOptions(s, draft);
  ReadLagAlarm(s.At("lag_alarm"), Join(draft->path, "lag_alarm"), &slot.lag_alarm);

  const Field& connection = s.At("connection");
  if (const auto* own = s.Get<std::string>("connection")) {
    std::string err;
    const std::string& base = base_conninfo != nullptr ? *base_conninfo : std::string();
    if (!MergeConninfo(base, *own, &slot.connection, &err)) {
      Error(connection.line, Join(draft->path, "connection"), "invalid connection string: " + err);
    }
  }

  const Field& sink = s.At("sink");
  if (sink.present && sink.node.IsMap()) ReadSink(sink.node, Join(draft->path, "sink"), draft);
  CheckSnapshot(s, draft);
}

// Whether pgoutput reads `value` as true (defGetBoolean: "true", "on" in
// any case, or 1).
bool ServerBoolTrue(const std::string& value) {
  std::string v;
  for (char c : value) v.push_back(static_cast<char>(std::tolower(static_cast<unsigned char>(c))));
  return v == "true" || v == "on" || v == "1";
}

// snapshot: what it needs of the other keys.
void Loader::CheckSnapshot(const Section& s, SlotDraft* draft) {
  const SlotConfig& slot = draft->slot;
  const Field& snapshot = s.At("snapshot");
  if (!snapshot.present || slot.snapshot == SnapshotMode::kNever) return;
  const std::string key = Join(draft->path, "snapshot");
  if (slot.format != OutputFormat::kJson) {
    Error(snapshot.line, key, "snapshot applies to format json only (plugin pgoutput)");
    return;
  }
  if (slot.sink.type == SinkType::kKafka && !slot.sink.exactly_once) {
    Error(snapshot.line, key,
          "snapshot with a kafka sink needs exactly_once: true (without it, read rows whose "
          "delivery fails would not be read again, and a cut snapshot would not go on)");
  } else if (slot.snapshot == SnapshotMode::kInitial && !slot.create &&
             slot.sink.type != SinkType::kFile && slot.sink.type != SinkType::kKafka) {
    Error(snapshot.line, key,
          "snapshot: initial with a stdout or pipe sink (which records no position) runs when "
          "pgslotd creates the slot; set create: true (a slot created otherwise is never read "
          "from the start), or snapshot: on_request to read its tables with pgslotd "
          "--snapshot");
  }
  for (const auto& [name, value] : slot.options) {
    if (name == "messages" && !ServerBoolTrue(value)) {
      Error(s.At("options").line, Join(draft->path, "options"),
            "snapshot needs pgoutput's messages (its chunks' watermarks travel as logical "
            "decoding messages); remove messages: " +
                Quote(value) + ", pgslotd asks for them");
    }
  }
}

// format and include_transactions, as far as they depend on other keys.
void Loader::CheckFormat(const Section& s, SlotDraft* draft) {
  const SlotConfig& slot = draft->slot;
  // json decodes pgoutput's binary protocol; no other plugin speaks it.
  if (s.Get<const Choice*>("format") != nullptr && slot.format == OutputFormat::kJson &&
      s.Get<std::string>("plugin") != nullptr && slot.plugin != "pgoutput") {
    Error(s.At("format").line, Join(draft->path, "format"),
          "format json needs plugin: pgoutput (it decodes pgoutput's messages), not " +
              Quote(slot.plugin) + "; use format raw for other plugins");
  }
  const Field& it = s.At("include_transactions");
  if (it.present && slot.include_transactions && slot.format != OutputFormat::kJson) {
    Error(it.line, Join(draft->path, "include_transactions"),
          "include_transactions applies to format json only");
  }
}

// What the plugin refuses to start without, said before the server does.
// pgoutput sends the changes of the publications it is given and starts no
// stream without one.
void Loader::CheckPluginOptions(const Section& s, SlotDraft* draft) {
  const SlotConfig& slot = draft->slot;
  if (slot.plugin != "pgoutput") return;
  bool publications = false;
  bool version = false;
  for (const auto& option : slot.options) {
    publications = publications || option.first == "publication_names";
    version = version || option.first == "proto_version";
  }
  const Field& options = s.At("options");
  int line = options.present ? options.line : slot.line;
  if (!publications) {
    Error(line, Join(draft->path, "options"),
          "plugin pgoutput needs publication_names, the publications whose tables it "
          "decodes: e.g. options: {publication_names: \"cdc_pub\"} after CREATE "
          "PUBLICATION cdc_pub FOR TABLE ... (or FOR ALL TABLES)");
  }
  // json chooses the protocol itself (pg/plugin_options.h); raw passes the
  // messages on, and their reader must know which version they are in.
  if (!version && slot.format == OutputFormat::kRaw) {
    Error(line, Join(draft->path, "options"),
          "plugin pgoutput with format raw needs proto_version, the version of the "
          "messages written (e.g. proto_version: \"1\"); or use format json, which "
          "chooses it");
  }
}

// The names of the kinds whose sink map may hold `key`: "file", "file or
// pipe".
std::string KindsTaking(const char* key) {
  std::string names;
  for (const SinkKind& kind : kSinkKinds) {
    if (!Takes(kind, key)) continue;
    if (!names.empty()) names += " or ";
    names += kind.name;
  }
  return names;
}

// Why the sink map of a `kind` sink may not hold `key`, or "" when it may.
// A kind with a path is told which kinds rotate; every other refusal is in
// the same words.
std::string SinkKeyRefusal(const SinkKind& kind, const char* key) {
  if (Takes(kind, key)) return "";
  const std::string name = kind.name;
  if (SameText(key, "rotate") && Takes(kind, "path")) {
    return "only a " + KindsTaking(key) + " sink can rotate, not a " + name + " sink";
  }
  return "not allowed for a " + name + " sink";
}

void Loader::ReadSink(const YAML::Node& node, const std::string& path, SlotDraft* draft) {
  size_t errors_before = errors_->size();
  Section s = ReadSection(node, Scope::kSink, path);
  SinkConfig& sink = draft->slot.sink;
  Fill(s, Scope::kSink, &sink);
  if (s.Get<const Choice*>("type") == nullptr) return;
  draft->type_line = s.At("type").line;

  const SinkKind& kind = KindOf(sink.type);
  for (const KeySpec& spec : kSchema) {
    if (spec.scope != Scope::kSink) continue;
    const Field& field = s.At(spec.name);
    std::string refusal = SinkKeyRefusal(kind, spec.name);
    if (field.present && !refusal.empty()) Error(field.line, Join(path, spec.name), refusal);
  }
  const Field& rotate = s.At("rotate");
  if (Takes(kind, "rotate") && rotate.present && rotate.node.IsMap()) {
    ReadRotate(rotate, Join(path, "rotate"), &sink.rotate);
  }
  if (Takes(kind, "path")) ReadSinkPath(s, kind, path, draft);
  const Field& properties_file = s.At("properties_file");
  if (properties_file.present) {
    ReadAbsolutePath(properties_file, Join(path, "properties_file"), &sink.properties_file);
  }
  // The kind's own check needs every key of the map readable.
  if (errors_->size() == errors_before) CheckSinkKind(s, kind, path, draft);
  const Field& transactional_id = s.At("transactional_id");
  if (errors_->size() == errors_before && transactional_id.present) {
    draft->transactional_id_line = transactional_id.line;
  }
}

void Loader::CheckSinkKind(const Section& s, const SinkKind& kind, const std::string& path,
                           SlotDraft* draft) {
  if (kind.required != nullptr && !s.At(kind.required).present) {
    Error(s.line, Join(path, kind.required),
          "missing required key (a " + std::string(kind.name) + " sink needs it)");
    return;
  }
  if (kind.check == nullptr) return;
  const char* key = "type";
  std::string problem = kind.check(draft->slot, options_.check_paths, &key);
  if (problem.empty()) return;
  const Field& field = s.At(key);
  Error(field.present ? field.line : s.line, Join(path, key), problem);
}

void Loader::ReadSinkPath(const Section& s, const SinkKind& kind, const std::string& path,
                          SlotDraft* draft) {
  const Field& field = s.At("path");
  if (!field.present) {
    Error(s.line, Join(path, "path"),
          "missing required key (a " + std::string(kind.name) + " sink needs an absolute path)");
    return;
  }
  if (ReadAbsolutePath(field, Join(path, "path"), &draft->slot.sink.path)) {
    draft->sink_path_line = field.line;
  }
}

void Loader::ReadRotate(const Field& field, const std::string& path, RotateConfig* rotate) {
  Section s = ReadSection(field.node, Scope::kRotate, path);
  Fill(s, Scope::kRotate, rotate);
  if (!s.At("size").present && !s.At("age").present) {
    Error(field.line, path, "give size, age or both (when to start a new file)");
  }
}

// Reads a lag_alarm map (or none) over *alarm: a key the map gives replaces
// the value *alarm holds (the defaults at the top level, the top level's in
// a slot).
void Loader::ReadLagAlarm(const Field& field, const std::string& path, LagAlarmConfig* alarm) {
  // Absent, or not a map (already reported): read as an empty map.
  YAML::Node map =
      field.present && field.node.IsMap() ? field.node : YAML::Node(YAML::NodeType::Map);
  Section s = ReadSection(map, Scope::kLagAlarm, path);
  Fill(s, Scope::kLagAlarm, alarm);
}

// An absolute path (a sink's path, metrics_file), normalized into *out.
// False when the field has no valid value (absent, or refused here or
// before).
bool Loader::ReadAbsolutePath(const Field& field, const std::string& key, std::string* out) {
  const auto* text = std::get_if<std::string>(&field.value);
  if (text == nullptr) return false;
  if (text->empty() || (*text)[0] != '/') {
    Error(field.line, key, "must be an absolute path, got " + Quote(*text));
    return false;
  }
  *out = NormalizePath(*text);
  return true;
}

void Loader::CheckPaths(const std::vector<SlotDraft>& drafts, const std::string& metrics_file,
                        int metrics_line, const std::string& state_directory,
                        const std::string& runtime_directory, const Section& top) {
  auto own = [&](const std::string& dir) {
    return dir == state_directory || dir == runtime_directory;
  };
  for (const SlotDraft& d : drafts) {
    if (d.sink_path_line == 0) continue;
    std::string dir = DirName(d.slot.sink.path);
    CheckDirectory(dir, d.sink_path_line, Join(d.path, "sink.path"), "the sink's directory",
                   own(dir));
  }
  if (metrics_line != 0) {
    std::string dir = DirName(metrics_file);
    CheckDirectory(dir, metrics_line, "metrics_file", "the metrics file's directory", own(dir));
  }
  // Each as given, or its default when absent; "" when it was refused
  // already (a relative path).
  const Field& sd = top.At("state_directory");
  if (!state_directory.empty()) {
    CheckDirectory(state_directory, sd.present ? sd.line : 0, "state_directory",
                   "the state directory", true);
  }
  const Field& rd = top.At("runtime_directory");
  if (!runtime_directory.empty()) {
    CheckDirectory(runtime_directory, rd.present ? rd.line : 0, "runtime_directory",
                   "the runtime directory", true);
  }
}

// " (mode 1777)" when every user may write to `path`, else "".
std::string WorldWritable(const std::string& path) {
  struct stat st;
  if (::stat(path.c_str(), &st) != 0 || (st.st_mode & S_IWOTH) == 0) return "";
  char mode[16];
  std::snprintf(mode, sizeof mode, " (mode %04o)", static_cast<unsigned>(st.st_mode & 07777));
  return mode;
}

void Loader::WarnWorldWritable(const std::vector<SlotDraft>& drafts) {
  if (std::string mode = WorldWritable(file_); !mode.empty()) {
    Warn(0, "",
         "warning: every user may write to the configuration file" + mode +
             ": anyone could change what pgslotd streams, and where to; chmod o-w " + file_);
  }
  for (const SlotDraft& d : drafts) {
    if (d.sink_path_line == 0) continue;
    std::string dir = DirName(d.slot.sink.path);
    if (std::string mode = WorldWritable(dir); !mode.empty()) {
      Warn(d.sink_path_line, Join(d.path, "sink.path"),
           "warning: every user may write to the sink's directory " + dir + mode +
               ": anyone could put a file or a link in the sink's way (pgslotd follows no link "
               "there); choose a directory only the user pgslotd runs as may write to");
    }
  }
}

void Loader::CheckDirectory(std::string dir, int line, const std::string& key, std::string role,
                            bool created_at_start) {
  struct stat st;
  if (created_at_start && ::stat(dir.c_str(), &st) != 0 && errno == ENOENT) {
    dir = DirName(dir);  // made at start: its parent must be there
    role += "'s parent";
  }
  if (::stat(dir.c_str(), &st) != 0) {
    Error(line, key,
          std::string(role) + " " + dir + " " +
              (errno == ENOENT ? "does not exist" : std::strerror(errno)));
    return;
  }
  if (!S_ISDIR(st.st_mode)) {
    Error(line, key, role + " " + dir + " is not a directory");
    return;
  }
  if (::access(dir.c_str(), W_OK | X_OK) != 0 && warnings_ != nullptr) {
    warnings_->push_back(ConfigError{
        file_, line, key,
        "warning: " + role + " " + dir + " is not writable by user " + CurrentUserName() +
            ", who runs this check; make sure the user pgslotd runs as may create files there"});
  }
}

void Loader::CheckAcrossSlots(const std::vector<SlotDraft>& drafts) {
  std::map<std::string, const SlotDraft*> by_transactional_id;
  for (const SlotDraft& d : drafts) {
    if (d.transactional_id_line == 0) continue;
    auto [it, inserted] = by_transactional_id.emplace(d.slot.sink.transactional_id, &d);
    if (inserted) continue;
    Error(d.transactional_id_line, Join(d.path, "sink.transactional_id"),
          "transactional_id " + Quote(d.slot.sink.transactional_id) + " is also that of " +
              DescribeSlot(*it->second) +
              ": two producers with one id fence each other, each aborting the other's "
              "transactions; give each slot its own (or leave it out: the default is made "
              "from the server and the slot)");
  }
  std::map<std::string, const SlotDraft*> by_name;
  std::array<const SlotDraft*, kSinkTypeCount> first_of_kind{};  // of a one_slot kind
  for (const SlotDraft& d : drafts) {
    if (d.name_line != 0) {
      auto [it, inserted] = by_name.emplace(d.slot.name, &d);
      if (!inserted) {
        Error(d.name_line, Join(d.path, "name"),
              "duplicate slot name " + Quote(d.slot.name) + " (first used at line " +
                  std::to_string(it->second->name_line) + ")");
      }
    }
    if (d.type_line == 0 || !KindOf(d.slot.sink.type).one_slot) continue;
    const SlotDraft*& first = first_of_kind[static_cast<size_t>(d.slot.sink.type)];
    if (first == nullptr) {
      first = &d;
    } else {
      Error(d.type_line, Join(d.path, "sink.type"),
            "only one slot may write to " + std::string(KindOf(d.slot.sink.type).name) + "; " +
                DescribeSlot(*first) + " already does");
    }
  }
}

std::vector<Claim> Loader::Claims(const std::vector<SlotDraft>& drafts,
                                  const std::string& metrics_file, int metrics_line,
                                  const std::string& state_directory) {
  std::vector<Claim> claims;
  for (const SlotDraft& d : drafts) {
    if (d.sink_path_line == 0 || !KindOf(d.slot.sink.type).unique_path) continue;
    claims.push_back(Claim{Claim::Kind::kSink, d.slot.sink.path, "the sink of " + DescribeSlot(d),
                           &d, d.sink_path_line, Join(d.path, "sink.path")});
  }
  if (metrics_line != 0) {
    claims.push_back(Claim{Claim::Kind::kMetrics, metrics_file, "metrics_file", nullptr,
                           metrics_line, "metrics_file"});
    claims.push_back(Claim{Claim::Kind::kMetrics, metrics_file + ".tmp",
                           "the temporary file of metrics_file", nullptr, metrics_line,
                           "metrics_file"});
  }
  for (const SlotDraft& d : drafts) {
    if (d.name_line == 0 || d.type_line == 0 || !KindOf(d.slot.sink.type).exactly_once) continue;
    std::string record = state_directory + "/" + d.slot.name + ".state";
    claims.push_back(Claim{Claim::Kind::kStateRecord, record,
                           "the state record of " + DescribeSlot(d), &d, 0, ""});
    claims.push_back(Claim{Claim::Kind::kStateRecord, record + ".tmp",
                           "the temporary file of the state record of " + DescribeSlot(d), &d, 0,
                           ""});
  }
  for (Claim& c : claims) {
    c.id = options_.check_paths ? IdentifyFile(c.path) : FileIdentity{c.path};
  }
  return claims;
}

void Loader::CheckPathClashes(const std::vector<SlotDraft>& drafts, const std::string& metrics_file,
                              int metrics_line, const std::string& state_directory) {
  std::vector<Claim> claims = Claims(drafts, metrics_file, metrics_line, state_directory);
  // Sinks come first, then metrics_file, then the state records (which
  // have no line): a clash is reported at the later claim that has one,
  // once per key (a metrics_file on a record is on its temporary file too).
  std::set<std::string> reported;
  for (size_t j = 0; j < claims.size(); ++j) {
    for (size_t i = 0; i < j; ++i) {
      // Two state records are one only for a duplicate slot name, which
      // is reported as such.
      if (claims[j].line == 0 && claims[i].line == 0) continue;
      if (!claims[i].id.Same(claims[j].id)) continue;
      const Claim& at = claims[j].line != 0 ? claims[j] : claims[i];
      if (reported.insert(at.key).second)
        ReportClash(at, &at == &claims[j] ? claims[i] : claims[j]);
    }
  }
}

void Loader::ReportClash(const Claim& at, const Claim& other) {
  std::string same = at.path == other.path ? "" : " (the same file as " + Quote(other.path) + ")";
  if (at.kind == Claim::Kind::kSink && other.kind == Claim::Kind::kSink) {
    Error(
        at.line, at.key,
        "sink path " + Quote(at.path) + " is already used by " + DescribeSlot(*other.draft) + same);
  } else if (at.what == "metrics_file" && other.kind == Claim::Kind::kSink) {
    Error(at.line, at.key, "metrics_file is also the sink of " + DescribeSlot(*other.draft) + same);
  } else {
    std::string subject = at.kind == Claim::Kind::kSink ? "sink path" : at.what;
    std::string owner = other.kind == Claim::Kind::kSink ? "" : ", which pgslotd writes itself";
    Error(at.line, at.key,
          subject + " " + Quote(at.path) + " is " + other.what + same + owner +
              ": choose another path");
  }
}

// ---------------------------------------------------------------------------
// Connection strings.

struct ConninfoFree {
  void operator()(PQconninfoOption* options) const { PQconninfoFree(options); }
};
using ConninfoPtr = std::unique_ptr<PQconninfoOption, ConninfoFree>;

// Whether a conninfo may hold a password anywhere: a password key (also
// sslpassword), URI user info, or percent-encoding that could spell either.
bool MayHoldPassword(const std::string& conninfo) {
  std::string lower;
  for (char c : conninfo) lower += (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c;
  return lower.find("password") != std::string::npos ||
         conninfo.find_first_of("@%") != std::string::npos;
}

// libpq's parse errors quote pieces of the input ("invalid percent-encoded
// token: "pa%zz"", or a whole URI). When the input may hold a password, every
// quoted piece except a lone syntax character is hidden.
std::string SafeParseError(const std::string& conninfo, const char* libpq_message) {
  std::string msg = libpq_message != nullptr ? libpq_message : "out of memory";
  while (!msg.empty() && (msg.back() == '\n' || msg.back() == ' ')) msg.pop_back();
  if (!MayHoldPassword(conninfo)) return msg;

  std::string out;
  bool hidden = false;
  size_t pos = 0;
  while (pos < msg.size()) {
    size_t open = msg.find('"', pos);
    if (open == std::string::npos) {
      out += msg.substr(pos);
      break;
    }
    size_t close = msg.find('"', open + 1);
    std::string inner =
        msg.substr(open + 1, close == std::string::npos ? std::string::npos : close - open - 1);
    out += msg.substr(pos, open - pos);
    if (inner == "=" || inner == ":" || inner == "/" || inner == "]") {
      out += "\"" + inner + "\"";
    } else {
      out += "\"***\"";
      hidden = true;
    }
    if (close == std::string::npos) break;
    pos = close + 1;
  }
  if (hidden) out += " (quoted text hidden: the connection string may contain a password)";
  return out;
}

bool ParseConninfo(const std::string& conninfo, ConninfoPtr* out, std::string* err) {
  char* errmsg = nullptr;
  out->reset(PQconninfoParse(conninfo.c_str(), &errmsg));
  if (*out == nullptr) {
    *err = SafeParseError(conninfo, errmsg);
    if (errmsg != nullptr) PQfreemem(errmsg);
    return false;
  }
  return true;
}

void AppendQuoted(const char* value, std::string* out) {
  *out += '\'';
  for (const char* p = value; *p != '\0'; ++p) {
    if (*p == '\\' || *p == '\'') *out += '\\';
    *out += *p;
  }
  *out += '\'';
}

}  // namespace

std::string ConfigError::ToString() const {
  std::string out = file;
  if (line != 0) out += ":" + std::to_string(line);
  out += ": ";
  if (!key.empty()) out += key + ": ";
  return out + message;
}

RotateConfig::RotateConfig() { ApplyDefaults(this); }
SinkConfig::SinkConfig() { ApplyDefaults(this); }
LagAlarmConfig::LagAlarmConfig() { ApplyDefaults(this); }
SlotConfig::SlotConfig() { ApplyDefaults(this); }

Config::Config()
    : state_directory(DefaultDirectory(kStateRoot, "pgslotd")),
      runtime_directory(DefaultDirectory(kRuntimeRoot, "pgslotd")),
      control_socket(ControlSocketIn(runtime_directory)) {
  ApplyDefaults(this);
}

bool RotateConfig::operator==(const RotateConfig& o) const { return !Difference(*this, o); }

bool LagAlarmConfig::operator==(const LagAlarmConfig& o) const { return !Difference(*this, o); }

bool SlotConfig::operator==(const SlotConfig& o) const {
  return SlotReload(*this, o) == Reload::kLive;
}

Reload SlotReload(const SlotConfig& slot, const SlotConfig& fresh) {
  Reload most = Reload::kLive;
  for (std::optional<Reload> r : {Difference(slot, fresh), Difference(slot.sink, fresh.sink),
                                  Difference(slot.sink.rotate, fresh.sink.rotate),
                                  Difference(slot.lag_alarm, fresh.lag_alarm)}) {
    if (r && most < *r) most = *r;
  }
  return most;
}

std::string DaemonRestartReason(const Config& config, const Config& fresh) {
  for (const KeySpec& spec : kSchema) {
    if (spec.field.target != Target::kConfig || spec.reload != Reload::kRestartsDaemon) continue;
    if (spec.field.same(&config, &fresh)) continue;
    return std::string(spec.name) + " changed from " + spec.field.text(&config) + " to " +
           spec.field.text(&fresh);
  }
  return "";
}

std::vector<KeyReload> ReloadPolicies() {
  std::vector<KeyReload> keys;
  for (const KeySpec& spec : kSchema) {
    if (spec.field.target == Target::kNone) continue;
    for (const char* prefix : KeyPrefixes(spec.scope)) {
      if (prefix != nullptr)
        keys.push_back(KeyReload{prefix + std::string(spec.name), spec.reload});
    }
  }
  return keys;
}

bool LoadConfig(const std::string& path, Config* config, std::vector<ConfigError>* errors,
                const LoadOptions& options, std::vector<ConfigError>* warnings) {
  size_t errors_before = errors->size();
  Loader loader(path, errors, options, warnings);
  bool ok = false;
  try {
    ok = loader.Load(config);
  } catch (const YAML::Exception& e) {
    // Reading a parsed document should not throw; if it does, say so
    // rather than accept a half-read file.
    errors->push_back(ConfigError{path, 0, "", std::string("cannot read the YAML: ") + e.what()});
  }
  // In file order, as an operator goes through them; checks that span
  // several slots find their problems last.
  std::stable_sort(errors->begin() + static_cast<std::ptrdiff_t>(errors_before), errors->end(),
                   [](const ConfigError& a, const ConfigError& b) { return a.line < b.line; });
  return ok && errors->size() == errors_before;
}

bool MergeConninfo(const std::string& base, const std::string& override_, std::string* merged,
                   std::string* err) {
  ConninfoPtr base_options, override_options;
  if (!ParseConninfo(base, &base_options, err) ||
      !ParseConninfo(override_, &override_options, err)) {
    return false;
  }
  // Both arrays list every libpq keyword in libpq's order; only the keys the
  // strings set have a value.
  std::string out;
  for (const PQconninfoOption* b = base_options.get(); b->keyword != nullptr; ++b) {
    const char* value = b->val;
    for (const PQconninfoOption* o = override_options.get(); o->keyword != nullptr; ++o) {
      if (o->val != nullptr && std::strcmp(o->keyword, b->keyword) == 0) value = o->val;
    }
    if (value == nullptr) continue;
    if (!out.empty()) out += ' ';
    out += b->keyword;
    out += '=';
    AppendQuoted(value, &out);
  }
  *merged = std::move(out);
  return true;
}

}  // namespace pgslotd
