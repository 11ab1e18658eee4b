#include "config/config.h"

#include <gtest/gtest.h>
#include <libpq-fe.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <initializer_list>
#include <map>
#include <set>
#include <string>
#include <vector>

namespace pgslotd {
namespace {

using std::chrono::milliseconds;

// Each test gets its own directory under /tmp, removed afterwards.
class ConfigTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/pgslotd_config_test.XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    path_ = dir_ + "/pgslotd.yaml";
  }

  void TearDown() override {
    int rc = std::system(("rm -rf " + dir_).c_str());
    (void)rc;
  }

  // Writes `text` to path_; a leading newline is dropped so that the raw
  // strings below start with line 1 on their own line.
  void Write(std::string text) {
    if (!text.empty() && text[0] == '\n') text.erase(0, 1);
    FILE* f = fopen(path_.c_str(), "w");
    ASSERT_NE(f, nullptr);
    ASSERT_EQ(fwrite(text.data(), 1, text.size(), f), text.size());
    ASSERT_EQ(fclose(f), 0);
  }

  // Loads `text`, which must be valid.
  Config Load(const std::string& text) {
    Write(text);
    Config config;
    std::vector<ConfigError> errors;
    EXPECT_TRUE(LoadConfig(path_, &config, &errors)) << Show(errors);
    EXPECT_TRUE(errors.empty()) << Show(errors);
    return config;
  }

  // Loads `text`, which must be refused, and returns the errors.
  std::vector<ConfigError> Errors(const std::string& text) {
    Write(text);
    Config config;
    std::vector<ConfigError> errors;
    EXPECT_FALSE(LoadConfig(path_, &config, &errors));
    return errors;
  }

  static std::string Show(const std::vector<ConfigError>& errors) {
    std::string out;
    for (const ConfigError& e : errors) out += "\n  " + e.ToString();
    return out;
  }

  // Checks that `text` yields exactly one error, with this line, key and
  // every one of `words` in its message.
  void ExpectOneError(const std::string& text, int line, const std::string& key,
                      std::initializer_list<const char*> words) {
    std::vector<ConfigError> errors = Errors(text);
    ASSERT_EQ(errors.size(), 1u) << Show(errors);
    ExpectError(errors[0], line, key, words);
  }

  void ExpectError(const ConfigError& e, int line, const std::string& key,
                   std::initializer_list<const char*> words) {
    EXPECT_EQ(e.file, path_);
    EXPECT_EQ(e.line, line) << e.ToString();
    EXPECT_EQ(e.key, key) << e.ToString();
    for (const char* word : words) {
      EXPECT_NE(e.message.find(word), std::string::npos)
          << "\"" << word << "\" not in: " << e.ToString();
    }
  }

  std::string dir_;
  std::string path_;
};

// ---------------------------------------------------------------------------
// Valid files.

TEST_F(ConfigTest, FullConfig) {
  Config config = Load(R"(
# Everything set.
connection: "host=/var/run/postgresql dbname=app user=cdc"
status_interval: 20s
fsync_interval: 2s
buffer_size: 1MiB
log_level: debug
slots:
  - name: orders
    connection: "dbname=shop port=5433"
    plugin: test_decoding
    create: true
    options: {skip-empty-xacts: "1", include-xids: 0, include-timestamp: true}
    format: raw
    sink: {type: file, path: /var/lib/pgslotd//orders.log, mode: "0640"}
    status_interval: 5s
    fsync_interval: 0
    buffer_size: 16MiB
  - name: audit_2
    plugin: wal2json
    sink:
      type: stdout
  - name: p
    plugin: test_decoding
    create: false
    sink: {type: pipe, path: /run/pgslotd/p.fifo, mode: 640}
)");
  EXPECT_EQ(config.path, path_);
  EXPECT_EQ(config.log_level, "debug");
  ASSERT_EQ(config.slots.size(), 3u);

  const SlotConfig& orders = config.slots[0];
  EXPECT_EQ(orders.name, "orders");
  // Base keys kept, dbname overridden, port added; in libpq's order.
  EXPECT_EQ(orders.connection, "user='cdc' dbname='shop' host='/var/run/postgresql' port='5433'");
  EXPECT_EQ(orders.plugin, "test_decoding");
  EXPECT_TRUE(orders.create);
  std::vector<std::pair<std::string, std::string>> options = {
      {"skip-empty-xacts", "1"}, {"include-xids", "0"}, {"include-timestamp", "true"}};
  EXPECT_EQ(orders.options, options);
  EXPECT_EQ(orders.format, OutputFormat::kRaw);
  EXPECT_EQ(orders.sink.type, SinkType::kFile);
  EXPECT_EQ(orders.sink.path, "/var/lib/pgslotd/orders.log");
  EXPECT_EQ(orders.sink.mode, 0640u);
  EXPECT_EQ(orders.status_interval, milliseconds(5000));
  EXPECT_EQ(orders.fsync_interval, milliseconds(0));
  EXPECT_EQ(orders.buffer_size, 16u << 20);
  EXPECT_EQ(orders.line, 8);

  // Everything not set in the slot comes from the top level or the defaults.
  SlotConfig audit;
  audit.name = "audit_2";
  audit.connection = "user='cdc' dbname='app' host='/var/run/postgresql'";
  audit.plugin = "wal2json";
  audit.state_directory = "/var/lib/pgslotd";
  audit.sink.type = SinkType::kStdout;
  audit.status_interval = milliseconds(20000);
  audit.fsync_interval = milliseconds(2000);
  audit.buffer_size = 1u << 20;
  EXPECT_EQ(config.slots[1], audit);
  EXPECT_EQ(config.slots[1].sink.path, "");
  EXPECT_EQ(config.slots[1].sink.mode, 0600u);
  EXPECT_EQ(config.slots[1].line, 18);

  const SlotConfig& pipe = config.slots[2];
  EXPECT_EQ(pipe.sink.type, SinkType::kPipe);
  EXPECT_EQ(pipe.sink.path, "/run/pgslotd/p.fifo");
  EXPECT_EQ(pipe.sink.mode, 0640u);
  EXPECT_FALSE(pipe.create);
  EXPECT_TRUE(pipe.options.empty());
  EXPECT_EQ(pipe.line, 22);
}

TEST_F(ConfigTest, Defaults) {
  Config config = Load(R"(
slots:
  - name: s
    plugin: test_decoding
    sink: {type: stdout}
)");
  EXPECT_EQ(config.log_level, "info");
  ASSERT_EQ(config.slots.size(), 1u);
  const SlotConfig& s = config.slots[0];
  EXPECT_EQ(s.connection, "");
  EXPECT_FALSE(s.create);
  EXPECT_TRUE(s.options.empty());
  EXPECT_EQ(s.format, OutputFormat::kRaw);
  EXPECT_EQ(s.status_interval, milliseconds(10000));
  EXPECT_EQ(s.fsync_interval, milliseconds(1000));
  EXPECT_EQ(s.buffer_size, 8u << 20);
  EXPECT_EQ(s.line, 2);
}

TEST_F(ConfigTest, OptionsKeepFileOrderAndText) {
  Config config = Load(R"(
slots:
  - name: s
    plugin: pgoutput
    options:
      publication_names: "pub_a,pub_b"
      proto_version: 1
      binary: false
      messages: "it's \"quoted\""
      z: ""
    sink: {type: stdout}
)");
  std::vector<std::pair<std::string, std::string>> expected = {
      {"publication_names", "pub_a,pub_b"},
      {"proto_version", "1"},
      {"binary", "false"},
      {"messages", "it's \"quoted\""},
      {"z", ""},
  };
  EXPECT_EQ(config.slots.at(0).options, expected);
}

TEST_F(ConfigTest, BoundaryValuesAccepted) {
  Config config = Load(R"(
status_interval: 1ms
fsync_interval: 0
buffer_size: 64KiB
log_level: error
slots:
  - name: abcdefghijklmnopqrstuvwxyz_0123456789_abcdefghijklmnopqrstuvwxy
    plugin: p
    create: TRUE
    sink: {type: file, path: /f, mode: "0"}
  - name: "0"
    plugin: p
    sink: {type: file, path: /g, mode: "0777"}
)");
  ASSERT_EQ(config.slots.size(), 2u);
  EXPECT_EQ(config.slots[0].name.size(), 63u);
  EXPECT_EQ(config.slots[0].status_interval, milliseconds(1));
  EXPECT_EQ(config.slots[0].buffer_size, 65536u);
  EXPECT_TRUE(config.slots[0].create);
  EXPECT_EQ(config.slots[0].sink.mode, 0u);
  EXPECT_EQ(config.slots[1].sink.mode, 0777u);
}

TEST_F(ConfigTest, SlotConfigEqualityIgnoresOnlyLine) {
  SlotConfig a;
  a.name = "a";
  SlotConfig b = a;
  b.line = 42;
  EXPECT_EQ(a, b);
  b.sink.mode = 0640;
  EXPECT_NE(a, b);
  b = a;
  b.options.emplace_back("x", "1");
  EXPECT_NE(a, b);
  b = a;
  b.fsync_interval = milliseconds(0);
  EXPECT_NE(a, b);
  b = a;
  b.sink.path = "/x";
  EXPECT_NE(a, b);
}

TEST(ConfigErrorTest, ToString) {
  EXPECT_EQ((ConfigError{"/etc/p.yaml", 7, "slots[1].sink.path", "bad"}).ToString(),
            "/etc/p.yaml:7: slots[1].sink.path: bad");
  EXPECT_EQ((ConfigError{"/etc/p.yaml", 0, "slots", "bad"}).ToString(), "/etc/p.yaml: slots: bad");
  EXPECT_EQ((ConfigError{"/etc/p.yaml", 3, "", "bad"}).ToString(), "/etc/p.yaml:3: bad");
  EXPECT_EQ((ConfigError{"/etc/p.yaml", 0, "", "bad"}).ToString(), "/etc/p.yaml: bad");
}

// ---------------------------------------------------------------------------
// Refusals: one test each, with the exact place.

TEST_F(ConfigTest, FileNotFound) {
  Config config;
  std::vector<ConfigError> errors;
  std::string missing = dir_ + "/missing.yaml";
  EXPECT_FALSE(LoadConfig(missing, &config, &errors));
  ASSERT_EQ(errors.size(), 1u);
  EXPECT_EQ(errors[0].file, missing);
  EXPECT_EQ(errors[0].line, 0);
  EXPECT_EQ(errors[0].key, "");
  EXPECT_NE(errors[0].message.find("No such file or directory"), std::string::npos);
  EXPECT_EQ(errors[0].ToString(), missing + ": " + errors[0].message);
}

TEST_F(ConfigTest, FileUnreadable) {
  Config config;
  std::vector<ConfigError> errors;
  EXPECT_FALSE(LoadConfig(dir_, &config, &errors));  // a directory
  ASSERT_EQ(errors.size(), 1u);
  EXPECT_EQ(errors[0].file, dir_);
  EXPECT_EQ(errors[0].line, 0);
  EXPECT_NE(errors[0].message.find("Is a directory"), std::string::npos) << errors[0].message;
}

TEST_F(ConfigTest, YamlSyntaxError) {
  ExpectOneError(R"(
slots:
  - name: a
    plugin: [x, y
    sink: {type: stdout}
)",
                 4, "", {"invalid YAML", "column"});
}

TEST_F(ConfigTest, YamlBadIndentation) {
  ExpectOneError(R"(
log_level: info
 slots: x
)",
                 2, "", {"invalid YAML"});
}

TEST_F(ConfigTest, TopLevelNotAMap) {
  ExpectOneError(R"(
- name: a
- name: b
)",
                 1, "", {"expected a map", "top level", "list"});
}

TEST_F(ConfigTest, TopLevelScalar) {
  ExpectOneError("#\njust text\n", 2, "", {"expected a map", "\"just text\""});
}

TEST_F(ConfigTest, EmptyFile) { ExpectOneError("# nothing\n", 0, "", {"no settings", "slots"}); }

TEST_F(ConfigTest, TwoDocuments) {
  ExpectOneError(R"(
slots:
  - {name: a, plugin: p, sink: {type: stdout}}
---
slots:
  - {name: b, plugin: p, sink: {type: stdout}}
)",
                 4, "", {"more than one YAML document"});
}

TEST_F(ConfigTest, UnknownTopLevelKey) {
  ExpectOneError(R"(
log_level: info
sinks: []
slots:
  - {name: a, plugin: p, sink: {type: stdout}}
)",
                 2, "sinks", {"unknown key \"sinks\""});
}

TEST_F(ConfigTest, UnknownSlotKey) {
  ExpectOneError(R"(
slots:
  - name: a
    plugin: p
    sink: {type: stdout}
  - name: b
    plugin: p
    sink: {type: file, path: /b}
    fsync: 1s
)",
                 8, "slots[1].fsync", {"unknown key \"fsync\""});
}

TEST_F(ConfigTest, UnknownSinkKey) {
  ExpectOneError(R"(
slots:
  - name: a
    plugin: p
    sink:
      type: file
      path: /x
      owner: root
)",
                 7, "slots[0].sink.owner", {"unknown key \"owner\""});
}

TEST_F(ConfigTest, DuplicateKey) {
  ExpectOneError(R"(
slots:
  - name: a
    plugin: p
    sink: {type: stdout}
    plugin: q
)",
                 5, "slots[0].plugin", {"given twice", "line 3"});
}

