// Bad configuration files, against the real binary and a real server:
//
// - BadConfigTest.EachIsRefusedWith78NamingLineKeyAndProblem runs
//   `pgslotd --config F --check` and `pgslotd --config F` on every file of
//   BadConfigs() and expects exit 78 and one line of stderr of the form
//   `F:LINE: KEY: ...` whose message holds the words of the problem.
// - BadConfigTest.ARunningDaemonRefusesEachOnSighupAndKeepsStreaming
//   streams a slot into a file, then for every bad file in turn replaces
//   the config, sends SIGHUP and expects the same line in the log (after
//   `reload: `), the process still running, rows committed afterwards in
//   the file, and the same walsender on the server; a good file at the end
//   is reloaded with the slot kept.
// - BadConfigTest.ASinkPathThatIsADirectoryIsRefusedNotRetried: a file
//   sink whose path is a directory is refused, either as a configuration
//   error (78) or by stopping the slot when the sink opens (1, as
//   docs/operations.md promises for "not a regular file"), but never
//   retried for ever.
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <set>
#include <stdexcept>
#include <string>
#include <vector>

#include "daemon_fixture.h"

namespace pgslotd::test {
namespace {

using std::chrono::seconds;

// The line of a config that the error must name ends with this comment.
constexpr char kMarker[] = "  # <-- here";
constexpr int kAtMarker = -1;  // BadConfig::line: the line holding kMarker
constexpr int kNoLine = 0;     // BadConfig::line: the error names no line

enum class FileKind {
  kYaml,       // `yaml` is written to the config path
  kMissing,    // nothing exists at the config path
  kDirectory,  // the config path is a directory
};

struct BadConfig {
  const char* name;  // unique, [a-z_]: also the config file's name
  // The file; "$CONN" becomes the test server's connection string and
  // "$DIR" the test's temporary directory.
  std::string yaml;
  std::string key;                 // the key path in the message; "" for none
  std::vector<std::string> words;  // each must be in the message
  int line = kAtMarker;            // or a line number, or kNoLine
  FileKind kind = FileKind::kYaml;
};

// Every bad file, each refused for one reason (and only one: each yields
// exactly one error). The ones marked NEW use keys that are being added
// (receive_timeout, a file sink's rotate); until they exist pgslotd refuses
// them as unknown keys, so those cases fail on their words.
std::vector<BadConfig> BadConfigs() {
  const std::string m = kMarker;
  const std::string head =
      "connection: \"$CONN\"\nstate_directory: $DIR\nruntime_directory: $DIR\n";
  const std::string name = "  - name: fb_bad\n";
  const std::string plugin = "    plugin: test_decoding\n";
  const std::string sink = "    sink: {type: file, path: $DIR/out.log}\n";
  const std::string slot = name + plugin + sink;
  const std::string slots = "slots:\n" + slot;
  // A good slot with one more line (which carries the marker) at its end.
  auto with = [&](const std::string& line) { return head + slots + line + m + "\n"; };
  // A good slot whose sink is `sink_map`, on the marked line.
  auto sink_is = [&](const std::string& sink_map) {
    return head + "slots:\n" + name + plugin + "    sink: " + sink_map + m + "\n";
  };
  // A good file with one more top-level line, marked.
  auto top = [&](const std::string& line) { return head + line + m + "\n" + slots; };
  const std::string long_name(64, 'a');

  return {
      // --- YAML syntax ---------------------------------------------------
      // The parser notices the unclosed map at the end of the file: line 8
      // of 7.
      {"yaml_unclosed_flow_map",
       head + "slots:\n" + name + plugin + "    sink: {type: file, path: $DIR/out.log\n",
       "",
       {"invalid YAML", "end of map flow not found"},
       8},
      {"yaml_bad_indentation",
       head + "slots:\n" + name + "     plugin: test_decoding" + m + "\n" + sink,
       "",
       {"invalid YAML", "illegal map value"}},
      {"yaml_tab_indentation",
       head + "slots:\n" + name + "\tplugin: test_decoding" + m + "\n" + sink,
       "",
       {"invalid YAML", "illegal tab"}},
      {"yaml_undefined_alias",
       head + "slots:\n  - name: *nowhere" + m + "\n" + plugin + sink,
       "",
       {"invalid YAML", "anchor is not defined"}},
      {"two_documents",
       head + slots + "---\nslots: []" + m + "\n",
       "",
       {"more than one YAML document"}},
      {"top_level_list",
       "- connection: \"$CONN\"" + m + "\n- slots: []\n",
       "",
       {"expected a map of settings at the top level, got a list"}},
      {"empty_file", "", "", {"the file holds no settings"}, kNoLine},

      // --- unknown keys, at every level --------------------------------
      {"unknown_top_key", top("sinks: {}"), "sinks", {"unknown key \"sinks\"", "known keys: "}},
      {"unknown_slot_key",
       head + "slots:\n" + name + plugin + "    plugn: test_decoding" + m + "\n" + sink,
       "slots[0].plugn",
       {"unknown key \"plugn\"", "known keys: "}},
      {"unknown_sink_key",
       sink_is("{type: file, path: $DIR/out.log, paht: $DIR/x.log}"),
       "slots[0].sink.paht",
       {"unknown key \"paht\"", "known keys: "}},
      {"unknown_lag_alarm_key",
       top("lag_alarm: {bytes: 1GiB, sizes: 1GiB}"),
       "lag_alarm.sizes",
       {"unknown key \"sizes\"", "known keys: bytes, seconds, repeat, safe_wal_size"}},
      {"unknown_slot_lag_alarm_key",
       with("    lag_alarm: {sizes: 1GiB}"),
       "slots[0].lag_alarm.sizes",
       {"unknown key \"sizes\""}},

      // --- duplicates --------------------------------------------------
      {"duplicate_top_key",
       head + "status_interval: 1s\nstatus_interval: 2s" + m + "\n" + slots,
       "status_interval",
       {"key given twice", "first at line 4"}},
      {"duplicate_sink_key",
       sink_is("{type: file, path: $DIR/a.log, path: $DIR/b.log}"),
       "slots[0].sink.path",
       {"key given twice", "first at line 7"}},
      {"duplicate_slot_name",
       head + slots + "  - name: fb_bad" + m + "\n" + plugin +
           "    sink: {type: file, path: $DIR/other.log}\n",
       "slots[1].name",
       {"duplicate slot name \"fb_bad\"", "first used at line 5"}},

      // --- slot names --------------------------------------------------
      {"name_uppercase",
       head + "slots:\n  - name: Fb_Bad" + m + "\n" + plugin + sink,
       "slots[0].name",
       {"invalid slot name \"Fb_Bad\"", "1 to 63 characters from a-z, 0-9 and _"}},
      {"name_too_long",
       head + "slots:\n  - name: " + long_name + m + "\n" + plugin + sink,
       "slots[0].name",
       {"invalid slot name \"" + long_name.substr(0, 63), "1 to 63 characters"}},
      {"name_hyphen",
       head + "slots:\n  - name: fb-bad" + m + "\n" + plugin + sink,
       "slots[0].name",
       {"invalid slot name \"fb-bad\""}},
      {"name_empty",
       head + "slots:\n  - name: \"\"" + m + "\n" + plugin + sink,
       "slots[0].name",
       {"invalid slot name \"\""}},
      // A newline is shown escaped, so the message stays on one line.
      {"name_newline",
       head + "slots:\n  - name: \"fb\\nbad\"" + m + "\n" + plugin + sink,
       "slots[0].name",
       {"invalid slot name \"fb\\x0abad\""}},
      {"name_not_a_string",
       head + "slots:\n  - name: [fb_bad]" + m + "\n" + plugin + sink,
       "slots[0].name",
       {"expected a string, got a list"}},

      // --- plugin options (newlines and quotes in names and values are
      // accepted and sent quoted; NUL bytes and empty names are not) -----
      {"option_name_nul",
       with("    options: {\"a\\0b\": \"1\"}"),
       "slots[0].options",
       {"option name \"a\\x00b\" contains a NUL byte"}},
      {"option_value_nul",
       with("    options: {include-xids: \"1\\0; DROP TABLE x\"}"),
       "slots[0].options.include-xids",
       {"option value must not contain a NUL byte"}},
      {"option_name_empty",
       with("    options: {\"\": \"1\"}"),
       "slots[0].options",
       {"option names must not be empty"}},
      {"option_given_twice",
       with("    options: {include-xids: \"1\", include-xids: \"0\"}"),
       "slots[0].options.include-xids",
       {"option given twice"}},
      {"option_value_list",
       with("    options: {include-xids: [1]}"),
       "slots[0].options.include-xids",
       {"got a list; expected a string, number or boolean"}},
      {"option_value_missing",
       with("    options: {include-xids: ~}"),
       "slots[0].options.include-xids",
       {"no value given"}},
      {"options_not_a_map",
       with("    options: include-xids"),
       "slots[0].options",
       {"expected a map of option names to values"}},

      // --- sinks -------------------------------------------------------
      {"relative_sink_path",
       sink_is("{type: file, path: out.log}"),
       "slots[0].sink.path",
       {"must be an absolute path, got \"out.log\""}},
      {"empty_sink_path",
       sink_is("{type: file, path: \"\"}"),
       "slots[0].sink.path",
       {"must be an absolute path, got \"\""}},
      {"sink_path_nul",
       sink_is("{type: file, path: \"$DIR/a\\0b.log\"}"),
       "slots[0].sink.path",
       {"must not contain a NUL byte"}},
      {"stdout_with_path",
       sink_is("{type: stdout, path: $DIR/out.log}"),
       "slots[0].sink.path",
       {"not allowed for a stdout sink"}},
      {"stdout_with_mode",
       sink_is("{type: stdout, mode: \"0640\"}"),
       "slots[0].sink.mode",
       {"not allowed for a stdout sink"}},
      {"file_without_path",
       sink_is("{type: file}"),
       "slots[0].sink.path",
       {"missing required key", "a file sink needs an absolute path"}},
      {"pipe_without_path",
       sink_is("{type: pipe, mode: \"0600\"}"),
       "slots[0].sink.path",
       {"missing required key", "a pipe sink needs an absolute path"}},
      {"sink_without_type",
       sink_is("{path: $DIR/out.log}"),
       "slots[0].sink.type",
       {"missing required key"}},
      {"sink_type_unknown",
       sink_is("{type: s3, path: $DIR/out.log}"),
       "slots[0].sink.type",
       {"invalid value \"s3\"", "expected one of stdout, file, pipe, kafka"}},
      {"sink_not_a_map", sink_is("$DIR/out.log"), "slots[0].sink", {"expected a map, got \""}},
      {"mode_not_octal",
       sink_is("{type: file, path: $DIR/out.log, mode: \"0999\"}"),
       "slots[0].sink.mode",
       {"invalid mode \"0999\"", "octal permission bits from 0 to 0777"}},
      {"mode_setuid",
       sink_is("{type: file, path: $DIR/out.log, mode: \"4755\"}"),
       "slots[0].sink.mode",
       {"invalid mode \"4755\""}},
      {"two_stdout_sinks",
       head + "slots:\n" + name + plugin + "    sink: {type: stdout}\n  - name: fb_other\n" +
           plugin + "    sink: {type: stdout}" + m + "\n",
       "slots[1].sink.type",
       {"only one slot may write to stdout", "slot \"fb_bad\" (line 5) already does"}},
      {"same_sink_path",
       head + slots + "  - name: fb_other\n" + plugin +
           "    sink: {type: file, path: $DIR//./out.log}" + m + "\n",
       "slots[1].sink.path",
       {"is already used by slot \"fb_bad\" (line 5)"}},

      // --- values: durations, sizes, booleans, choices -----------------
      {"duration_without_unit",
       top("status_interval: 10"),
       "status_interval",
       {"invalid duration \"10\"", "expected a whole number followed by ms, s, m, h or d"}},
      {"duration_negative",
       top("fsync_interval: -1s"),
       "fsync_interval",
       {"invalid duration \"-1s\""}},
      {"duration_fraction",
       top("monitor_interval: 1.5s"),
       "monitor_interval",
       {"invalid duration \"1.5s\""}},
      {"status_interval_zero",
       top("status_interval: 0"),
       "status_interval",
       {"must be greater than 0"}},
      {"monitor_interval_zero",
       top("monitor_interval: 0s"),
       "monitor_interval",
       {"must be greater than 0"}},
      {"slot_status_interval_zero",
       with("    status_interval: 0ms"),
       "slots[0].status_interval",
       {"must be greater than 0"}},
      {"size_lowercase_unit", top("buffer_size: 8mb"), "buffer_size", {"invalid size \"8mb\""}},
      {"size_negative",
       with("    buffer_size: -8MiB"),
       "slots[0].buffer_size",
       {"invalid size \"-8MiB\""}},
      {"buffer_size_too_small",
       top("buffer_size: 1KiB"),
       "buffer_size",
       {"must be at least 64KiB"}},
      {"lag_alarm_bytes_zero",
       top("lag_alarm: {bytes: 0B}"),
       "lag_alarm.bytes",
       {"must be greater than 0"}},
      {"slot_lag_alarm_seconds_zero",
       with("    lag_alarm: {seconds: 0s}"),
       "slots[0].lag_alarm.seconds",
       {"must be greater than 0"}},
      {"lag_alarm_repeat_not_duration",
       top("lag_alarm: {repeat: soon}"),
       "lag_alarm.repeat",
       {"invalid duration \"soon\""}},
      {"lag_alarm_not_a_map", top("lag_alarm: 5m"), "lag_alarm", {"expected a map, got \"5m\""}},
      {"create_yes",
       with("    create: yes"),
       "slots[0].create",
       {"invalid value \"yes\": expected true or false"}},
      {"log_level_unknown",
       top("log_level: verbose"),
       "log_level",
       {"invalid value \"verbose\"", "expected one of trace, debug, info, warning, error"}},
      {"format_unknown",
       with("    format: xml"),
       "slots[0].format",
       {"invalid value \"xml\"", "expected one of raw, json"}},
      {"format_json_needs_pgoutput",
       with("    format: json"),
       "slots[0].format",
       {"format json needs plugin: pgoutput"}},
      {"include_transactions_with_raw",
       with("    include_transactions: true"),
       "slots[0].include_transactions",
       {"applies to format json only"}},
      {"plugin_empty",
       head + "slots:\n" + name + "    plugin: \"\"" + m + "\n" + sink,
       "slots[0].plugin",
       {"must not be empty"}},
      {"plugin_without_value",
       head + "slots:\n" + name + "    plugin:" + m + "\n" + sink,
       "slots[0].plugin",
       {"no value given"}},

      // --- structure and required keys ---------------------------------
      {"slots_empty", head + "slots: []" + m + "\n", "slots", {"at least one slot is required"}},
      {"slots_not_a_list",
       head + "slots: {name: fb_bad}" + m + "\n",
       "slots",
       {"expected a list, got a map"}},
      {"slots_missing",
       "connection: \"$CONN\"" + m +
           "\nstate_directory: $DIR\nruntime_directory: $DIR\nstatus_interval: 1s\n",
       "slots",
       {"missing required key"}},
      {"slot_without_plugin",
       head + "slots:\n  - name: fb_bad" + m + "\n" + sink,
       "slots[0].plugin",
       {"missing required key"}},
      {"slot_without_name",
       head + "slots:\n  - plugin: test_decoding" + m + "\n" + sink,
       "slots[0].name",
       {"missing required key"}},
      {"slot_without_sink",
       head + "slots:\n  - name: fb_bad" + m + "\n" + plugin,
       "slots[0].sink",
       {"missing required key"}},
      {"slot_not_a_map",
       head + "slots:\n  - fb_bad" + m + "\n",
       "slots[0]",
       {"expected a map describing a slot, got \"fb_bad\""}},

      // --- paths and connection strings --------------------------------
      {"metrics_file_relative",
       top("metrics_file: metrics.prom"),
       "metrics_file",
       {"must be an absolute path, got \"metrics.prom\""}},
      {"metrics_file_is_a_sink",
       top("metrics_file: $DIR/out.log"),
       "metrics_file",
       {"metrics_file is also the sink of slot \"fb_bad\""}},
      {"sink_is_a_state_record",
       sink_is("{type: file, path: $DIR/fb_bad.state}"),
       "slots[0].sink.path",
       {"is the state record of slot \"fb_bad\"", "which pgslotd writes itself"}},
      {"state_directory_relative",
       "connection: \"$CONN\"\nruntime_directory: $DIR\nstate_directory: state" + m + "\n" + slots,
       "state_directory",
       {"must be an absolute path, got \"state\""}},
      {"connection_invalid",
       "connection: \"host\"" + m + "\nstate_directory: $DIR\nruntime_directory: $DIR\n" + slots,
       "connection",
       {"invalid connection string", "missing \"=\" after \"host\""}},
      {"slot_connection_invalid",
       with("    connection: \"dbname='unterminated\""),
       "slots[0].connection",
       {"invalid connection string", "unterminated quoted string"}},

      // --- the file itself ---------------------------------------------
      {"config_missing",
       "",
       "",
       {"cannot read the config file: No such file or directory"},
       kNoLine,
       FileKind::kMissing},
      // As root nothing is unreadable for want of permission; a directory
      // cannot be read as a file by anyone.
      {"config_is_a_directory",
       "",
       "",
       {"cannot read the config file: Is a directory"},
       kNoLine,
       FileKind::kDirectory},

      // --- NEW: receive_timeout (top level and per slot) ---------------
      {"receive_timeout_not_duration",
       top("receive_timeout: abc"),
       "receive_timeout",
       {"invalid duration \"abc\""}},
      {"slot_receive_timeout_without_unit",
       with("    receive_timeout: 30"),
       "slots[0].receive_timeout",
       {"invalid duration \"30\""}},

      // --- NEW: a file sink's rotate ------------------------------------
      {"rotate_on_stdout",
       sink_is("{type: stdout, rotate: {size: 10MiB, keep: 3}}"),
       "slots[0].sink.rotate",
       {"not allowed for a stdout sink"}},
      {"rotate_on_pipe",
       sink_is("{type: pipe, path: $DIR/p.fifo, rotate: {size: 10MiB, keep: 3}}"),
       "slots[0].sink.rotate",
       {"only a file sink can rotate, not a pipe sink"}},
      {"rotate_keep_zero",
       sink_is("{type: file, path: $DIR/out.log, rotate: {size: 10MiB, keep: 0}}"),
       "slots[0].sink.rotate.keep",
       {"must be from 1 to 1000"}},
      {"rotate_keep_too_many",
       sink_is("{type: file, path: $DIR/out.log, rotate: {size: 10MiB, keep: 1001}}"),
       "slots[0].sink.rotate.keep",
       {"must be from 1 to 1000"}},
      {"rotate_keep_negative",
       sink_is("{type: file, path: $DIR/out.log, rotate: {size: 10MiB, keep: -1}}"),
       "slots[0].sink.rotate.keep",
       {"expected a whole number"}},
      {"rotate_keep_not_a_number",
       sink_is("{type: file, path: $DIR/out.log, rotate: {size: 10MiB, keep: many}}"),
       "slots[0].sink.rotate.keep",
       {"expected a whole number"}},
      {"rotate_size_zero",
       sink_is("{type: file, path: $DIR/out.log, rotate: {size: 0B, keep: 3}}"),
       "slots[0].sink.rotate.size",
       {"must be greater than 0"}},
      {"rotate_age_zero",
       sink_is("{type: file, path: $DIR/out.log, rotate: {size: 10MiB, keep: 3, age: 0s}}"),
       "slots[0].sink.rotate.age",
       {"must be greater than 0"}},
      {"rotate_unknown_key",
       sink_is("{type: file, path: $DIR/out.log, rotate: {size: 10MiB, keep: 3, sise: 1MiB}}"),
       "slots[0].sink.rotate.sise",
       {"unknown key \"sise\""}},
      {"rotate_neither_size_nor_age",
       sink_is("{type: file, path: $DIR/out.log, rotate: {keep: 3}}"),
       "slots[0].sink.rotate",
       {"give size, age or both"}},
      {"rotate_not_a_map",
       sink_is("{type: file, path: $DIR/out.log, rotate: 10MiB}"),
       "slots[0].sink.rotate",
       {"expected a map"}},
  };
}

std::string ReplaceAll(std::string text, const std::string& from, const std::string& to) {
  for (size_t at = text.find(from); at != std::string::npos; at = text.find(from, at + to.size()))
    text.replace(at, from.size(), to);
  return text;
}

class BadConfigTest : public DaemonTest {
 protected:
  // The case's file content, with $CONN and $DIR filled in.
  std::string Text(const BadConfig& c) const {
    return ReplaceAll(ReplaceAll(c.yaml, "$CONN", pg_->Conninfo()), "$DIR", dir_->path());
  }

