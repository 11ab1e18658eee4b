#include "kafka_harness.h"

#include <gtest/gtest.h>
#include <signal.h>

#include <algorithm>
#include <cstdio>
#include <stdexcept>
#include <tuple>

#include "json_parse.h"

namespace pgslotd::test {

namespace {

using std::chrono::milliseconds;

// How often the harness looks for an answer of the mock: its answers come
// within a millisecond or two when the machine is idle.
constexpr milliseconds kAnswerPoll(2);

// The last `max_bytes` of `text`, for failure messages.
std::string Tail(const std::string& text, size_t max_bytes = 3000) {
  return text.size() <= max_bytes ? text : "..." + text.substr(text.size() - max_bytes);
}

// librdkafka settings every kcat run gets. A short fetch wait lets
// `kcat -C -e` see the end of an empty partition quickly; the message
// timeout ends a produce that cannot succeed well before the harness's own
// deadline, with kcat's delivery error rather than a kill.
const std::vector<std::string> kKcatProperties = {
    "fetch.wait.max.ms=10",
    "message.timeout.ms=60000",
};

// A string member of a kcat JSON envelope that may be null.
std::optional<std::string> NullableString(const Json& value, const std::string& what) {
  if (value.kind == Json::Kind::kNull) return std::nullopt;
  if (value.kind != Json::Kind::kString)
    throw std::runtime_error("kcat: " + what + " not a string");
  return value.text;
}

int64_t Integer(const Json& value, const std::string& what) {
  if (value.kind != Json::Kind::kNumber)
    throw std::runtime_error("kcat: " + what + " not a number");
  return std::stoll(value.text);
}

// One line of kcat -C -J: {"topic":..,"partition":..,"offset":..,
// "headers":[name,value,...] (only when there are headers),"key":..,
// "payload":..} (and timestamps and the broker, not kept).
KafkaRecord ParseEnvelope(const std::string& line) {
  const Json j = JsonParser::Parse(line);
  KafkaRecord r;
  r.topic = j["topic"].text;
  r.partition = static_cast<int32_t>(Integer(j["partition"], "partition"));
  r.offset = Integer(j["offset"], "offset");
  r.key = NullableString(j["key"], "key");
  r.value = NullableString(j["payload"], "payload");
  if (j.Has("headers")) {
    const Json& h = j["headers"];
    if (h.kind != Json::Kind::kArray || h.items.size() % 2 != 0) {
      throw std::runtime_error("kcat: headers not an array of name, value pairs: " + line);
    }
    for (size_t i = 0; i < h.items.size(); i += 2) {
      r.headers.emplace_back(h.items[i].text, h.items[i + 1].text);
    }
  }
  return r;
}

}  // namespace

std::string MockKafkaBinary() {
#ifdef PGSLOTD_MOCK_KAFKA_BINARY
  return PGSLOTD_MOCK_KAFKA_BINARY;
#else
  return "pgslotd-mock-kafka";
#endif
}

std::string KcatBinary() {
#ifdef PGSLOTD_KCAT
  return PGSLOTD_KCAT;
#else
  return "kcat";
#endif
}

MockKafka::MockKafka(std::string dir) : dir_(std::move(dir)) {}

MockKafka::MockKafka()
    : own_dir_(std::make_unique<TempDir>("pgslotd-kafka")), dir_(own_dir_->path()) {}

MockKafka::~MockKafka() {
  if (process_.pid() <= 0) return;
  const int code = Stop();
  if (code < 0) {
    // Subprocess's destructor sends SIGKILL; say so, since a mock that does
    // not stop on end of input is a bug of its own.
    std::fprintf(stderr, "warning: pgslotd-mock-kafka (pid %d) did not stop; killing it\n",
                 static_cast<int>(process_.pid()));
  } else if (code != 0) {
    // It failed, perhaps on its way out where no command would notice: a
    // crash, a sanitizer's report (ThreadSanitizer exits 66).
    ADD_FAILURE() << "pgslotd-mock-kafka exited " << code << "; its stderr:\n" << Tail(Log());
  }
}

void MockKafka::Start(const Options& options, milliseconds timeout) {
  std::vector<std::string> argv = {MockKafkaBinary(), "--brokers", std::to_string(options.brokers)};
  for (const auto& [name, partitions] : options.topics) {
    argv.push_back("--topic");
    argv.push_back(name + ":" + std::to_string(partitions));
  }
  Subprocess::Options so;
  so.stdout_path = dir_ + "/mock-kafka.stdout";
  so.stderr_path = dir_ + "/mock-kafka.stderr";
  so.cwd = dir_;
  so.stdin_stream = true;
  process_.Start(argv, so);
  std::vector<std::string> lines;
  const bool answered = WaitFor(
      [&] {
        lines = StdoutLines();
        return !lines.empty() || !process_.Running();
      },
      timeout, kAnswerPoll);
  lines = StdoutLines();  // the line may have come just before the exit
  const std::string kPrefix = "bootstrap ";
  if (!answered || lines.empty() || lines[0].compare(0, kPrefix.size(), kPrefix) != 0 ||
      lines[0].size() == kPrefix.size()) {
    throw std::runtime_error("pgslotd-mock-kafka did not start" +
                             std::string(answered ? "" : " in time") + ": " + Describe());
  }
  bootstrap_ = lines[0].substr(kPrefix.size());
  lines_seen_ = 1;
}

std::string MockKafka::Command(const std::string& line, milliseconds timeout) {
  if (bootstrap_.empty()) throw std::runtime_error("MockKafka::Command before Start");
  if (line.find('\n') != std::string::npos) {
    throw std::runtime_error("MockKafka::Command: one line, without a newline");
  }
  process_.WriteStdin(line + "\n");
  std::vector<std::string> lines;
  WaitFor(
      [&] {
        lines = StdoutLines();
        return lines.size() > lines_seen_ || !process_.Running();
      },
      timeout, kAnswerPoll);
  lines = StdoutLines();
  if (lines.size() <= lines_seen_) {
    throw std::runtime_error("pgslotd-mock-kafka did not answer \"" + line + "\": " + Describe());
  }
  if (lines.size() > lines_seen_ + 1) {
    throw std::runtime_error("pgslotd-mock-kafka answered \"" + line + "\" with " +
                             std::to_string(lines.size() - lines_seen_) + " lines");
  }
  return lines[lines_seen_++];
}

void MockKafka::Down(int32_t broker_id) {
  const std::string line = "down " + std::to_string(broker_id);
  const std::string answer = Command(line);
  if (answer != "ok") throw std::runtime_error("mock kafka: " + line + ": " + answer);
}

void MockKafka::Up(int32_t broker_id) {
  const std::string line = "up " + std::to_string(broker_id);
  const std::string answer = Command(line);
  if (answer != "ok") throw std::runtime_error("mock kafka: " + line + ": " + answer);
}

void MockKafka::SetLeader(const std::string& topic, int32_t partition, int32_t broker_id) {
  const std::string line =
      "leader " + topic + " " + std::to_string(partition) + " " + std::to_string(broker_id);
  const std::string answer = Command(line);
  if (answer != "ok") throw std::runtime_error("mock kafka: " + line + ": " + answer);
}

void MockKafka::InjectErrors(const std::string& request, int count, const std::string& error) {
  const std::string line = "error " + request + " " + std::to_string(count) + " " + error;
  const std::string answer = Command(line);
  if (answer != "ok") throw std::runtime_error("mock kafka: " + line + ": " + answer);
}

int MockKafka::Stop(milliseconds timeout) {
  if (process_.pid() <= 0) throw std::runtime_error("MockKafka::Stop before Start");
  process_.CloseStdin();
  return process_.Wait(timeout);
}

std::string MockKafka::Log() const { return ReadFile(process_.stderr_path()); }

std::vector<std::string> MockKafka::StdoutLines() const {
  std::string out = ReadFile(process_.stdout_path());
  // A line is complete once its newline is there.
  out.erase(out.rfind('\n') == std::string::npos ? 0 : out.rfind('\n') + 1);
  return SplitLines(out);
}

std::string MockKafka::Describe() const {
  // Running() reaps, which a const method may not do; the pid is enough.
  return "pid " + std::to_string(process_.pid()) + ", stdout:\n" +
         Tail(ReadFile(process_.stdout_path())) + "\nstderr:\n" + Tail(Log());
}

std::string MockKafka::NextFile(const std::string& what) {
  return dir_ + "/kcat-" + std::to_string(++files_) + "." + what;
}

int MockKafka::RunKcat(const std::vector<std::string>& args, milliseconds timeout, std::string* out,
                       std::string* err) {
  if (bootstrap_.empty()) throw std::runtime_error("MockKafka: kcat before Start");
  // -F /dev/null: no user's kcat.conf (or $KCAT_CONFIG) comes into it.
  std::vector<std::string> argv = {KcatBinary(), "-F", "/dev/null", "-b", bootstrap_};
  argv.insert(argv.end(), args.begin(), args.end());
  Subprocess kcat;
  Subprocess::Options so;
  so.stdout_path = NextFile("stdout");
  so.stderr_path = so.stdout_path.substr(0, so.stdout_path.size() - 6) + "stderr";
  so.cwd = dir_;
  kcat.Start(argv, so);
  const int code = kcat.Wait(timeout);
  *out = kcat.Stdout();
  *err = kcat.Stderr();
  if (code < 0) {
    std::string command;
    for (const std::string& a : argv) command += (command.empty() ? "" : " ") + a;
    throw std::runtime_error(command + ": still running after " + std::to_string(timeout.count()) +
                             " ms (killed); stderr:\n" + Tail(*err) + "\nthe mock's log:\n" +
                             Tail(Log()));
  }
  return code;  // kcat is reaped; nothing is left running
}

int32_t MockKafka::Leader(const std::string& topic, int32_t partition) {
  std::string out, err;
  const int code = RunKcat({"-L", "-J", "-t", topic}, milliseconds(60000), &out, &err);
  if (code != 0) throw std::runtime_error("kcat -L failed (" + std::to_string(code) + "): " + err);
  const Json j = JsonParser::Parse(out);
  for (const Json& t : j["topics"].items) {
    if (t["topic"].text != topic) continue;
    for (const Json& p : t["partitions"].items) {
      if (Integer(p["partition"], "partition") == partition) {
        return static_cast<int32_t>(Integer(p["leader"], "leader"));
      }
    }
  }
  throw std::runtime_error("kcat -L lists no partition " + std::to_string(partition) + " of " +
                           topic + ": " + out);
}

int MockKafka::TryProduce(const std::string& topic,
                          const std::vector<std::pair<std::string, std::string>>& records,
                          const ProduceOptions& options, std::string* log, milliseconds timeout) {
  std::string input;
  for (const auto& [key, value] : records) {
    if (key.empty() || value.empty() || key.find_first_of("\t\n") != std::string::npos ||
        value.find('\n') != std::string::npos) {
      throw std::runtime_error(
          "MockKafka::Produce: keys without tab or newline, values without newline, neither "
          "empty");
    }
    input += key + "\t" + value + "\n";
  }
  const std::string input_path = NextFile("input");
  WriteFile(input_path, input);
  std::vector<std::string> args = {"-P", "-t", topic, "-K", "\t", "-l"};
  if (options.partition >= 0) {
    args.push_back("-p");
    args.push_back(std::to_string(options.partition));
  }
  for (const auto& [name, value] : options.headers) {
    args.push_back("-H");
    args.push_back(name + "=" + value);
  }
  for (const auto& properties : {kKcatProperties, options.properties}) {
    for (const std::string& p : properties) {
      args.push_back("-X");
      args.push_back(p);
    }
  }
  args.push_back(input_path);
  std::string out, err;
  const int code = RunKcat(args, timeout, &out, &err);
  if (log != nullptr) *log = err;
  return code;
}

void MockKafka::Produce(const std::string& topic,
                        const std::vector<std::pair<std::string, std::string>>& records,
                        const ProduceOptions& options) {
  std::string log;
  const int code = TryProduce(topic, records, options, &log);
  if (code != 0) {
    throw std::runtime_error("kcat -P to " + topic + " failed (exit " + std::to_string(code) +
                             "):\n" + Tail(log) + "\nthe mock's log:\n" + Tail(Log()));
  }
}

std::vector<KafkaRecord> MockKafka::ReadTopic(const std::string& topic) {
  std::vector<std::string> args = {"-C", "-t", topic, "-o", "beginning", "-e", "-J", "-q"};
  for (const std::string& p : kKcatProperties) {
    args.push_back("-X");
    args.push_back(p);
  }
  std::string out, err;
  const int code = RunKcat(args, milliseconds(60000), &out, &err);
  if (code != 0) {
    throw std::runtime_error("kcat -C -t " + topic + " failed (exit " + std::to_string(code) +
                             "):\n" + Tail(err));
  }
  std::vector<KafkaRecord> records;
  for (const std::string& line : SplitLines(out)) records.push_back(ParseEnvelope(line));
  std::sort(records.begin(), records.end(), [](const KafkaRecord& a, const KafkaRecord& b) {
    return std::tie(a.partition, a.offset) < std::tie(b.partition, b.offset);
  });
  return records;
}

std::vector<KafkaRecord> MockKafka::ReadTopicUntil(const std::string& topic, size_t count,
                                                   milliseconds timeout) {
  std::vector<KafkaRecord> records;
  WaitFor(
      [&] {
        records = ReadTopic(topic);
        return records.size() >= count;
      },
      timeout, milliseconds(100));
  return records;
}

std::string ToString(const KafkaRecord& r) {
  std::string s = "p" + std::to_string(r.partition) + "@" + std::to_string(r.offset) +
                  " key=" + r.key.value_or("null") + " value=" + r.value.value_or("null") +
                  " headers=[";
  for (size_t i = 0; i < r.headers.size(); ++i) {
    s += (i == 0 ? "" : ",") + r.headers[i].first + "=" + r.headers[i].second;
  }
  return s + "]";
}

}  // namespace pgslotd::test