TEST_F(ConfigTest, SequenceWhereStringExpected) {
  ExpectOneError(R"(
slots:
  - name: a
    plugin: [p, q]
    sink: {type: stdout}
)",
                 3, "slots[0].plugin", {"expected a string", "got a list"});
}

TEST_F(ConfigTest, MapWhereStringExpected) {
  ExpectOneError(R"(
connection:
  host: x
slots:
  - {name: a, plugin: p, sink: {type: stdout}}
)",
                 2, "connection", {"expected a string", "got a map"});
}

TEST_F(ConfigTest, NotABool) {
  ExpectOneError(R"(
slots:
  - name: a
    plugin: p
    create: maybe
    sink: {type: stdout}
)",
                 4, "slots[0].create", {"\"maybe\"", "true or false"});
}

TEST_F(ConfigTest, BadTopLevelDuration) {
  ExpectOneError(R"(
status_interval: 10
slots:
  - {name: a, plugin: p, sink: {type: stdout}}
)",
                 1, "status_interval", {"invalid duration \"10\"", "ms, s, m, h or d"});
}

TEST_F(ConfigTest, BadSlotDuration) {
  ExpectOneError(R"(
slots:
  - name: a
    plugin: p
    sink: {type: stdout}
    fsync_interval: 1.5s
)",
                 5, "slots[0].fsync_interval", {"invalid duration \"1.5s\"", "500ms"});
}

TEST_F(ConfigTest, StatusIntervalMustBePositive) {
  ExpectOneError(R"(
slots:
  - name: a
    plugin: p
    sink: {type: stdout}
    status_interval: 0
)",
                 5, "slots[0].status_interval", {"greater than 0"});
}

TEST_F(ConfigTest, BadSize) {
  ExpectOneError(R"(
buffer_size: 8M
slots:
  - {name: a, plugin: p, sink: {type: stdout}}
)",
                 1, "buffer_size", {"invalid size \"8M\"", "MiB", "KiB"});
}

TEST_F(ConfigTest, BufferTooSmall) {
  ExpectOneError(R"(
slots:
  - name: a
    plugin: p
    sink: {type: stdout}
    buffer_size: 65535B
)",
                 5, "slots[0].buffer_size", {"at least 64KiB"});
}

TEST_F(ConfigTest, BadLogLevel) {
  ExpectOneError(R"(
log_level: verbose
slots:
  - {name: a, plugin: p, sink: {type: stdout}}
)",
                 1, "log_level", {"\"verbose\"", "trace, debug, info, warning, error"});
}

TEST_F(ConfigTest, BadFormat) {
  ExpectOneError(R"(
slots:
  - name: a
    plugin: p
    format: xml
    sink: {type: stdout}
)",
                 4, "slots[0].format", {"\"xml\"", "raw", "json"});
}

// pgoutput starts no stream without publications: --check says so first,
// at the options (or at the slot when it has none), for both formats; and
// format raw passes its messages on, so it must say their version.
TEST_F(ConfigTest, PgoutputNeedsPublicationNames) {
  ExpectOneError(R"(
slots:
  - name: a
    plugin: pgoutput
    format: json
    sink: {type: stdout}
)",
                 2, "slots[0].options",
                 {"plugin pgoutput needs publication_names", "CREATE PUBLICATION"});
  ExpectOneError(R"(
slots:
  - name: a
    plugin: pgoutput
    format: raw
    options: {proto_version: 1, messages: "true"}
    sink: {type: stdout}
)",
                 5, "slots[0].options", {"plugin pgoutput needs publication_names"});
  ExpectOneError(R"(
slots:
  - name: a
    plugin: pgoutput
    format: raw
    options: {publication_names: p}
    sink: {type: stdout}
)",
                 5, "slots[0].options", {"format raw needs proto_version", "or use format json"});
}

TEST_F(ConfigTest, SnapshotTakesAJsonSlotThatPgslotdCreatesWithAStreamSink) {
  Config ok = Load(R"(
slots:
  - name: a
    plugin: pgoutput
    format: json
    create: true
    snapshot: initial
    snapshot_chunk_rows: 500
    options: {publication_names: p}
    sink: {type: pipe, path: /run/x.fifo}
)");
  ASSERT_EQ(ok.slots.size(), 1u);
  EXPECT_EQ(ok.slots[0].snapshot, SnapshotMode::kInitial);
  EXPECT_EQ(ok.slots[0].snapshot_chunk_rows, 500u);
  EXPECT_EQ(ok.slots[0].snapshot_keyless, SnapshotKeyless::kRefuse);
  Config defaults = Load(R"(
slots:
  - name: a
    plugin: pgoutput
    format: json
    options: {publication_names: p}
    sink: {type: stdout}
)");
  EXPECT_EQ(defaults.slots[0].snapshot, SnapshotMode::kNever);
  EXPECT_EQ(defaults.slots[0].snapshot_chunk_rows, 10000u);

  ExpectOneError(R"(
slots:
  - name: a
    plugin: test_decoding
    create: true
    snapshot: initial
    sink: {type: stdout}
)",
                 5, "slots[0].snapshot", {"snapshot applies to format json only"});
  ExpectOneError(R"(
slots:
  - name: a
    plugin: pgoutput
    format: json
    snapshot: initial
    options: {publication_names: p}
    sink: {type: stdout}
)",
                 5, "slots[0].snapshot",
                 {"stdout or pipe sink", "runs when pgslotd creates the slot", "create: true"});
  // A file records its position: its snapshot runs when it has none, on
  // any slot.
  Config file = Load(R"(
slots:
  - name: a
    plugin: pgoutput
    format: json
    snapshot: initial
    options: {publication_names: p}
    sink: {type: file, path: /var/lib/x.jsonl}
)");
  EXPECT_EQ(file.slots[0].snapshot, SnapshotMode::kInitial);
  // Kafka with exactly_once (the default) records its position, and the
  // snapshot's progress with it; without, a snapshot could lose rows.
  Config kafka = Load(R"(
slots:
  - name: a
    plugin: pgoutput
    format: json
    snapshot: initial
    options: {publication_names: p}
    sink: {type: kafka, brokers: "k:9092"}
)");
  EXPECT_EQ(kafka.slots[0].snapshot, SnapshotMode::kInitial);
  ExpectOneError(R"(
slots:
  - name: a
    plugin: pgoutput
    format: json
    create: true
    snapshot: initial
    options: {publication_names: p}
    sink: {type: kafka, brokers: "k:9092", exactly_once: false}
)",
                 6, "slots[0].snapshot",
                 {"snapshot with a kafka sink needs exactly_once: true (without it, read rows "
                  "whose delivery fails would not be read again, and a cut snapshot would not "
                  "go on)"});
  ExpectOneError(R"(
slots:
  - name: a
    plugin: pgoutput
    format: json
    create: true
    snapshot: initial
    options: {publication_names: p, messages: "false"}
    sink: {type: stdout}
)",
                 7, "slots[0].options", {"snapshot needs pgoutput's messages", "\"false\""});
  ExpectOneError(R"(
slots:
  - name: a
    plugin: pgoutput
    format: json
    create: true
    snapshot: initial
    snapshot_chunk_rows: 0
    options: {publication_names: p}
    sink: {type: stdout}
)",
                 7, "slots[0].snapshot_chunk_rows", {"must be greater than 0"});
}

// on_request: no snapshot by itself, so no create: true with any sink; the
// same needs of format, sink and messages as initial.
TEST_F(ConfigTest, SnapshotOnRequestTakesAnyJsonSlotButAnAtLeastOnceKafkaOne) {
  Config ok = Load(R"(
slots:
  - name: a
    plugin: pgoutput
    format: json
    snapshot: on_request
    options: {publication_names: p}
    sink: {type: stdout}
)");
  EXPECT_EQ(ok.slots[0].snapshot, SnapshotMode::kOnRequest);
  ExpectOneError(R"(
slots:
  - name: a
    plugin: test_decoding
    snapshot: on_request
    sink: {type: stdout}
)",
                 4, "slots[0].snapshot", {"snapshot applies to format json only"});
  Config kafka = Load(R"(
slots:
  - name: a
    plugin: pgoutput
    format: json
    snapshot: on_request
    options: {publication_names: p}
    sink: {type: kafka, brokers: "k:9092"}
)");
  EXPECT_EQ(kafka.slots[0].snapshot, SnapshotMode::kOnRequest);
  ExpectOneError(R"(
slots:
  - name: a
    plugin: pgoutput
    format: json
    snapshot: on_request
    options: {publication_names: p}
    sink: {type: kafka, brokers: "k:9092", exactly_once: false}
)",
                 5, "slots[0].snapshot", {"snapshot with a kafka sink needs exactly_once: true"});
  ExpectOneError(R"(
slots:
  - name: a
    plugin: pgoutput
    format: json
    snapshot: on_request
    options: {publication_names: p, messages: "off"}
    sink: {type: stdout}
)",
                 6, "slots[0].options", {"snapshot needs pgoutput's messages", "\"off\""});
  ExpectOneError(R"(
slots:
  - name: a
    plugin: pgoutput
    format: json
    snapshot: sometimes
    options: {publication_names: p}
    sink: {type: stdout}
)",
                 5, "slots[0].snapshot", {"never", "initial", "on_request"});
}

TEST_F(ConfigTest, JsonNeedsPgoutput) {
  ExpectOneError(R"(
slots:
  - name: a
    plugin: wal2json
    format: json
    sink: {type: stdout}
)",
                 4, "slots[0].format", {"format json needs plugin: pgoutput", "\"wal2json\""});
  Config ok = Load(R"(
slots:
  - name: a
    plugin: pgoutput
    options: {publication_names: p}
    format: json
    include_transactions: true
    sink: {type: stdout}
)");
  ASSERT_EQ(ok.slots.size(), 1u);
  EXPECT_EQ(ok.slots[0].format, OutputFormat::kJson);
  EXPECT_TRUE(ok.slots[0].include_transactions);
}

TEST_F(ConfigTest, IncludeTransactionsIsForJsonOnly) {
  ExpectOneError(R"(
slots:
  - name: a
    plugin: test_decoding
    include_transactions: true
    sink: {type: stdout}
)",
                 4, "slots[0].include_transactions", {"format json only"});
}

TEST_F(ConfigTest, StateDirectoryMustBeAbsolute) {
  ExpectOneError(
      "state_directory: relative/dir\nslots:\n  - {name: a, plugin: p, sink: {type: stdout}}\n", 1,
      "state_directory", {"must be an absolute path"});
  ExpectOneError("runtime_directory: run\nslots:\n  - {name: a, plugin: p, sink: {type: stdout}}\n",
                 1, "runtime_directory", {"must be an absolute path"});
  // --check does not go on to look for the default in its place.
  Write("state_directory: state\nruntime_directory: " + dir_ +
        "\nslots:\n  - {name: a, plugin: p, sink: {type: stdout}}\n");
  path_ = dir_ + "/nowhere-instance.yaml";
  std::rename((dir_ + "/pgslotd.yaml").c_str(), path_.c_str());
  LoadOptions check;
  check.check_paths = true;
  Config config;
  std::vector<ConfigError> errors;
  EXPECT_FALSE(LoadConfig(path_, &config, &errors, check));
  EXPECT_EQ(errors.size(), 1u) << Show(errors);
  unlink(path_.c_str());
  path_ = dir_ + "/pgslotd.yaml";
}

TEST_F(ConfigTest, BadSinkType) {
  ExpectOneError(R"(
slots:
  - name: a
    plugin: p
    sink: {type: socket, path: /x}
)",
                 4, "slots[0].sink.type", {"\"socket\"", "stdout, file, pipe"});
}

TEST_F(ConfigTest, InvalidSlotNames) {
  for (const char* name : {"Orders", "a-b", "\"\"", "\"a b\"", "caf\\u00e9",
                           "abcdefghijklmnopqrstuvwxyz_0123456789_abcdefghijklmnopqrstuvwxyz"}) {
    SCOPED_TRACE(name);
    ExpectOneError(std::string(R"(
slots:
  - plugin: p
    name: )") + name + R"(
    sink: {type: stdout}
)",
                   3, "slots[0].name", {"invalid slot name", "a-z, 0-9 and _"});
  }
}

TEST_F(ConfigTest, DuplicateSlotNames) {
  ExpectOneError(R"(
slots:
  - name: orders
    plugin: p
    sink: {type: file, path: /a}
  - name: other
    plugin: p
    sink: {type: file, path: /b}
  - plugin: p
    name: orders
    sink: {type: file, path: /c}
)",
                 9, "slots[2].name", {"duplicate slot name \"orders\"", "first used at line 2"});
}

TEST_F(ConfigTest, TwoSlotsOnOneSinkPath) {
  ExpectOneError(R"(
slots:
  - name: a
    plugin: p
    sink: {type: file, path: /var/lib//pgslotd/./out.log}
  - name: b
    plugin: p
    sink:
      type: pipe
      path: /var/lib/pgslotd/out.log/
)",
                 9, "slots[1].sink.path",
                 {"\"/var/lib/pgslotd/out.log\"", "already used by slot \"a\" (line 2)"});
}

TEST_F(ConfigTest, TwoSlotsOnStdout) {
  ExpectOneError(R"(
slots:
  - name: a
    plugin: p
    sink: {type: stdout}
  - name: b
    plugin: p
    sink:
      type: stdout
)",
                 8, "slots[1].sink.type", {"only one slot may write to stdout", "slot \"a\""});
}