  // Puts the case at `path` (a file, nothing, or a directory).
  void Install(const BadConfig& c, const std::string& path) const {
    unlink(path.c_str());
    rmdir(path.c_str());
    switch (c.kind) {
      case FileKind::kYaml:
        WriteFile(path, Text(c));
        break;
      case FileKind::kMissing:
        break;
      case FileKind::kDirectory:
        if (mkdir(path.c_str(), 0755) != 0) throw std::runtime_error("mkdir " + path);
        break;
    }
  }

  // What the message starts with: "FILE:LINE: KEY: " (without the parts
  // that do not apply).
  std::string Prefix(const BadConfig& c, const std::string& path) const {
    int line = c.line;
    if (line == kAtMarker) {
      std::vector<std::string> lines = SplitLines(Text(c));
      for (size_t i = 0; i < lines.size() && line == kAtMarker; ++i) {
        if (lines[i].find(kMarker) != std::string::npos) line = static_cast<int>(i) + 1;
      }
      if (line == kAtMarker) ADD_FAILURE() << c.name << ": no marker in the file";
    }
    std::string out = path;
    if (line > 0) out += ":" + std::to_string(line);
    out += ": ";
    if (!c.key.empty()) out += c.key + ": ";
    return out;
  }

  // The first line of `log` that holds `lead` + Prefix() and every word of
  // the case after it, or "".
  static std::string FindReport(const std::string& log, const std::string& lead,
                                const std::string& prefix, const BadConfig& c) {
    for (const std::string& line : SplitLines(log)) {
      size_t at = line.find(lead + prefix);
      if (at == std::string::npos) continue;
      std::string message = line.substr(at + lead.size() + prefix.size());
      bool all = true;
      for (const std::string& w : c.words) all = all && message.find(w) != std::string::npos;
      if (all) return line;
    }
    return "";
  }
};

TEST_F(BadConfigTest, ThereAreAtLeastThirtyDistinctCases) {
  std::vector<BadConfig> cases = BadConfigs();
  EXPECT_GE(cases.size(), 30u);
  std::set<std::string> names, texts;
  for (const BadConfig& c : cases) {
    EXPECT_TRUE(names.insert(c.name).second) << "two cases named " << c.name;
    if (c.kind == FileKind::kYaml) {
      EXPECT_TRUE(texts.insert(c.yaml).second) << "the same file twice: " << c.name;
    }
  }
}

TEST_F(BadConfigTest, EachIsRefusedWith78NamingLineKeyAndProblem) {
  for (const BadConfig& c : BadConfigs()) {
    SCOPED_TRACE(c.name);
    const std::string path = dir_->File(std::string(c.name) + ".yaml");
    Install(c, path);
    const std::string prefix = Prefix(c, path);
    for (bool check : {true, false}) {
      Subprocess p;
      std::vector<std::string> argv = {PgslotdBinary(), "--config", path, "--log-target", "stderr"};
      if (check) argv.push_back("--check");
      p.Start(argv);
      const int rc = p.Wait(seconds(30));
      const std::string err = p.Stderr();
      EXPECT_EQ(rc, 78) << (check ? "--check" : "no --check") << "; stderr:\n" << err;
      // Only the expected line names the file at the start, then the
      // count: nothing else was found wrong.
      EXPECT_NE(FindReport(err, "", prefix, c), "")
          << "expected a line starting with \"" << prefix << "\" and holding each of the words "
          << ::testing::PrintToString(c.words) << "; stderr:\n"
          << err;
      EXPECT_NE(err.find("pgslotd: 1 error in " + path + "\n"), std::string::npos) << err;
      EXPECT_EQ(p.Stdout(), "");
      if (!check) {
        EXPECT_EQ(err.find("started "), std::string::npos) << err;
      }
    }
  }
}

// A slot streaming into a file, kept across every bad reload.
TEST_F(BadConfigTest, ARunningDaemonRefusesEachOnSighupAndKeepsStreaming) {
  pg_->Exec(
      "DROP TABLE IF EXISTS fb_reload; CREATE TABLE fb_reload(id serial primary key, v text)");
  FreshSlots({"fb_reload"});
  const std::string log = dir_->File("reload.log");
  const std::string good =
      Header() + SlotYaml("fb_reload", "{type: file, path: " + log + "}",
                          "    options: {include-xids: \"1\", skip-empty-xacts: \"1\"}\n");
  const std::string cfg = WriteConfig(good, "reload.yaml");
  Subprocess p;
  p.Start({PgslotdBinary(), "--config", cfg, "--log-target", "stderr"});
  auto active_pid = [&] {
    return pg_->Scalar(
        "SELECT coalesce(active_pid::text, '') FROM pg_replication_slots "
        "WHERE slot_name = 'fb_reload'");
  };
  auto in_file = [&](const std::string& text) {
    return FileExists(log) && ReadFile(log).find(text) != std::string::npos;
  };
  pg_->Exec("INSERT INTO fb_reload(v) VALUES ('before any reload')");
  ASSERT_TRUE(WaitFor([&] { return in_file("before any reload"); }, seconds(30))) << p.Stderr();
  const std::string walsender = active_pid();
  ASSERT_NE(walsender, "");
  auto replication_pid = [&] {
    return pg_->Scalar(
        "SELECT coalesce(string_agg(pid::text, ','), '') FROM pg_stat_replication "
        "WHERE application_name = 'pgslotd_fb_reload'");
  };
  EXPECT_EQ(replication_pid(), walsender);

  const std::string failed = "reload of " + cfg + " failed (1 error)";
  size_t reloads = 0;
  for (const BadConfig& c : BadConfigs()) {
    SCOPED_TRACE(c.name);
    Install(c, cfg);
    ++reloads;
    ASSERT_TRUE(p.Signal(SIGHUP)) << "pgslotd is gone; stderr:\n" << p.Stderr();
    auto count = [&] {
      std::string err = p.Stderr();
      size_t n = 0;
      for (size_t at = err.find(failed); at != std::string::npos; at = err.find(failed, at + 1))
        ++n;
      return n;
    };
    ASSERT_TRUE(WaitFor([&] { return count() >= reloads || !p.Running(); }, seconds(20)))
        << p.Stderr();
    ASSERT_EQ(count(), reloads) << p.Stderr();
    const std::string err = p.Stderr();
    EXPECT_NE(FindReport(err, " error reload: ", Prefix(c, cfg), c), "")
        << "expected \"reload: " << Prefix(c, cfg) << "\" with each of "
        << ::testing::PrintToString(c.words) << "; stderr:\n"
        << err;

    const std::string row = std::string("after the bad reload of ") + c.name;
    pg_->Exec("INSERT INTO fb_reload(v) VALUES ('" + row + "')");
    EXPECT_TRUE(WaitFor([&] { return in_file(row); }, seconds(20)))
        << "not streamed after the failed reload; stderr:\n"
        << p.Stderr();
    ASSERT_TRUE(p.Running()) << p.Stderr();
    EXPECT_EQ(active_pid(), walsender) << "the stream was restarted";
    if (c.kind == FileKind::kDirectory) rmdir(cfg.c_str());
  }

  // The good file again: the slot is kept, on the same connection.
  WriteFile(cfg, good);
  ASSERT_TRUE(p.Signal(SIGHUP));
  const std::string reloaded = "reloaded " + cfg + ": 1 kept, 0 started, 0 restarted, 0 stopped";
  EXPECT_TRUE(WaitFor([&] { return p.Stderr().find(reloaded) != std::string::npos; }, seconds(20)))
      << p.Stderr();
  pg_->Exec("INSERT INTO fb_reload(v) VALUES ('after the good reload')");
  EXPECT_TRUE(WaitFor([&] { return in_file("after the good reload"); }, seconds(20))) << p.Stderr();
  EXPECT_EQ(active_pid(), walsender);
  EXPECT_EQ(replication_pid(), walsender);
  const std::string err = p.Stderr();
  EXPECT_EQ(err.find("restarting"), std::string::npos) << err;
  EXPECT_EQ(err.find("streaming again"), std::string::npos) << err;
  ASSERT_TRUE(p.Signal(SIGTERM));
  EXPECT_EQ(p.Wait(seconds(30)), 0) << p.Stderr();
}

TEST_F(BadConfigTest, ASinkPathThatIsADirectoryIsRefusedNotRetried) {
  FreshSlots({"fb_dirsink"});
  const std::string target = dir_->File("a_directory");
  ASSERT_EQ(mkdir(target.c_str(), 0755), 0);
  const std::string cfg =
      WriteConfig(Header() + SlotYaml("fb_dirsink", "{type: file, path: " + target + "}"));
  Subprocess p;
  p.Start({PgslotdBinary(), "--config", cfg, "--log-target", "stderr"});
  // Either it refuses the file or stops the slot (and exits), or it
  // retries: whichever comes first decides.
  WaitFor([&] { return !p.Running() || p.Stderr().find("reconnecting in") != std::string::npos; },
          seconds(30));
  int rc = p.Wait(std::chrono::milliseconds(500));
  if (rc < 0) {  // still retrying: stop it
    p.Signal(SIGTERM);
    p.Wait(seconds(30));
  }
  const std::string err = p.Stderr();
  EXPECT_EQ(err.find("reconnecting in"), std::string::npos) << "retried:\n" << err;
  if (rc == 78) {
    // Refused as a configuration error, at the path's line.
    EXPECT_NE(err.find(cfg + ":7: slots[0].sink.path: "), std::string::npos) << err;
  } else {
    EXPECT_EQ(rc, 1) << "the only slot stops, so pgslotd exits 1; stderr:\n" << err;
    EXPECT_FALSE(LinesWithAll(err, {"slot fb_dirsink: ", target, "this slot has stopped"}).empty())
        << err;
  }
}

}  // namespace
}  // namespace pgslotd::test