TEST_F(ConfigTest, RelativeSinkPath) {
  ExpectOneError(R"(
slots:
  - name: a
    plugin: p
    sink:
      type: file
      path: var/out.log
)",
                 6, "slots[0].sink.path", {"absolute", "\"var/out.log\""});
}

TEST_F(ConfigTest, FileSinkWithoutPath) {
  ExpectOneError(R"(
slots:
  - name: a
    plugin: p
    sink:
      type: file
      mode: "0640"
)",
                 5, "slots[0].sink.path", {"missing required key", "file sink"});
}

TEST_F(ConfigTest, AKafkaSinkTakesItsKeysWithTheirDefaults) {
  Config c = Load(R"(
slots:
  - name: a
    plugin: pgoutput
    options: {publication_names: p}
    format: json
    sink:
      type: kafka
      brokers: "k1:9092,k2:9092"
      properties: {compression.type: zstd, linger.ms: "20"}
)");
  const SinkConfig& k = c.slots[0].sink;
  EXPECT_EQ(k.type, SinkType::kKafka);
  EXPECT_EQ(k.brokers, "k1:9092,k2:9092");
  EXPECT_EQ(k.topic, "");
  EXPECT_EQ(k.key, KafkaKey::kPrimaryKey);
  EXPECT_TRUE(k.exactly_once);
  EXPECT_EQ(k.transactional_id, "");
  EXPECT_EQ(k.position_topic, "pgslotd_positions");
  EXPECT_EQ(k.transaction_records, 10000u);
  EXPECT_EQ(k.transaction_bytes, 16u << 20);
  EXPECT_EQ(k.properties, (std::vector<std::pair<std::string, std::string>>{
                              {"compression.type", "zstd"}, {"linger.ms", "20"}}));
}

TEST_F(ConfigTest, KafkaSinkMistakesNameTheirKey) {
  ExpectOneError(R"(
slots:
  - name: a
    plugin: p
    sink: {type: kafka}
)",
                 4, "slots[0].sink.brokers", {"missing required key", "kafka sink"});
  ExpectOneError(R"(
slots:
  - name: a
    plugin: p
    sink: {type: kafka, brokers: "k:9092",
           topic: "cdc/{slot}"}
)",
                 5, "slots[0].sink.topic", {"'/'", "Kafka topic names"});
  ExpectOneError(R"(
slots:
  - name: a
    plugin: p
    sink: {type: kafka, brokers: "k:9092", topic: "{db}.{table}"}
)",
                 4, "slots[0].sink.topic", {"unknown placeholder {db}"});
  ExpectOneError(R"(
slots:
  - name: a
    plugin: pgoutput
    options: {publication_names: p}
    format: json
    sink: {type: kafka, brokers: "k:9092", topic: "{schema}.{table}"}
)",
                 6, "slots[0].sink.topic", {"records without a table", "add {slot}"});
  ExpectOneError(R"(
slots:
  - name: a
    plugin: p
    format: raw
    sink: {type: kafka, brokers: "k:9092", topic: "{slot}.{table}"}
)",
                 5, "slots[0].sink.topic", {"only format json knows"});
  ExpectOneError(R"(
slots:
  - name: a
    plugin: p
    sink:
      type: kafka
      brokers: "k:9092"
      properties:
        compresion.type: zstd
)",
                 8, "slots[0].sink.properties", {"unknown Kafka property compresion.type"});
  ExpectOneError(R"(
slots:
  - name: a
    plugin: p
    sink: {type: kafka, brokers: "k:9092", properties: {acks: "1"}}
)",
                 4, "slots[0].sink.properties", {"acks", "pgslotd needs it to be all"});
  ExpectOneError(R"(
slots:
  - name: a
    plugin: p
    sink: {type: kafka, brokers: "k:9092", properties: {sasl.password: ""}, key: id}
)",
                 4, "slots[0].sink.key", {"\"id\"", "primary_key, none"});
  ExpectOneError(R"(
slots:
  - name: a
    plugin: p
    sink: {type: file, path: /x, brokers: "k:9092"}
)",
                 4, "slots[0].sink.brokers", {"not allowed for a file sink"});
  ExpectOneError(R"(
slots:
  - name: a
    plugin: p
    sink: {type: kafka, brokers: "k:9092", exactly_once: false, transactional_id: t}
)",
                 4, "slots[0].sink.transactional_id", {"for exactly_once: true"});
  ExpectOneError(
      R"(
slots:
  - name: a
    plugin: p
    sink: {type: kafka, brokers: "k:9092", transactional_id: shared}
  - name: b
    plugin: p
    sink: {type: kafka, brokers: "k:9092", transactional_id: own}
  - name: c
    plugin: p
    sink: {type: kafka, brokers: "k:9092", transactional_id: shared}
)",
      10, "slots[2].sink.transactional_id",
      {"transactional_id \"shared\" is also that of slot \"a\" (line 2)", "fence each other"});
  ExpectOneError(R"(
slots:
  - name: a
    plugin: p
    sink: {type: kafka, brokers: "k:9092", properties: {transactional.id: t}}
)",
                 4, "slots[0].sink.properties",
                 {"transactional.id", "set the sink's transactional_id"});
  ExpectOneError(R"(
slots:
  - name: a
    plugin: p
    sink: {type: kafka, brokers: "k:9092", position_topic: "pgslotd positions"}
)",
                 4, "slots[0].sink.position_topic", {"' '", "Kafka topic names"});
  ExpectOneError(R"(
slots:
  - name: a
    plugin: p
    sink: {type: kafka, brokers: "k:9092", transaction_records: 0}
)",
                 4, "slots[0].sink.transaction_records", {"must be greater than 0"});
}

TEST_F(ConfigTest, CheckReadsAKafkaPropertiesFileThatOnlyItsOwnerMayRead) {
  std::string props = dir_ + "/kafka.properties";
  FILE* f = fopen(props.c_str(), "w");
  ASSERT_NE(f, nullptr);
  fputs("# secrets\nsasl.mechanism=PLAIN\nsasl.password = s3cret\nbogus.setting=1\n", f);
  fclose(f);
  std::string text = R"(
slots:
  - name: a
    plugin: p
    sink:
      type: kafka
      brokers: "k:9092"
      properties_file: )" +
                     props + "\n";
  Write(text);
  Config config;
  std::vector<ConfigError> errors;
  LoadOptions check;
  check.check_paths = true;
  ASSERT_EQ(chmod(props.c_str(), 0644), 0);
  EXPECT_FALSE(LoadConfig(path_, &config, &errors, check));
  ASSERT_EQ(errors.size(), 1u) << Show(errors);
  ExpectError(errors[0], 7, "slots[0].sink.properties_file",
              {"may be read by others", "chmod 600"});
  ASSERT_EQ(chmod(props.c_str(), 0600), 0);
  errors.clear();
  EXPECT_FALSE(LoadConfig(path_, &config, &errors, check));
  ASSERT_EQ(errors.size(), 1u) << Show(errors);
  ExpectError(errors[0], 7, "slots[0].sink.properties_file",
              {"kafka.properties: unknown Kafka property bogus.setting"});
  EXPECT_EQ(errors[0].message.find("s3cret"), std::string::npos) << "never a secret";
  // At run time the file is the slot's to read: loading alone does not.
  errors.clear();
  EXPECT_TRUE(LoadConfig(path_, &config, &errors)) << Show(errors);
}

TEST_F(ConfigTest, StdoutSinkWithPath) {
  ExpectOneError(R"(
slots:
  - name: a
    plugin: p
    sink: {type: stdout,
           path: /x}
)",
                 5, "slots[0].sink.path", {"not allowed for a stdout sink"});
}

TEST_F(ConfigTest, BadMode) {
  for (const char* mode : {"\"0800\"", "\"1777\"", "\"rw-r--r--\"", "\"\"", "0o640", "-1"}) {
    SCOPED_TRACE(mode);
    ExpectOneError(std::string(R"(
slots:
  - name: a
    plugin: p
    sink: {type: file, path: /x,
           mode: )") + mode +
                       "}\n",
                   5, "slots[0].sink.mode", {"invalid mode", "0777"});
  }
}

TEST_F(ConfigTest, MissingPlugin) {
  ExpectOneError(R"(
slots:
  - name: a
    sink: {type: stdout}
)",
                 2, "slots[0].plugin", {"missing required key"});
}

TEST_F(ConfigTest, EmptyPlugin) {
  ExpectOneError(R"(
slots:
  - name: a
    plugin: ""
    sink: {type: stdout}
)",
                 3, "slots[0].plugin", {"must not be empty"});
}

TEST_F(ConfigTest, MissingSink) {
  ExpectOneError(R"(
slots:
  - name: a
    plugin: p
    sink: {type: stdout}
  - name: b
    plugin: p
)",
                 5, "slots[1].sink", {"missing required key"});
}

TEST_F(ConfigTest, MissingName) {
  ExpectOneError(R"(
slots:
  - plugin: p
    sink: {type: stdout}
)",
                 2, "slots[0].name", {"missing required key"});
}

TEST_F(ConfigTest, MissingSinkType) {
  ExpectOneError(R"(
slots:
  - name: a
    plugin: p
    sink: {path: /x}
)",
                 4, "slots[0].sink.type", {"missing required key"});
}

TEST_F(ConfigTest, EmptySlotsList) {
  ExpectOneError(R"(
log_level: info
slots: []
)",
                 2, "slots", {"at least one slot"});
}

TEST_F(ConfigTest, MissingSlots) {
  ExpectOneError(R"(
# no slots here
log_level: info
)",
                 2, "slots", {"missing required key"});
}

TEST_F(ConfigTest, SlotsNotAList) {
  ExpectOneError(R"(
slots:
  name: a
  plugin: p
)",
                 2, "slots", {"expected a list", "got a map"});
}

TEST_F(ConfigTest, SlotNotAMap) {
  ExpectOneError(R"(
slots:
  - {name: a, plugin: p, sink: {type: stdout}}
  - orders
)",
                 3, "slots[1]", {"expected a map", "\"orders\""});
}

TEST_F(ConfigTest, NullValuesAreRefused) {
  ExpectOneError(R"(
slots:
  - name: a
    plugin:
    sink: {type: stdout}
)",
                 3, "slots[0].plugin", {"no value given", "expected a string"});
  ExpectOneError(R"(
slots:
  - name: a
    plugin: p
    create: ~
    sink: {type: stdout}
)",
                 4, "slots[0].create", {"no value given", "true or false"});
  ExpectOneError(R"(
slots:
  - name: a
    plugin: p
    sink:
)",
                 4, "slots[0].sink", {"no value given", "expected a map"});
  ExpectOneError("slots:\n", 1, "slots", {"no value given", "expected a list"});
  ExpectOneError(R"(
slots:
  - name: a
    plugin: p
    options:
      x:
    sink: {type: stdout}
)",
                 5, "slots[0].options.x", {"no value given"});
}

TEST_F(ConfigTest, OptionValueNotAScalar) {
  ExpectOneError(R"(
slots:
  - name: a
    plugin: p
    options: {x: [1, 2]}
    sink: {type: stdout}
)",
                 4, "slots[0].options.x", {"got a list", "string, number or boolean"});
}

TEST_F(ConfigTest, OptionsNotAMap) {
  ExpectOneError(R"(
slots:
  - name: a
    plugin: p
    options: [x, y]
    sink: {type: stdout}
)",
                 4, "slots[0].options", {"expected a map of option names to values"});
}

TEST_F(ConfigTest, OptionWithNulByte) {
  ExpectOneError(R"(
slots:
  - name: a
    plugin: p
    options:
      ok: "1"
      x: "a\0b"
    sink: {type: stdout}
)",
                 6, "slots[0].options.x", {"NUL byte"});
  ExpectOneError(R"(
slots:
  - name: a
    plugin: p
    options:
      "a\0b": "1"
    sink: {type: stdout}
)",
                 5, "slots[0].options", {"NUL byte", "\"a\\x00b\""});
}

TEST_F(ConfigTest, EmptyOptionName) {
  ExpectOneError(R"(
slots:
  - name: a
    plugin: p
    options: {"": "1"}
    sink: {type: stdout}
)",
                 4, "slots[0].options", {"must not be empty"});
}

TEST_F(ConfigTest, OptionNamesTheReplicationGrammarRefuses) {
  // A double quote cannot be sent in a quoted identifier to PostgreSQL 15.18
  // (it answers "syntax error"); 64 bytes and more are cut by the server.
  ExpectOneError(R"(
slots:
  - name: a
    plugin: p
    options:
      ok: "1"
      'a" b': "1"
    sink: {type: stdout}
)",
                 6, "slots[0].options.a\" b", {"option name \"a\\\" b\"", "double quote"});
  std::string long_name(64, 'n');
  ExpectOneError(R"(
slots:
  - name: a
    plugin: p
    options:
      )" + long_name +
                     R"(: "1"
    sink: {type: stdout}
)",
                 5, "slots[0].options." + long_name, {"64 bytes long", "63 bytes"});
  // 63 bytes, spaces, quotes of the other kind and non-ASCII text are fine.
  Config ok = Load(R"(
slots:
  - name: a
    plugin: p
    options:
      )" + std::string(63, 'n') +
                   R"(: "1"
      "it's a name, with spaces": "2"
      "größe": "3"
    sink: {type: stdout}
)");
  ASSERT_EQ(ok.slots[0].options.size(), 3u);
  EXPECT_EQ(ok.slots[0].options[1].first, "it's a name, with spaces");
}

TEST_F(ConfigTest, PluginNamesTheReplicationGrammarRefuses) {
  ExpectOneError(R"(
slots:
  - name: a
    plugin: 'wal"2json'
    sink: {type: stdout}
)",
                 3, "slots[0].plugin", {"plugin name", "double quote"});
  ExpectOneError(R"(
slots:
  - name: a
    plugin: )" + std::string(64, 'p') +
                     R"(
    sink: {type: stdout}
)",
                 3, "slots[0].plugin", {"64 bytes long"});
}

TEST_F(ConfigTest, DurationsATimerCannotHoldAreRefused) {
  // 106752 days once passed and made the worker spin: a year is the limit.
  ExpectOneError(R"(
status_interval: 106752d
slots:
  - name: a
    plugin: p
    sink: {type: stdout}
)",
                 1, "status_interval", {"\"106752d\"", "longer than 365d"});
  ExpectOneError(R"(
slots:
  - name: a
    plugin: p
    receive_timeout: 366d
    sink: {type: stdout}
)",
                 4, "slots[0].receive_timeout", {"longer than 365d"});
  ExpectOneError(R"(
slots:
  - name: a
    plugin: p
    sink: {type: file, path: /x/y, rotate: {age: 9999999999s}}
)",
                 4, "slots[0].sink.rotate.age", {"longer than 365d"});
  Config year = Load(R"(
fsync_interval: 365d
slots:
  - name: a
    plugin: p
    sink: {type: stdout}
)");
  EXPECT_EQ(year.slots[0].fsync_interval, milliseconds(365LL * 86400000));
}

TEST_F(ConfigTest, CheckPathsReportsMissingDirectories) {
  Write(R"(
state_directory: )" +
        dir_ + R"(/state
metrics_file: /nonexistent-pgslotd/metrics.prom
slots:
  - name: a
    plugin: p
    sink: {type: file, path: )" +
        dir_ + R"(/no/such/out.log}
  - name: b
    plugin: p
    sink: {type: pipe, path: )" +
        path_ + R"(/fifo}
  - name: c
    plugin: p
    sink: {type: file, path: )" +
        dir_ + R"(/fine.log}
)");
  Config config;
  std::vector<ConfigError> errors, warnings;
  // Without check_paths, only the file is looked at: it loads.
  EXPECT_TRUE(LoadConfig(path_, &config, &errors)) << Show(errors);
  LoadOptions check;
  check.check_paths = true;
  EXPECT_FALSE(LoadConfig(path_, &config, &errors, check, &warnings));
  ASSERT_EQ(errors.size(), 3u) << Show(errors);
  ExpectError(errors[0], 2, "metrics_file",
              {"the metrics file's directory /nonexistent-pgslotd does not exist"});
  ExpectError(errors[1], 6, "slots[0].sink.path", {"/no/such does not exist"});
  ExpectError(errors[2], 9, "slots[1].sink.path", {"pgslotd.yaml is not a directory"});
  EXPECT_TRUE(warnings.empty()) << Show(warnings);
}

TEST_F(ConfigTest, WarnsOfAFileOrSinkDirectoryEveryUserMayWriteTo) {
  std::string shared = dir_ + "/shared";
  std::string group = dir_ + "/group";
  ASSERT_EQ(mkdir(shared.c_str(), 0700), 0);
  ASSERT_EQ(chmod(shared.c_str(), 01777), 0);
  ASSERT_EQ(mkdir(group.c_str(), 0700), 0);
  ASSERT_EQ(chmod(group.c_str(), 0775), 0);
  Write(R"(
slots:
  - name: a
    plugin: p
    sink: {type: file, path: )" +
        shared + R"(/a.log}
  - name: b
    plugin: p
    sink: {type: pipe, path: )" +
        shared + R"(/b.fifo}
  - name: c
    plugin: p
    sink: {type: file, path: )" +
        group + R"(/c.log}
  - name: d
    plugin: p
    sink: {type: stdout}
)");
  ASSERT_EQ(chmod(path_.c_str(), 0666), 0);
  Config config;
  std::vector<ConfigError> errors, warnings;
  EXPECT_TRUE(LoadConfig(path_, &config, &errors, LoadOptions(), &warnings)) << Show(errors);
  EXPECT_TRUE(warnings.empty()) << Show(warnings);  // reload: not asked for
  LoadOptions start;
  start.warn_world_writable = true;
  EXPECT_TRUE(LoadConfig(path_, &config, &errors, start, &warnings)) << Show(errors);
  ASSERT_EQ(warnings.size(), 3u) << Show(warnings);
  EXPECT_EQ(warnings[0].ToString(),
            path_ +
                ": warning: every user may write to the configuration file (mode 0666): "
                "anyone could change what pgslotd streams, and where to; chmod o-w " +
                path_);
  EXPECT_EQ(warnings[1].ToString(),
            path_ +
                ":4: slots[0].sink.path: warning: every user may write to the sink's "
                "directory " +
                shared +
                " (mode 1777): anyone could put a file or a link in the sink's way (pgslotd "
                "follows no link there); choose a directory only the user pgslotd runs as may "
                "write to");
  EXPECT_NE(warnings[2].ToString().find(":7: slots[1].sink.path: warning: every user may write "
                                        "to the sink's directory " +
                                        shared),
            std::string::npos)
      << Show(warnings);
}

// The errors of loading `text` (written to path_) with check_paths, and
// without in *plain.
class PathClashTest : public ConfigTest {
 protected:
  void SetUp() override {
    ConfigTest::SetUp();
    for (const char* sub : {"/real", "/sub", "/state"}) {
      ASSERT_EQ(mkdir((dir_ + sub).c_str(), 0700), 0);
    }
    ASSERT_EQ(symlink((dir_ + "/real").c_str(), (dir_ + "/link").c_str()), 0);
    ASSERT_EQ(symlink((dir_ + "/state").c_str(), (dir_ + "/statelink").c_str()), 0);
  }
  std::vector<ConfigError> Check(const std::string& text, std::vector<ConfigError>* plain) {
    Write(text);
    Config config;
    plain->clear();
    LoadConfig(path_, &config, plain);
    std::vector<ConfigError> errors;
    LoadOptions check;
    check.check_paths = true;
    LoadConfig(path_, &config, &errors, check);
    return errors;
  }
  // A config with state_directory dir_/state, metrics_file `metrics` (none
  // when empty) and a slot a, b, ... for each sink.
  std::string Yaml(const std::vector<std::string>& sinks, const std::string& metrics = "") {
    std::string yaml = "state_directory: " + dir_ + "/state\n";
    if (!metrics.empty()) yaml += "metrics_file: " + metrics + "\n";
    yaml += "slots:\n";
    char name = 'a';
    for (const std::string& sink : sinks) {
      yaml += std::string("  - name: ") + name++ + "\n    plugin: p\n    sink: " + sink + "\n";
    }
    return yaml;
  }
};

TEST_F(PathClashTest, TwoSinksOnOneFileThroughDotDotOrALinkedDirectory) {
  std::vector<ConfigError> plain;
  std::vector<ConfigError> errors =
      Check(Yaml({"{type: file, path: " + dir_ + "/real/out.log}",
                  "{type: file, path: " + dir_ + "/sub/../real/out.log}",
                  "{type: pipe, path: " + dir_ + "/link/out.log}"}),
            &plain);
  EXPECT_TRUE(plain.empty()) << Show(plain);  // the text alone cannot tell
  ASSERT_EQ(errors.size(), 2u) << Show(errors);
  ExpectError(errors[0], 8, "slots[1].sink.path",
              {"already used by slot \"a\" (line 3) (the same file as \"", "/real/out.log\")"});
  ExpectError(errors[1], 11, "slots[2].sink.path", {"already used by slot \"a\" (line 3)"});
  // An existing file is known by its device and inode, whatever leads to it.
  std::ofstream(dir_ + "/real/out.log") << "";
  ASSERT_EQ(symlink((dir_ + "/real/out.log").c_str(), (dir_ + "/sub/alias.log").c_str()), 0);
  errors = Check(Yaml({"{type: file, path: " + dir_ + "/real/out.log}",
                       "{type: file, path: " + dir_ + "/sub/alias.log}"}),
                 &plain);
  ASSERT_EQ(errors.size(), 1u) << Show(errors);
  ExpectError(errors[0], 8, "slots[1].sink.path", {"already used by slot \"a\" (line 3)"});
}

TEST_F(PathClashTest, ASinkOnAStateRecordOrItsTemporaryFile) {
  std::vector<ConfigError> plain;
  // Spelled out, even the plain loader sees it.
  std::vector<ConfigError> errors = Check(Yaml({"{type: file, path: " + dir_ + "/real/a.log}",
                                                "{type: file, path: " + dir_ + "/state/a.state}"}),
                                          &plain);
  ASSERT_EQ(plain.size(), 1u) << Show(plain);
  ASSERT_EQ(errors.size(), 1u) << Show(errors);
  for (const ConfigError& e : {plain[0], errors[0]}) {
    ExpectError(e, 8, "slots[1].sink.path",
                {"sink path \"",
                 "/state/a.state\" is the state record of slot \"a\" (line 3), "
                 "which pgslotd writes itself: choose another path"});
  }
  // Through a link to the state directory, or "..": only --check can tell.
  errors = Check(Yaml({"{type: file, path: " + dir_ + "/real/a.log}",
                       "{type: pipe, path: " + dir_ + "/statelink/a.state.tmp}",
                       "{type: file, path: " + dir_ + "/sub/../state/c.state}"}),
                 &plain);
  EXPECT_TRUE(plain.empty()) << Show(plain);
  ASSERT_EQ(errors.size(), 2u) << Show(errors);
  ExpectError(errors[0], 8, "slots[1].sink.path",
              {"is the temporary file of the state record of slot \"a\" (line 3) (the same file "
               "as \"",
               "/state/a.state.tmp\")"});
  ExpectError(errors[1], 11, "slots[2].sink.path",
              {"is the state record of slot \"c\" (line 9)"});  // its own
  // Only file sinks keep a record.
  errors = Check(Yaml({"{type: pipe, path: " + dir_ + "/real/a.fifo}",
                       "{type: file, path: " + dir_ + "/state/a.state}"}),
                 &plain);
  EXPECT_TRUE(errors.empty()) << Show(errors);
}

TEST_F(PathClashTest, TheMetricsFileOnASinkOrAStateRecord) {
  std::vector<ConfigError> plain;
  std::vector<ConfigError> errors = Check(
      Yaml({"{type: file, path: " + dir_ + "/sub/../real/m.prom.tmp}"}, dir_ + "/link/m.prom"),
      &plain);
  EXPECT_TRUE(plain.empty()) << Show(plain);
  ASSERT_EQ(errors.size(), 1u) << Show(errors);
  ExpectError(errors[0], 2, "metrics_file",
              {"the temporary file of metrics_file \"",
               "/link/m.prom.tmp\" is the sink of slot "
               "\"a\" (line 4)"});
  errors = Check(Yaml({"{type: file, path: " + dir_ + "/sub/m.prom}"}, dir_ + "/sub/../sub/m.prom"),
                 &plain);
  ASSERT_EQ(errors.size(), 1u) << Show(errors);
  ExpectError(errors[0], 2, "metrics_file",
              {"metrics_file is also the sink of slot \"a\" (line 4) (the same file as \""});
  errors = Check(Yaml({"{type: file, path: " + dir_ + "/real/a.log}"}, dir_ + "/statelink/a.state"),
                 &plain);
  EXPECT_TRUE(plain.empty()) << Show(plain);
  ASSERT_EQ(errors.size(), 1u) << Show(errors);
  ExpectError(errors[0], 2, "metrics_file",
              {"metrics_file \"",
               "/statelink/a.state\" is the state record of slot \"a\" (line "
               "4) (the same file as \"",
               "which pgslotd writes itself: choose another path"});
}

TEST_F(ConfigTest, CheckPathsNeedsTheStateDirectoryOrItsParent) {
  std::string slot = "slots:\n  - name: a\n    plugin: p\n    sink: {type: stdout}\n";
  LoadOptions check;
  check.check_paths = true;
  Config config;
  std::vector<ConfigError> errors;
  Write("state_directory: " + dir_ + "/made/by/nobody\n" + slot);
  EXPECT_FALSE(LoadConfig(path_, &config, &errors, check));
  ASSERT_EQ(errors.size(), 1u) << Show(errors);
  ExpectError(errors[0], 1, "state_directory",
              {"the state directory's parent", "/made/by does not exist"});
  errors.clear();
  // One level is created by pgslotd itself (or systemd's StateDirectory=),
  // also for the sinks inside it.
  Write("state_directory: " + dir_ +
        "/made\nslots:\n  - name: a\n    plugin: p\n    sink: {type: "
        "file, path: " +
        dir_ + "/made/out.log}\n");
  EXPECT_TRUE(LoadConfig(path_, &config, &errors, check)) << Show(errors);
  // The runtime directory likewise.
  Write("runtime_directory: " + dir_ + "/run/deeper\n" + slot);
  EXPECT_FALSE(LoadConfig(path_, &config, &errors, check));
  ASSERT_EQ(errors.size(), 1u) << Show(errors);
  ExpectError(errors[0], 1, "runtime_directory",
              {"the runtime directory's parent", "/run does not exist"});
}

TEST_F(ConfigTest, DirectoriesFollowTheConfigFileNameNotTheEnvironment) {
  EXPECT_EQ(InstanceName("/etc/pgslotd/pgslotd.yaml"), "pgslotd");
  EXPECT_EQ(InstanceName("/etc/pgslotd/orders.yaml"), "orders");
  EXPECT_EQ(InstanceName("/etc/pgslotd/orders.yml"), "orders");
  EXPECT_EQ(InstanceName("relative/x.conf"), "x.conf");
  EXPECT_EQ(InstanceName("/etc/pgslotd/.yaml"), ".yaml");  // nothing left to strip to
  // systemd's $STATE_DIRECTORY is not seen: a shell has none, and --status
  // from a shell must find the daemon systemd started.
  setenv("STATE_DIRECTORY", "/somewhere/else", 1);
  setenv("RUNTIME_DIRECTORY", "/somewhere/else", 1);
  std::string slot = "slots:\n  - name: a\n    plugin: p\n    sink: {type: stdout}\n";
  Config main = Load(slot);  // path_ is <dir>/pgslotd.yaml
  EXPECT_EQ(main.state_directory, "/var/lib/pgslotd");
  EXPECT_EQ(main.runtime_directory, "/run/pgslotd");
  EXPECT_EQ(main.control_socket, "/run/pgslotd/pgslotd.sock");
  EXPECT_EQ(main.slots[0].state_directory, "/var/lib/pgslotd");
  path_ = dir_ + "/audit.yaml";
  Config audit = Load(slot);
  EXPECT_EQ(audit.state_directory, "/var/lib/pgslotd/audit");
  EXPECT_EQ(audit.control_socket, "/run/pgslotd/audit/pgslotd.sock");
  Config given = Load("state_directory: /srv/cdc//state/\nruntime_directory: /srv/run/\n" + slot);
  EXPECT_EQ(given.state_directory, "/srv/cdc/state");
  EXPECT_EQ(given.control_socket, "/srv/run/pgslotd.sock");
  unlink(path_.c_str());
  path_ = dir_ + "/pgslotd.yaml";
  unsetenv("STATE_DIRECTORY");
  unsetenv("RUNTIME_DIRECTORY");
  ExpectOneError("runtime_directory: /" + std::string(95, 'r') + "\n" + slot, 1,
                 "runtime_directory", {"would be 109 bytes long", "at most 107"});
}

TEST_F(ConfigTest, SinkStallTimeoutDefaultsInheritsAndRestartsTheSlot) {
  Config c = Load(R"(
sink_stall_timeout: 2s
slots:
  - {name: a, plugin: p, sink: {type: stdout}}
  - {name: b, plugin: p, sink: {type: file, path: /x/b}, sink_stall_timeout: 0}
)");
  EXPECT_EQ(c.slots[0].sink_stall_timeout, milliseconds(2000));
  EXPECT_EQ(c.slots[1].sink_stall_timeout, milliseconds(0));
  EXPECT_EQ(
      Load("slots:\n  - {name: a, plugin: p, sink: {type: stdout}}\n").slots[0].sink_stall_timeout,
      milliseconds(5000));
  SlotConfig changed = c.slots[0];
  changed.sink_stall_timeout = milliseconds(3000);
  EXPECT_NE(changed, c.slots[0]) << "a reload restarts the slot's stream";
}

TEST_F(ConfigTest, DuplicateOption) {
  ExpectOneError(R"(
slots:
  - name: a
    plugin: p
    options:
      x: 1
      x: 2
    sink: {type: stdout}
)",
                 6, "slots[0].options.x", {"given twice", "line 5"});
}

TEST_F(ConfigTest, InvalidTopLevelConnection) {
  // Reported once, not once per slot.
  ExpectOneError(R"(
connection: "hots=db1"
slots:
  - {name: a, plugin: p, sink: {type: file, path: /a}}
  - {name: b, plugin: p, sink: {type: file, path: /b}}
)",
                 1, "connection", {"invalid connection string", "invalid connection option"});
}

TEST_F(ConfigTest, InvalidSlotConnection) {
  ExpectOneError(R"(
connection: "host=db1"
slots:
  - name: a
    plugin: p
    connection: "port='5432"
    sink: {type: stdout}
)",
                 5, "slots[0].connection", {"invalid connection string", "unterminated"});
}

TEST_F(ConfigTest, ConnectionErrorHidesPassword) {
  std::vector<ConfigError> errors = Errors(R"(
connection: "host=db1 password=se cret"
slots:
  - name: a
    plugin: p
    connection: "postgresql://cdc:hunter2%zz@db2/app"
    sink: {type: stdout}
)");
  ASSERT_EQ(errors.size(), 2u) << Show(errors);
  ExpectError(errors[0], 1, "connection", {"invalid connection string"});
  ExpectError(errors[1], 5, "slots[0].connection", {"invalid connection string"});
  for (const ConfigError& e : errors) {
    EXPECT_EQ(e.ToString().find("cret"), std::string::npos) << e.ToString();
    EXPECT_EQ(e.ToString().find("hunter2"), std::string::npos) << e.ToString();
  }
}

TEST_F(ConfigTest, AllErrorsAreCollected) {
  // Three problems, reported in file order even though the duplicate name is
  // found by a check that runs after every slot has been read.
  std::vector<ConfigError> errors = Errors(R"(
log_level: loud
slots:
  - name: a
    plugin: p
    sink: {type: stdout}
  - name: a
    plugin: p
    create: maybe
    sink: {type: file, path: /x}
)");
  ASSERT_EQ(errors.size(), 3u) << Show(errors);
  ExpectError(errors[0], 1, "log_level", {"\"loud\""});
  ExpectError(errors[1], 6, "slots[1].name", {"duplicate slot name"});
  ExpectError(errors[2], 8, "slots[1].create", {"\"maybe\""});
}

TEST_F(ConfigTest, FailedLoadLeavesConfigAlone) {
  Write("slots: []\n");
  Config config;
  config.log_level = "trace";
  std::vector<ConfigError> errors;
  EXPECT_FALSE(LoadConfig(path_, &config, &errors));
  EXPECT_EQ(config.log_level, "trace");
  EXPECT_TRUE(config.slots.empty());
}

// ---------------------------------------------------------------------------
// monitor_interval, metrics_file and lag_alarm.

TEST_F(ConfigTest, MonitorDefaultsWhenAbsent) {
  Config config = Load(R"(
slots:
  - {name: a, plugin: p, sink: {type: stdout}}
  - {name: b, plugin: p, sink: {type: file, path: /b}}
)");
  EXPECT_EQ(config.monitor_interval, milliseconds(10000));
  EXPECT_EQ(config.metrics_file, "");
  ASSERT_EQ(config.slots.size(), 2u);
  for (const SlotConfig& s : config.slots) {
    SCOPED_TRACE(s.name);
    EXPECT_EQ(s.lag_alarm.bytes, 1ull << 30);
    EXPECT_EQ(s.lag_alarm.seconds, milliseconds(300000));
    EXPECT_EQ(s.lag_alarm.repeat, milliseconds(600000));
    EXPECT_EQ(s.lag_alarm.safe_wal_size, 2ull << 30);
    // The schema's defaults and the struct's agree.
    EXPECT_EQ(s.lag_alarm, LagAlarmConfig());
  }
}

TEST_F(ConfigTest, EmptyLagAlarmMapsGiveDefaults) {
  Config config = Load(R"(
lag_alarm: {}
slots:
  - {name: a, plugin: p, sink: {type: stdout}, lag_alarm: {}}
)");
  EXPECT_EQ(config.slots.at(0).lag_alarm, LagAlarmConfig());
}

TEST_F(ConfigTest, MonitorIntervalAndMetricsFile) {
  Config config = Load(R"(
monitor_interval: 500ms
metrics_file: /var/lib//pgslotd/./metrics.prom
slots:
  - {name: a, plugin: p, sink: {type: file, path: /var/lib/pgslotd/a.log}}
)");
  EXPECT_EQ(config.monitor_interval, milliseconds(500));
  EXPECT_EQ(config.metrics_file, "/var/lib/pgslotd/metrics.prom");
}

TEST_F(ConfigTest, TopLevelLagAlarmAppliesToEverySlot) {
  Config config = Load(R"(
lag_alarm:
  bytes: 100MB
  seconds: 30s
  repeat: 1h
  safe_wal_size: 0B
slots:
  - {name: a, plugin: p, sink: {type: stdout}}
  - {name: b, plugin: p, sink: {type: file, path: /b}}
)");
  LagAlarmConfig expected;
  expected.bytes = 100000000;
  expected.seconds = milliseconds(30000);
  expected.repeat = milliseconds(3600000);
  expected.safe_wal_size = 0;
  ASSERT_EQ(config.slots.size(), 2u);
  EXPECT_EQ(config.slots[0].lag_alarm, expected);
  EXPECT_EQ(config.slots[1].lag_alarm, expected);
}

TEST_F(ConfigTest, SlotLagAlarmOverridesKeyByKey) {
  Config config = Load(R"(
lag_alarm:
  seconds: 1m
  repeat: 30s
slots:
  - name: a
    plugin: p
    sink: {type: stdout}
    lag_alarm:
      bytes: 64MiB
  - name: b
    plugin: p
    sink: {type: file, path: /b}
  - name: c
    plugin: p
    sink: {type: file, path: /c}
    lag_alarm: {repeat: 5m, safe_wal_size: 0B}
)");
  ASSERT_EQ(config.slots.size(), 3u);
  // Top level: seconds and repeat set; bytes and safe_wal_size default.
  LagAlarmConfig top;
  top.seconds = milliseconds(60000);
  top.repeat = milliseconds(30000);
  EXPECT_EQ(config.slots[1].lag_alarm, top);

  // Only bytes is the slot's own; the rest comes from the top level, then
  // the defaults.
  const LagAlarmConfig& a = config.slots[0].lag_alarm;
  EXPECT_EQ(a.bytes, 64ull << 20);
  EXPECT_EQ(a.seconds, milliseconds(60000));
  EXPECT_EQ(a.repeat, milliseconds(30000));
  EXPECT_EQ(a.safe_wal_size, 2ull << 30);

  const LagAlarmConfig& c = config.slots[2].lag_alarm;
  EXPECT_EQ(c.bytes, 1ull << 30);
  EXPECT_EQ(c.seconds, milliseconds(60000));
  EXPECT_EQ(c.repeat, milliseconds(300000));
  EXPECT_EQ(c.safe_wal_size, 0u);
}

TEST_F(ConfigTest, SlotLagAlarmWithoutTopLevel) {
  Config config = Load(R"(
slots:
  - name: a
    plugin: p
    sink: {type: stdout}
    lag_alarm: {seconds: 10s}
)");
  LagAlarmConfig expected;
  expected.seconds = milliseconds(10000);
  EXPECT_EQ(config.slots.at(0).lag_alarm, expected);
}

TEST_F(ConfigTest, SlotEqualityIgnoresLagAlarm) {
  SlotConfig a;
  a.name = "a";
  SlotConfig b = a;
  b.lag_alarm.bytes = 1;
  b.lag_alarm.seconds = milliseconds(1);
  b.lag_alarm.repeat = milliseconds(1);
  b.lag_alarm.safe_wal_size = 0;
  // A reload must not restart a slot's stream for a new alarm threshold...
  EXPECT_EQ(a, b);
  EXPECT_FALSE(a != b);
  // ... but the thresholds themselves do differ.
  EXPECT_NE(a.lag_alarm, b.lag_alarm);
  EXPECT_FALSE(a.lag_alarm == b.lag_alarm);
}

TEST_F(ConfigTest, LagAlarmEqualitySeesEveryField) {
  const LagAlarmConfig base;
  EXPECT_EQ(base, LagAlarmConfig());
  LagAlarmConfig other = base;
  other.bytes += 1;
  EXPECT_NE(base, other);
  other = base;
  other.seconds += milliseconds(1);
  EXPECT_NE(base, other);
  other = base;
  other.repeat += milliseconds(1);
  EXPECT_NE(base, other);
  other = base;
  other.safe_wal_size = 0;
  EXPECT_NE(base, other);
}

TEST_F(ConfigTest, ReloadedFileDifferingInLagAlarmOnly) {
  const char* before = R"(
lag_alarm: {bytes: 1GiB}
slots:
  - {name: a, plugin: p, sink: {type: file, path: /a}}
)";
  const char* after = R"(
lag_alarm: {bytes: 2GiB}
slots:
  - {name: a, plugin: p, sink: {type: file, path: /a}, lag_alarm: {repeat: 1m}}
)";
  Config old_config = Load(before);
  Config new_config = Load(after);
  ASSERT_EQ(old_config.slots.size(), 1u);
  ASSERT_EQ(new_config.slots.size(), 1u);
  EXPECT_EQ(old_config.slots[0], new_config.slots[0]);
  EXPECT_NE(old_config.slots[0].lag_alarm, new_config.slots[0].lag_alarm);
  EXPECT_EQ(new_config.slots[0].lag_alarm.bytes, 2ull << 30);
  EXPECT_EQ(new_config.slots[0].lag_alarm.repeat, milliseconds(60000));
}

TEST_F(ConfigTest, UnknownTopLevelLagAlarmKey) {
  ExpectOneError(R"(
lag_alarm:
  bytes: 1GiB
  sizes: 2GiB
slots:
  - {name: a, plugin: p, sink: {type: stdout}}
)",
                 3, "lag_alarm.sizes",
                 {"unknown key \"sizes\"", "(known keys: bytes, seconds, repeat, safe_wal_size)"});
}

TEST_F(ConfigTest, UnknownSlotLagAlarmKey) {
  ExpectOneError(R"(
slots:
  - {name: a, plugin: p, sink: {type: stdout}}
  - name: b
    plugin: p
    sink: {type: file, path: /b}
    lag_alarm:
      sizes: 1GiB
)",
                 7, "slots[1].lag_alarm.sizes", {"unknown key \"sizes\""});
}

TEST_F(ConfigTest, LagAlarmNotAMap) {
  ExpectOneError(R"(
lag_alarm: 1GiB
slots:
  - {name: a, plugin: p, sink: {type: stdout}}
)",
                 1, "lag_alarm", {"expected a map", "\"1GiB\""});
  ExpectOneError(R"(
slots:
  - name: a
    plugin: p
    sink: {type: stdout}
    lag_alarm: [1GiB, 5m]
)",
                 5, "slots[0].lag_alarm", {"expected a map", "got a list"});
  ExpectOneError(R"(
slots:
  - name: a
    plugin: p
    sink: {type: stdout}
    lag_alarm:
)",
                 5, "slots[0].lag_alarm", {"no value given", "expected a map"});
}

TEST_F(ConfigTest, LagAlarmKeyGivenTwice) {
  ExpectOneError(R"(
lag_alarm:
  seconds: 1m
  seconds: 2m
slots:
  - {name: a, plugin: p, sink: {type: stdout}}
)",
                 3, "lag_alarm.seconds", {"given twice", "line 2"});
}

TEST_F(ConfigTest, BadLagAlarmSize) {
  ExpectOneError(R"(
lag_alarm:
  bytes: 1G
slots:
  - {name: a, plugin: p, sink: {type: stdout}}
)",
                 2, "lag_alarm.bytes", {"invalid size \"1G\"", "GiB"});
  ExpectOneError(R"(
slots:
  - name: a
    plugin: p
    sink: {type: stdout}
    lag_alarm:
      safe_wal_size: -1GiB
)",
                 6, "slots[0].lag_alarm.safe_wal_size", {"invalid size \"-1GiB\""});
  ExpectOneError(R"(
slots:
  - name: a
    plugin: p
    sink: {type: stdout}
    lag_alarm: {bytes: [1]}
)",
                 5, "slots[0].lag_alarm.bytes", {"expected a size", "got a list"});
}

TEST_F(ConfigTest, BadLagAlarmDuration) {
  ExpectOneError(R"(
lag_alarm:
  repeat: 10
slots:
  - {name: a, plugin: p, sink: {type: stdout}}
)",
                 2, "lag_alarm.repeat", {"invalid duration \"10\"", "ms, s, m, h or d"});
  ExpectOneError(R"(
slots:
  - name: a
    plugin: p
    sink: {type: stdout}
    lag_alarm:
      seconds: 1.5m
)",
                 6, "slots[0].lag_alarm.seconds", {"invalid duration \"1.5m\""});
  ExpectOneError(R"(
slots:
  - name: a
    plugin: p
    sink: {type: stdout}
    lag_alarm:
      seconds:
)",
                 6, "slots[0].lag_alarm.seconds", {"no value given", "duration"});
}

TEST_F(ConfigTest, LagAlarmZeroRefusedWherePositiveRequired) {
  for (const char* entry : {"bytes: 0B", "seconds: 0", "repeat: 0ms"}) {
    SCOPED_TRACE(entry);
    std::string name(entry, std::string(entry).find(':'));
    ExpectOneError(std::string("lag_alarm:\n  ") + entry + R"(
slots:
  - {name: a, plugin: p, sink: {type: stdout}}
)",
                   2, "lag_alarm." + name, {"must be greater than 0"});
    ExpectOneError(std::string(R"(
slots:
  - name: a
    plugin: p
    sink: {type: stdout}
    lag_alarm:
      )") + entry + "\n",
                   6, "slots[0].lag_alarm." + name, {"must be greater than 0"});
  }
}

TEST_F(ConfigTest, MonitorIntervalRefusals) {
  ExpectOneError(R"(
monitor_interval: 0
slots:
  - {name: a, plugin: p, sink: {type: stdout}}
)",
                 1, "monitor_interval", {"must be greater than 0"});
  ExpectOneError(R"(
monitor_interval: 10
slots:
  - {name: a, plugin: p, sink: {type: stdout}}
)",
                 1, "monitor_interval", {"invalid duration \"10\""});
}

TEST_F(ConfigTest, MonitorKeysAreTopLevelOnly) {
  ExpectOneError(R"(
slots:
  - name: a
    plugin: p
    sink: {type: stdout}
    monitor_interval: 5s
)",
                 5, "slots[0].monitor_interval", {"unknown key \"monitor_interval\""});
  ExpectOneError(R"(
slots:
  - name: a
    plugin: p
    sink: {type: stdout}
    metrics_file: /m.prom
)",
                 5, "slots[0].metrics_file", {"unknown key \"metrics_file\""});
}

TEST_F(ConfigTest, RelativeMetricsFile) {
  ExpectOneError(R"(
log_level: info
metrics_file: metrics/pgslotd.prom
slots:
  - {name: a, plugin: p, sink: {type: stdout}}
)",
                 2, "metrics_file", {"absolute", "\"metrics/pgslotd.prom\""});
  ExpectOneError(R"(
metrics_file: ""
slots:
  - {name: a, plugin: p, sink: {type: stdout}}
)",
                 1, "metrics_file", {"absolute", "\"\""});
  ExpectOneError(R"(
metrics_file: [/a, /b]
slots:
  - {name: a, plugin: p, sink: {type: stdout}}
)",
                 1, "metrics_file", {"expected a string", "got a list"});
}

TEST_F(ConfigTest, MetricsFileIsASinkPath) {
  // Compared after normalization, as sink paths are.
  ExpectOneError(R"(
metrics_file: /var/lib/pgslotd//metrics.prom/
slots:
  - {name: a, plugin: p, sink: {type: stdout}}
  - name: b
    plugin: p
    sink: {type: pipe, path: /var/lib/pgslotd/./metrics.prom}
)",
                 1, "metrics_file", {"metrics_file is also the sink of slot \"b\" (line 4)"});
}

TEST_F(ConfigTest, LagAlarmErrorsAreCollected) {
  std::vector<ConfigError> errors = Errors(R"(
lag_alarm:
  bytes: 0B
  repeat: often
metrics_file: rel
slots:
  - name: a
    plugin: p
    sink: {type: stdout}
    lag_alarm: {seconds: 0, extra: 1}
)");
  ASSERT_EQ(errors.size(), 5u) << Show(errors);
  ExpectError(errors[0], 2, "lag_alarm.bytes", {"greater than 0"});
  ExpectError(errors[1], 3, "lag_alarm.repeat", {"invalid duration \"often\""});
  ExpectError(errors[2], 4, "metrics_file", {"absolute"});
  // Same line: in the order they are written.
  ExpectError(errors[3], 9, "slots[0].lag_alarm.seconds", {"greater than 0"});
  ExpectError(errors[4], 9, "slots[0].lag_alarm.extra", {"unknown key \"extra\""});
}

// ---------------------------------------------------------------------------
// MergeConninfo.

TEST(MergeConninfoTest, OverrideWins) {
  std::string merged, err;
  ASSERT_TRUE(MergeConninfo("host=a port=1 dbname=x", "port=2 user=u", &merged, &err)) << err;
  EXPECT_EQ(merged, "user='u' dbname='x' host='a' port='2'");
}

TEST(MergeConninfoTest, EmptyInputs) {
  std::string merged = "junk", err;
  ASSERT_TRUE(MergeConninfo("", "", &merged, &err));
  EXPECT_EQ(merged, "");
  ASSERT_TRUE(MergeConninfo("", "host=h", &merged, &err));
  EXPECT_EQ(merged, "host='h'");
  ASSERT_TRUE(MergeConninfo("  host=h  ", "", &merged, &err));
  EXPECT_EQ(merged, "host='h'");
}

TEST(MergeConninfoTest, UriInput) {
  std::string merged, err;
  ASSERT_TRUE(MergeConninfo("postgresql://cdc@db.example:5433/shop?sslmode=require",
                            "application_name=pgslotd dbname=other", &merged, &err))
      << err;
  EXPECT_EQ(merged,
            "user='cdc' dbname='other' host='db.example' port='5433' "
            "application_name='pgslotd' sslmode='require'");
  ASSERT_TRUE(MergeConninfo("host=a", "postgres://b/db", &merged, &err)) << err;
  EXPECT_EQ(merged, "dbname='db' host='b'");
}

TEST(MergeConninfoTest, QuotesValues) {
  std::string merged, err;
  ASSERT_TRUE(MergeConninfo(R"(application_name='it\'s a \\ test' options='')", "", &merged, &err))
      << err;
  EXPECT_EQ(merged, R"(options='' application_name='it\'s a \\ test')");
  // libpq reads the result back to the same values.
  char* errmsg = nullptr;
  PQconninfoOption* options = PQconninfoParse(merged.c_str(), &errmsg);
  ASSERT_NE(options, nullptr) << errmsg;
  std::vector<std::pair<std::string, std::string>> set;
  for (PQconninfoOption* o = options; o->keyword != nullptr; ++o) {
    if (o->val != nullptr) set.emplace_back(o->keyword, o->val);
  }
  PQconninfoFree(options);
  std::vector<std::pair<std::string, std::string>> expected = {
      {"options", ""}, {"application_name", R"(it's a \ test)"}};
  EXPECT_EQ(set, expected);
}

TEST(MergeConninfoTest, InvalidInput) {
  std::string merged = "unchanged", err;
  EXPECT_FALSE(MergeConninfo("hots=x", "", &merged, &err));
  EXPECT_EQ(err, "invalid connection option \"hots\"");  // trimmed, and shown in full
  EXPECT_EQ(merged, "unchanged");
  err.clear();
  EXPECT_FALSE(MergeConninfo("host=x", "dbname", &merged, &err));
  EXPECT_NE(err.find("missing \"=\""), std::string::npos) << err;
  err.clear();
  EXPECT_FALSE(MergeConninfo("postgresql://h/db?foo", "", &merged, &err));
  EXPECT_NE(err.find("URI query parameter"), std::string::npos) << err;
}

TEST(MergeConninfoTest, PasswordNeverInError) {
  struct Case {
    const char* conninfo;
    const char* secret;
  };
  for (const Case& c : {
           Case{"host=a password=se cret", "cret"},
           Case{"host=a password='s3cr3t", "s3cr3t"},
           Case{"password=abc hots=x", "abc"},
           Case{"postgresql://cdc:pa%zzword@h/db", "zzword"},
           Case{"postgresql://cdc:topsecret@[::1/db", "topsecret"},
           Case{"postgresql://cdc:topsecret@[::1]x/db", "topsecret"},
           Case{"postgresql://h/db?password=topsecret&bad", "topsecret"},
           Case{"postgresql://h/db?pass%77ord=topsecret&a=b=c", "topsecret"},
           Case{"dbname=postgresql://u:p w@h/db", "w@h"},
           Case{"sslpassword=key phrase", "phrase"},
       }) {
    for (bool as_override : {false, true}) {
      SCOPED_TRACE(std::string(c.conninfo) + (as_override ? " (override)" : " (base)"));
      std::string merged, err;
      bool ok = as_override ? MergeConninfo("host=x", c.conninfo, &merged, &err)
                            : MergeConninfo(c.conninfo, "", &merged, &err);
      EXPECT_FALSE(ok);
      EXPECT_FALSE(err.empty());
      EXPECT_EQ(err.find(c.secret), std::string::npos) << err;
    }
  }
}

// ---------------------------------------------------------------------------
// receive_timeout and rotate.

TEST_F(ConfigTest, ReceiveTimeoutDefaultTopLevelAndSlot) {
  Config c = Load(R"(
receive_timeout: 20s
slots:
  - {name: a, plugin: p, sink: {type: stdout}}
  - {name: b, plugin: p, receive_timeout: 0, sink: {type: file, path: /b}}
)");
  EXPECT_EQ(c.slots[0].receive_timeout, Duration(20000));
  EXPECT_EQ(c.slots[1].receive_timeout, Duration(0));
  Config d = Load("slots:\n  - {name: a, plugin: p, sink: {type: stdout}}\n");
  EXPECT_EQ(d.slots[0].receive_timeout, Duration(60000));
}

TEST_F(ConfigTest, BadReceiveTimeout) {
  ExpectOneError("receive_timeout: soon\nslots:\n  - {name: a, plugin: p, sink: {type: stdout}}\n",
                 1, "receive_timeout", {"invalid duration \"soon\""});
}

TEST_F(ConfigTest, RotateIsReadAndTakesPartInEquality) {
  Config c = Load(R"(
slots:
  - name: a
    plugin: p
    sink:
      type: file
      path: /a
      rotate: {size: 1GiB, keep: 3, age: 1d}
  - {name: b, plugin: p, sink: {type: file, path: /b, rotate: {age: 1h}}}
)");
  EXPECT_EQ(c.slots[0].sink.rotate.size, 1ull << 30);
  EXPECT_EQ(c.slots[0].sink.rotate.keep, 3u);
  EXPECT_EQ(c.slots[0].sink.rotate.age, Duration(86400000));
  EXPECT_EQ(c.slots[1].sink.rotate.size, 0u);
  EXPECT_EQ(c.slots[1].sink.rotate.keep, 10u);
  EXPECT_TRUE(c.slots[1].sink.rotate.enabled());
  SlotConfig other = c.slots[0];
  other.sink.rotate.keep = 4;
  EXPECT_NE(other, c.slots[0]);
}

TEST_F(ConfigTest, RotateRefusals) {
  const std::string head = "slots:\n  - name: a\n    plugin: p\n    sink:\n";
  ExpectOneError(head + "      {type: pipe, path: /p, rotate: {size: 1MiB}}\n", 5,
                 "slots[0].sink.rotate", {"only a file sink can rotate", "pipe"});
  ExpectOneError(head + "      {type: stdout, rotate: {size: 1MiB}}\n", 5, "slots[0].sink.rotate",
                 {"not allowed for a stdout sink"});
  ExpectOneError(head + "      {type: file, path: /f, rotate: {keep: 0, size: 1MiB}}\n", 5,
                 "slots[0].sink.rotate.keep", {"must be from 1 to 1000"});
  ExpectOneError(head + "      {type: file, path: /f, rotate: {keep: -1, size: 1MiB}}\n", 5,
                 "slots[0].sink.rotate.keep", {"expected a whole number"});
  ExpectOneError(head + "      {type: file, path: /f, rotate: {keep: many, size: 1MiB}}\n", 5,
                 "slots[0].sink.rotate.keep", {"invalid value \"many\"", "whole number"});
  ExpectOneError(head + "      {type: file, path: /f, rotate: {size: 0B}}\n", 5,
                 "slots[0].sink.rotate.size", {"must be greater than 0"});
  ExpectOneError(head + "      {type: file, path: /f, rotate: {keep: 2}}\n", 5,
                 "slots[0].sink.rotate", {"give size, age or both"});
  ExpectOneError(head + "      {type: file, path: /f, rotate: {size: 1MiB, every: 1d}}\n", 5,
                 "slots[0].sink.rotate.every", {"unknown key \"every\"", "size, keep, age"});
  ExpectOneError(head + "      {type: file, path: /f, rotate: 1GiB}\n", 5, "slots[0].sink.rotate",
                 {"expected a map"});
}

// Each kind of sink is a row of kSinkKinds, and the loader derives its
// checks from the row: the keys a kind does not take are refused in the
// words of old, in the order of the schema's rows when on one line.
TEST_F(ConfigTest, ASinkKeyAKindDoesNotTakeIsRefusedByItsRow) {
  const std::string head = "slots:\n  - name: a\n    plugin: p\n    sink:\n";
  std::vector<ConfigError> errors =
      Errors(head + "      {type: stdout, rotate: {size: 1MiB}, mode: \"0600\", path: /x}\n");
  ASSERT_EQ(errors.size(), 3u) << Show(errors);
  EXPECT_EQ(errors[0].ToString(), path_ + ":5: slots[0].sink.path: not allowed for a stdout sink");
  EXPECT_EQ(errors[1].ToString(), path_ + ":5: slots[0].sink.mode: not allowed for a stdout sink");
  EXPECT_EQ(errors[2].ToString(),
            path_ + ":5: slots[0].sink.rotate: not allowed for a stdout sink");

  // A kind with a path that does not rotate: told which kinds do, and its
  // path is still read.
  errors = Errors(head + "      type: pipe\n      rotate: {size: 1MiB}\n      path: rel\n");
  ASSERT_EQ(errors.size(), 2u) << Show(errors);
  EXPECT_EQ(errors[0].ToString(),
            path_ + ":6: slots[0].sink.rotate: only a file sink can rotate, not a pipe sink");
  EXPECT_EQ(errors[1].ToString(),
            path_ + ":7: slots[0].sink.path: must be an absolute path, got \"rel\"");
  ExpectOneError(head + "      {type: pipe, mode: \"0640\"}\n", 5, "slots[0].sink.path",
                 {"missing required key (a pipe sink needs an absolute path)"});

  // Every key a kind takes is read.
  Config c = Load(head + "      {type: file, path: /f, mode: \"0640\", rotate: {age: 1h}}\n" +
                  "  - {name: b, plugin: p, sink: {type: pipe, path: /p, mode: \"0604\"}}\n");
  EXPECT_EQ(c.slots[0].sink.mode, 0640u);
  EXPECT_EQ(c.slots[0].sink.rotate.age, Duration(3600000));
  EXPECT_EQ(c.slots[1].sink.type, SinkType::kPipe);
  EXPECT_EQ(c.slots[1].sink.mode, 0604u);
}

// A kind at most one slot may use (stdout) is refused for every slot after
// the first, each time naming the first; the other kinds are not limited.
TEST_F(ConfigTest, AOneSlotKindIsRefusedInEverySlotButTheFirst) {
  std::vector<ConfigError> errors = Errors(R"(
slots:
  - {name: a, plugin: p, sink: {type: stdout}}
  - {name: b, plugin: p, sink: {type: pipe, path: /p}}
  - {name: c, plugin: p, sink: {type: stdout}}
  - {name: d, plugin: p, sink: {type: stdout}}
  - {name: e, plugin: p, sink: {type: pipe, path: /q}}
)");
  ASSERT_EQ(errors.size(), 2u) << Show(errors);
  const std::string taken = "only one slot may write to stdout; slot \"a\" (line 2) already does";
  EXPECT_EQ(errors[0].ToString(), path_ + ":4: slots[2].sink.type: " + taken);
  EXPECT_EQ(errors[1].ToString(), path_ + ":5: slots[3].sink.type: " + taken);
}

// ---------------------------------------------------------------------------
// The schema's rows: defaults, equality and what a reload does.

// The structs hold no default of their own: a default-constructed one holds
// what a file that sets no optional key gives.
TEST_F(ConfigTest, DefaultConstructedStructsHoldTheRowsDefaults) {
  Config config = Load(R"(
state_directory: /s
slots:
  - {name: a, plugin: p, sink: {type: file, path: /a/b, rotate: {size: 1MiB}}}
)");
  const Config defaults;
  EXPECT_EQ(config.log_level, defaults.log_level);
  EXPECT_EQ(config.monitor_interval, defaults.monitor_interval);
  EXPECT_EQ(config.metrics_file, defaults.metrics_file);
  ASSERT_EQ(config.slots.size(), 1u);
  SlotConfig expected;
  expected.name = "a";
  expected.plugin = "p";
  expected.sink.type = SinkType::kFile;
  expected.sink.path = "/a/b";
  expected.sink.rotate.size = 1 << 20;
  expected.state_directory = "/s";
  const SlotConfig& loaded = config.slots[0];
  EXPECT_EQ(loaded, expected);
  EXPECT_EQ(loaded.lag_alarm, expected.lag_alarm);
  EXPECT_EQ(loaded.sink.rotate, expected.sink.rotate);
  // And they are the documented ones (docs/config.md).
  EXPECT_EQ(defaults.log_level, "info");
  EXPECT_EQ(defaults.monitor_interval, milliseconds(10000));
  EXPECT_EQ(expected.status_interval, milliseconds(10000));
  EXPECT_EQ(expected.fsync_interval, milliseconds(1000));
  EXPECT_EQ(expected.receive_timeout, milliseconds(60000));
  EXPECT_EQ(expected.sink_stall_timeout, milliseconds(5000));
  EXPECT_EQ(expected.buffer_size, 8u << 20);
  EXPECT_EQ(expected.format, OutputFormat::kRaw);
  EXPECT_EQ(SinkConfig().mode, 0600u);
  EXPECT_EQ(RotateConfig().keep, 10u);
  EXPECT_FALSE(RotateConfig().enabled());
  EXPECT_EQ(LagAlarmConfig().bytes, 1ull << 30);
  EXPECT_EQ(LagAlarmConfig().safe_wal_size, 2ull << 30);
}

// One file with every key that holds a value; each case below changes one.
// The slot inherits the top-level keys it may override.
constexpr char kEveryKey[] = R"(
connection: "host=h1"
status_interval: 10s
fsync_interval: 1s
sink_stall_timeout: 5s
receive_timeout: 60s
buffer_size: 8MiB
log_level: info
monitor_interval: 10s
state_directory: /state/a
runtime_directory: /run/a
metrics_file: /m/metrics.prom
lag_alarm:
  bytes: 1GiB
  seconds: 5m
  repeat: 10m
  safe_wal_size: 2GiB
slots:
  - name: a
    connection: "port=5432"
    plugin: pgoutput
    create: false
    options: {proto_version: 1, publication_names: p}
    format: raw
    sink: {type: file, path: /out/a, mode: "0600", rotate: {size: 1GiB, keep: 10, age: 1d}}
)";

// The slot's keys from create on, and the same as a json slot that pgslotd
// creates with a stdout sink (what a snapshot needs), with and without one.
constexpr char kStreamSinkAnchor[] = R"(create: false
    options: {proto_version: 1, publication_names: p}
    format: raw
    sink: {type: file, path: /out/a, mode: "0600", rotate: {size: 1GiB, keep: 10, age: 1d}})";
constexpr char kJsonStdoutCreated[] = R"(create: true
    options: {proto_version: 1, publication_names: p}
    format: json
    sink: {type: stdout})";
constexpr char kJsonStdoutCreatedSnapshot[] = R"(create: true
    options: {proto_version: 1, publication_names: p}
    format: json
    snapshot: initial
    sink: {type: stdout})";
constexpr char kJsonStdoutCreatedSnapshotKeyless[] = R"(create: true
    options: {proto_version: 1, publication_names: p}
    format: json
    snapshot: initial
    snapshot_keyless: read_whole
    sink: {type: stdout})";
constexpr char kJsonStdoutCreatedSnapshotChunks[] = R"(create: true
    options: {proto_version: 1, publication_names: p}
    format: json
    snapshot: initial
    snapshot_chunk_rows: 5
    sink: {type: stdout})";

// A change of one key: kEveryKey with `anchor` replaced by `before` (nullptr:
// left as it is), then by `after`.
struct KeyChange {
  const char* key;  // as ReloadPolicies() names it
  Reload reload;    // what a reload has always done about it
  const char* anchor;
  const char* before;
  const char* after;
};

const KeyChange kKeyChanges[] = {
    {"connection", Reload::kRestartsSlot, "host=h1", nullptr, "host=h2"},
    {"status_interval", Reload::kRestartsSlot, "\nstatus_interval: 10s", nullptr,
     "\nstatus_interval: 11s"},
    {"fsync_interval", Reload::kRestartsSlot, "\nfsync_interval: 1s", nullptr,
     "\nfsync_interval: 0"},
    {"sink_stall_timeout", Reload::kRestartsSlot, "\nsink_stall_timeout: 5s", nullptr,
     "\nsink_stall_timeout: 6s"},
    {"receive_timeout", Reload::kRestartsSlot, "\nreceive_timeout: 60s", nullptr,
     "\nreceive_timeout: 0"},
    {"buffer_size", Reload::kRestartsSlot, "\nbuffer_size: 8MiB", nullptr, "\nbuffer_size: 16MiB"},
    {"log_level", Reload::kLive, "log_level: info", nullptr, "log_level: debug"},
    {"monitor_interval", Reload::kLive, "monitor_interval: 10s", nullptr, "monitor_interval: 1s"},
    {"state_directory", Reload::kRestartsDaemon, "/state/a", nullptr, "/state/b"},
    {"runtime_directory", Reload::kRestartsDaemon, "/run/a", nullptr, "/run/b"},
    {"metrics_file", Reload::kLive, "/m/metrics.prom", nullptr, "/m/other.prom"},
    {"slots[].name", Reload::kRestartsSlot, "name: a", nullptr, "name: b"},
    {"slots[].connection", Reload::kRestartsSlot, "port=5432", nullptr, "port=5433"},
    {"slots[].plugin", Reload::kRestartsSlot, "plugin: pgoutput", nullptr, "plugin: wal2json"},
    {"slots[].create", Reload::kRestartsSlot, "create: false", nullptr, "create: true"},
    {"slots[].options", Reload::kRestartsSlot, "proto_version: 1", nullptr, "proto_version: 2"},
    {"slots[].include_transactions", Reload::kRestartsSlot, "format: raw", "format: json",
     "format: json\n    include_transactions: true"},
    {"slots[].format", Reload::kRestartsSlot, "format: raw", nullptr, "format: json"},
    {"slots[].snapshot", Reload::kRestartsSlot, kStreamSinkAnchor, kJsonStdoutCreated,
     kJsonStdoutCreatedSnapshot},
    {"slots[].snapshot_chunk_rows", Reload::kRestartsSlot, kStreamSinkAnchor,
     kJsonStdoutCreatedSnapshot, kJsonStdoutCreatedSnapshotChunks},
    {"slots[].snapshot_keyless", Reload::kRestartsSlot, kStreamSinkAnchor,
     kJsonStdoutCreatedSnapshot, kJsonStdoutCreatedSnapshotKeyless},
    {"slots[].status_interval", Reload::kRestartsSlot, "format: raw", nullptr,
     "format: raw\n    status_interval: 11s"},
    {"slots[].fsync_interval", Reload::kRestartsSlot, "format: raw", nullptr,
     "format: raw\n    fsync_interval: 0"},
    {"slots[].receive_timeout", Reload::kRestartsSlot, "format: raw", nullptr,
     "format: raw\n    receive_timeout: 0"},
    {"slots[].sink_stall_timeout", Reload::kRestartsSlot, "format: raw", nullptr,
     "format: raw\n    sink_stall_timeout: 0"},
    {"slots[].buffer_size", Reload::kRestartsSlot, "format: raw", nullptr,
     "format: raw\n    buffer_size: 1MiB"},
    {"slots[].sink.type", Reload::kRestartsSlot,
     "type: file, path: /out/a, mode: \"0600\", "
     "rotate: {size: 1GiB, keep: 10, age: 1d}",
     "type: pipe, path: /out/a", "type: file, path: /out/a"},
    {"slots[].sink.path", Reload::kRestartsSlot, "path: /out/a", nullptr, "path: /out/b"},
    {"slots[].sink.mode", Reload::kRestartsSlot, "mode: \"0600\"", nullptr, "mode: \"0640\""},
    {"slots[].sink.brokers", Reload::kRestartsSlot,
     "type: file, path: /out/a, mode: \"0600\", "
     "rotate: {size: 1GiB, keep: 10, age: 1d}",
     "type: kafka, brokers: \"b1:9092\", topic: t1, key: primary_key, exactly_once: true, "
     "properties: {linger.ms: \"5\"}, properties_file: /k/p1, transactional_id: x1",
     "type: kafka, brokers: \"b2:9092\", topic: t1, key: primary_key, exactly_once: true, "
     "properties: {linger.ms: \"5\"}, properties_file: /k/p1, transactional_id: x1"},
    {"slots[].sink.topic", Reload::kRestartsSlot,
     "type: file, path: /out/a, mode: \"0600\", "
     "rotate: {size: 1GiB, keep: 10, age: 1d}",
     "type: kafka, brokers: \"b1:9092\", topic: t1, key: primary_key, exactly_once: true, "
     "properties: {linger.ms: \"5\"}, properties_file: /k/p1, transactional_id: x1",
     "type: kafka, brokers: \"b1:9092\", topic: t2, key: primary_key, exactly_once: true, "
     "properties: {linger.ms: \"5\"}, properties_file: /k/p1, transactional_id: x1"},
    {"slots[].sink.key", Reload::kRestartsSlot,
     "type: file, path: /out/a, mode: \"0600\", "
     "rotate: {size: 1GiB, keep: 10, age: 1d}",
     "type: kafka, brokers: \"b1:9092\", topic: t1, key: primary_key, exactly_once: true, "
     "properties: {linger.ms: \"5\"}, properties_file: /k/p1, transactional_id: x1",
     "type: kafka, brokers: \"b1:9092\", topic: t1, key: none, exactly_once: true, properties: "
     "{linger.ms: \"5\"}, properties_file: /k/p1, transactional_id: x1"},
    {"slots[].sink.exactly_once", Reload::kRestartsSlot,
     "type: file, path: /out/a, mode: \"0600\", "
     "rotate: {size: 1GiB, keep: 10, age: 1d}",
     "type: kafka, brokers: \"b1:9092\", topic: t1, key: primary_key, exactly_once: true, "
     "properties: {linger.ms: \"5\"}, properties_file: /k/p1",
     "type: kafka, brokers: \"b1:9092\", topic: t1, key: primary_key, exactly_once: false, "
     "properties: {linger.ms: \"5\"}, properties_file: /k/p1"},
    {"slots[].sink.properties", Reload::kRestartsSlot,
     "type: file, path: /out/a, mode: \"0600\", "
     "rotate: {size: 1GiB, keep: 10, age: 1d}",
     "type: kafka, brokers: \"b1:9092\", topic: t1, key: primary_key, exactly_once: true, "
     "properties: {linger.ms: \"5\"}, properties_file: /k/p1, transactional_id: x1",
     "type: kafka, brokers: \"b1:9092\", topic: t1, key: primary_key, exactly_once: true, "
     "properties: {linger.ms: \"6\"}, properties_file: /k/p1, transactional_id: x1"},
    {"slots[].sink.properties_file", Reload::kRestartsSlot,
     "type: file, path: /out/a, mode: \"0600\", "
     "rotate: {size: 1GiB, keep: 10, age: 1d}",
     "type: kafka, brokers: \"b1:9092\", topic: t1, key: primary_key, exactly_once: true, "
     "properties: {linger.ms: \"5\"}, properties_file: /k/p1, transactional_id: x1",
     "type: kafka, brokers: \"b1:9092\", topic: t1, key: primary_key, exactly_once: true, "
     "properties: {linger.ms: \"5\"}, properties_file: /k/p2, transactional_id: x1"},
    {"slots[].sink.transactional_id", Reload::kRestartsSlot,
     "type: file, path: /out/a, mode: \"0600\", "
     "rotate: {size: 1GiB, keep: 10, age: 1d}",
     "type: kafka, brokers: \"b1:9092\", topic: t1, key: primary_key, exactly_once: true, "
     "properties: {linger.ms: \"5\"}, properties_file: /k/p1, transactional_id: x1",
     "type: kafka, brokers: \"b1:9092\", topic: t1, key: primary_key, exactly_once: true, "
     "properties: {linger.ms: \"5\"}, properties_file: /k/p1, transactional_id: x2"},
    {"slots[].sink.position_topic", Reload::kRestartsSlot,
     "type: file, path: /out/a, mode: \"0600\", "
     "rotate: {size: 1GiB, keep: 10, age: 1d}",
     "type: kafka, brokers: \"b1:9092\", topic: t1, key: primary_key, exactly_once: true, "
     "properties: {linger.ms: \"5\"}, properties_file: /k/p1, transactional_id: x1, "
     "position_topic: p1",
     "type: kafka, brokers: \"b1:9092\", topic: t1, key: primary_key, exactly_once: true, "
     "properties: {linger.ms: \"5\"}, properties_file: /k/p1, transactional_id: x1, "
     "position_topic: p2"},
    {"slots[].sink.transaction_records", Reload::kRestartsSlot,
     "type: file, path: /out/a, mode: \"0600\", "
     "rotate: {size: 1GiB, keep: 10, age: 1d}",
     "type: kafka, brokers: \"b1:9092\", topic: t1, key: primary_key, exactly_once: true, "
     "properties: {linger.ms: \"5\"}, properties_file: /k/p1, transactional_id: x1, "
     "transaction_records: 100",
     "type: kafka, brokers: \"b1:9092\", topic: t1, key: primary_key, exactly_once: true, "
     "properties: {linger.ms: \"5\"}, properties_file: /k/p1, transactional_id: x1, "
     "transaction_records: 200"},
    {"slots[].sink.transaction_bytes", Reload::kRestartsSlot,
     "type: file, path: /out/a, mode: \"0600\", "
     "rotate: {size: 1GiB, keep: 10, age: 1d}",
     "type: kafka, brokers: \"b1:9092\", topic: t1, key: primary_key, exactly_once: true, "
     "properties: {linger.ms: \"5\"}, properties_file: /k/p1, transactional_id: x1, "
     "transaction_bytes: 1MiB",
     "type: kafka, brokers: \"b1:9092\", topic: t1, key: primary_key, exactly_once: true, "
     "properties: {linger.ms: \"5\"}, properties_file: /k/p1, transactional_id: x1, "
     "transaction_bytes: 2MiB"},
    {"slots[].sink.rotate.size", Reload::kRestartsSlot, "size: 1GiB", nullptr, "size: 2GiB"},
    {"slots[].sink.rotate.keep", Reload::kRestartsSlot, "keep: 10", nullptr, "keep: 3"},
    {"slots[].sink.rotate.age", Reload::kRestartsSlot, "age: 1d", nullptr, "age: 2d"},
    {"lag_alarm.bytes", Reload::kLive, "  bytes: 1GiB", nullptr, "  bytes: 2GiB"},
    {"lag_alarm.seconds", Reload::kLive, "  seconds: 5m", nullptr, "  seconds: 6m"},
    {"lag_alarm.repeat", Reload::kLive, "  repeat: 10m", nullptr, "  repeat: 11m"},
    {"lag_alarm.safe_wal_size", Reload::kLive, "  safe_wal_size: 2GiB", nullptr,
     "  safe_wal_size: 0B"},
    {"slots[].lag_alarm.bytes", Reload::kLive, "format: raw", nullptr,
     "format: raw\n    lag_alarm: {bytes: 2GiB}"},
    {"slots[].lag_alarm.seconds", Reload::kLive, "format: raw", nullptr,
     "format: raw\n    lag_alarm: {seconds: 6m}"},
    {"slots[].lag_alarm.repeat", Reload::kLive, "format: raw", nullptr,
     "format: raw\n    lag_alarm: {repeat: 11m}"},
    {"slots[].lag_alarm.safe_wal_size", Reload::kLive, "format: raw", nullptr,
     "format: raw\n    lag_alarm: {safe_wal_size: 0B}"},
};

std::string Replaced(const std::string& text, const std::string& from, const std::string& to) {
  size_t at = text.find(from);
  EXPECT_NE(at, std::string::npos) << from;
  EXPECT_EQ(text.find(from, at + 1), std::string::npos) << from << " is not unique";
  if (at == std::string::npos) return text;
  return text.substr(0, at) + to + text.substr(at + from.size());
}

// Whether anything a reload applies differs between the two.
bool Differ(const Config& a, const Config& b) {
  bool differ = a.log_level != b.log_level || a.monitor_interval != b.monitor_interval ||
                a.metrics_file != b.metrics_file || a.state_directory != b.state_directory ||
                a.runtime_directory != b.runtime_directory || a.slots.size() != b.slots.size();
  for (size_t i = 0; !differ && i < a.slots.size(); ++i) {
    differ = a.slots[i] != b.slots[i] || a.slots[i].lag_alarm != b.slots[i].lag_alarm;
  }
  return differ;
}

// What the reload from `before` to `after` does, as the supervisor decides.
Reload ReloadBetween(const Config& before, const Config& after) {
  if (!DaemonRestartReason(before, after).empty()) return Reload::kRestartsDaemon;
  return SlotReload(before.slots.at(0), after.slots.at(0));
}

TEST_F(ConfigTest, EachKeyChangedAloneDoesWhatItsRowSays) {
  std::map<std::string, Reload> rows;
  for (const KeyReload& k : ReloadPolicies()) rows.emplace(k.key, k.reload);
  std::set<std::string> changed;
  for (const KeyChange& c : kKeyChanges) {
    SCOPED_TRACE(c.key);
    changed.insert(c.key);
    ASSERT_EQ(rows.count(c.key), 1u) << "no row binds a field for " << c.key;
    EXPECT_EQ(rows[c.key], c.reload);
    std::string before = c.before == nullptr ? kEveryKey : Replaced(kEveryKey, c.anchor, c.before);
    std::string after = Replaced(before, c.before == nullptr ? c.anchor : c.before, c.after);
    Config old_config = Load(before);
    Config new_config = Load(after);
    ASSERT_EQ(old_config.slots.size(), 1u);
    ASSERT_EQ(new_config.slots.size(), 1u);
    EXPECT_TRUE(Differ(old_config, new_config)) << "the change reached no field";
    EXPECT_EQ(ReloadBetween(old_config, new_config), c.reload);
    EXPECT_EQ(ReloadBetween(old_config, old_config), Reload::kLive);
    // Equal slots are slots whose stream a reload keeps (a reload that
    // needs a restart of pgslotd compares none).
    if (c.reload != Reload::kRestartsDaemon) {
      EXPECT_EQ(old_config.slots[0] == new_config.slots[0], c.reload == Reload::kLive);
    }
  }
  for (const auto& [key, reload] : rows) {
    EXPECT_EQ(changed.count(key), 1u) << key << " has a row but no case here";
  }
}

TEST_F(ConfigTest, ADaemonRestartIsExplainedByTheFirstKeyThatNeedsIt) {
  Config old_config = Load(kEveryKey);
  Config new_config =
      Load(Replaced(Replaced(kEveryKey, "/state/a", "/state/b"), "/run/a", "/run/b"));
  EXPECT_EQ(DaemonRestartReason(old_config, new_config),
            "state_directory changed from /state/a to /state/b");
  new_config = Load(Replaced(kEveryKey, "/run/a", "/run/b"));
  EXPECT_EQ(DaemonRestartReason(old_config, new_config),
            "runtime_directory changed from /run/a to /run/b");
  EXPECT_EQ(DaemonRestartReason(old_config, old_config), "");
}

TEST_F(ConfigTest, ASlotReloadDoesTheMostItsChangedKeysAsk) {
  SlotConfig a;
  SlotConfig b = a;
  b.lag_alarm.bytes = 1;
  EXPECT_EQ(SlotReload(a, b), Reload::kLive);
  b.sink.rotate.keep = 1;
  EXPECT_EQ(SlotReload(a, b), Reload::kRestartsSlot);
  EXPECT_EQ(SlotReload(b, a), Reload::kRestartsSlot);
  b = a;
  b.line = 7;
  EXPECT_EQ(SlotReload(a, b), Reload::kLive);
}

}  // namespace
}  // namespace pgslotd
