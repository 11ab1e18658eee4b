// pgslotd-mock-kafka: a Kafka cluster for tests, made of librdkafka's mock
// brokers (rdkafka_mock.h), driven one command per line on stdin.
//
//   pgslotd-mock-kafka [--brokers N] [--topic NAME:PARTITIONS]...
//
// It starts N brokers (ids 1..N, default 3) listening on 127.0.0.1, creates
// the topics named (replication factor min(N, 3)), partition p led by broker
// p % N + 1; other topics are created when a client first asks for them,
// with the mock's defaults (4 partitions, leaders picked at random). Then it
// prints exactly one line on stdout,
//
//   bootstrap 127.0.0.1:PORT,127.0.0.1:PORT,...
//
// and answers each line it reads on stdin with one line, `ok` or
// `error <why>`:
//
//   down <broker id>     disconnect the broker and refuse its connections
//                        (-1: every broker); its partitions keep it as leader
//   up <broker id>       let it accept connections again
//   leader <topic> <partition> <broker id>
//                        make the broker the partition's leader (-1: none);
//                        clients learn it from their next metadata request
//                        (the topic is created if it does not exist)
//   error <request> <count> <error>
//                        the next <count> requests of that type, to any
//                        broker, fail with <error>: a Kafka API name
//                        (Produce, Metadata, InitProducerId, EndTxn, ...) or
//                        its number; librdkafka's name of a broker error
//                        (NOT_LEADER_FOR_PARTITION, REQUEST_TIMED_OUT, ...,
//                        with or without RD_KAFKA_RESP_ERR_) or its number
//   quit                 stop the cluster and exit 0
//
// End of stdin, SIGTERM, SIGINT and SIGHUP stop it the same way, so a test
// that goes away (closing the write end of our stdin) leaves nothing running.
// An answer is written only once the mock's own thread has applied the
// command, so a client connecting after `ok` sees its effect. librdkafka's
// log goes to stderr. Exit codes: 0 after a stop, 64 for a bad command line,
// 1 when the cluster cannot be started.
#include <librdkafka/rdkafka.h>
// rdkafka_mock.h must come after rdkafka.h.
#include <librdkafka/rdkafka_mock.h>
#include <poll.h>
#include <signal.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <utility>
#include <vector>

namespace {

constexpr int kExitUsage = 64;
// A command line longer than this is answered with an error and skipped.
constexpr size_t kMaxLine = 4096;
// More errors than this in one command is a mistake, not a test.
constexpr long kMaxErrorCount = 1000000;

// Kafka's protocol API keys, by the names of the Kafka protocol guide.
// rdkafka_mock.h takes the number; librdkafka's own table of them
// (RD_KAFKAP_*) is not part of its public headers.
const std::pair<const char*, int16_t> kApiKeys[] = {
    {"Produce", 0},
    {"Fetch", 1},
    {"ListOffsets", 2},
    {"Metadata", 3},
    {"OffsetCommit", 8},
    {"OffsetFetch", 9},
    {"FindCoordinator", 10},
    {"JoinGroup", 11},
    {"Heartbeat", 12},
    {"LeaveGroup", 13},
    {"SyncGroup", 14},
    {"DescribeGroups", 15},
    {"ListGroups", 16},
    {"SaslHandshake", 17},
    {"ApiVersions", 18},
    {"CreateTopics", 19},
    {"DeleteTopics", 20},
    {"DeleteRecords", 21},
    {"InitProducerId", 22},
    {"OffsetForLeaderEpoch", 23},
    {"AddPartitionsToTxn", 24},
    {"AddOffsetsToTxn", 25},
    {"EndTxn", 26},
    {"TxnOffsetCommit", 28},
    {"DescribeConfigs", 32},
    {"SaslAuthenticate", 36},
};
// The highest API key a request can carry.
constexpr long kMaxApiKey = 32767;

struct Options {
  int brokers = 3;
  std::vector<std::pair<std::string, int>> topics;
};

// Parses the decimal integer `text` (all of it) into *out within
// [min, max]; false for anything else.
bool ParseInt(const std::string& text, long min, long max, long* out) {
  if (text.empty() || text.size() > 20) return false;
  errno = 0;
  char* end = nullptr;
  long value = std::strtol(text.c_str(), &end, 10);
  if (errno != 0 || end != text.c_str() + text.size() || value < min || value > max) return false;
  *out = value;
  return true;
}

bool EqualsIgnoreCase(const std::string& a, const char* b) {
  size_t n = std::strlen(b);
  if (a.size() != n) return false;
  for (size_t i = 0; i < n; ++i) {
    if (std::tolower(static_cast<unsigned char>(a[i])) !=
        std::tolower(static_cast<unsigned char>(b[i]))) {
      return false;
    }
  }
  return true;
}

bool ParseApiKey(const std::string& text, int16_t* key, std::string* why) {
  for (const auto& [name, value] : kApiKeys) {
    if (EqualsIgnoreCase(text, name)) {
      *key = value;
      return true;
    }
  }
  long number;
  if (ParseInt(text, 0, kMaxApiKey, &number)) {
    *key = static_cast<int16_t>(number);
    return true;
  }
  *why = "unknown request " + text + " (a Kafka API name such as Produce, or its number)";
  return false;
}

// A broker error: librdkafka's name (RD_KAFKA_RESP_ERR_ optional) or a
// number. librdkafka's own errors (negative codes) never cross the wire.
bool ParseBrokerError(const std::string& text, rd_kafka_resp_err_t* err, std::string* why) {
  long number;
  if (ParseInt(text, 0, 32767, &number)) {
    *err = static_cast<rd_kafka_resp_err_t>(number);
    return true;
  }
  static const std::string kPrefix = "RD_KAFKA_RESP_ERR_";
  std::string name =
      text.compare(0, kPrefix.size(), kPrefix) == 0 ? text.substr(kPrefix.size()) : text;
  const struct rd_kafka_err_desc* descs = nullptr;
  size_t count = 0;
  rd_kafka_get_err_descs(&descs, &count);
  for (size_t i = 0; i < count; ++i) {
    if (descs[i].name == nullptr || !EqualsIgnoreCase(name, descs[i].name)) continue;
    if (descs[i].code < 0) {
      *why = text + " is librdkafka's own error, not one a broker sends";
      return false;
    }
    *err = descs[i].code;
    return true;
  }
  *why = "unknown error " + text +
         " (librdkafka's name of a broker error, such as NOT_LEADER_FOR_PARTITION, or its number)";
  return false;
}

std::vector<std::string> Words(const std::string& line) {
  std::vector<std::string> words;
  size_t i = 0;
  while (i < line.size()) {
    while (i < line.size() && (line[i] == ' ' || line[i] == '\t' || line[i] == '\r')) ++i;
    size_t start = i;
    while (i < line.size() && line[i] != ' ' && line[i] != '\t' && line[i] != '\r') ++i;
    if (i > start) words.push_back(line.substr(start, i - start));
  }
  return words;
}

// What one command line does to the cluster. Returns the answer without its
// newline; sets *quit for `quit`.
std::string Execute(rd_kafka_mock_cluster_t* cluster, const std::string& line, bool* quit) {
  const std::vector<std::string> w = Words(line);
  if (w.empty()) return "error empty command";
  const std::string& verb = w[0];
  if (verb == "quit") {
    if (w.size() != 1) return "error usage: quit";
    *quit = true;
    return "ok";
  }
  if (verb == "down" || verb == "up") {
    long id;
    if (w.size() != 2 || !ParseInt(w[1], -1, INT32_MAX, &id)) {
      return "error usage: " + verb + " <broker id>";
    }
    const int32_t broker = static_cast<int32_t>(id);
    rd_kafka_resp_err_t err = verb == "down" ? rd_kafka_mock_broker_set_down(cluster, broker)
                                             : rd_kafka_mock_broker_set_up(cluster, broker);
    if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
      return "error broker " + w[1] + ": " + rd_kafka_err2str(err);
    }
    return "ok";
  }
  if (verb == "leader") {
    long partition, id;
    if (w.size() != 4 || !ParseInt(w[2], 0, INT32_MAX, &partition) ||
        !ParseInt(w[3], -1, INT32_MAX, &id)) {
      return "error usage: leader <topic> <partition> <broker id>";
    }
    rd_kafka_resp_err_t err = rd_kafka_mock_partition_set_leader(
        cluster, w[1].c_str(), static_cast<int32_t>(partition), static_cast<int32_t>(id));
    if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
      return "error " + w[1] + " [" + w[2] + "] leader " + w[3] + ": " + rd_kafka_err2str(err);
    }
    return "ok";
  }
  if (verb == "error") {
    if (w.size() != 4) return "error usage: error <request> <count> <error>";
    int16_t api_key;
    rd_kafka_resp_err_t code;
    long count;
    std::string why;
    if (!ParseApiKey(w[1], &api_key, &why)) return "error " + why;
    if (!ParseInt(w[2], 1, kMaxErrorCount, &count)) {
      return "error count " + w[2] + " is not a number from 1 to " + std::to_string(kMaxErrorCount);
    }
    if (!ParseBrokerError(w[3], &code, &why)) return "error " + why;
    const std::vector<rd_kafka_resp_err_t> errors(static_cast<size_t>(count), code);
    rd_kafka_mock_push_request_errors_array(cluster, api_key, errors.size(), errors.data());
    return "ok";
  }
  return "error unknown command " + verb + " (down, up, leader, error, quit)";
}

std::string TooLong() { return "error line longer than " + std::to_string(kMaxLine) + " bytes"; }

// Writes `line` and a newline to stdout, unbuffered. False when the reader
// has gone (EPIPE: SIGPIPE is ignored) or the write fails.
bool Answer(const std::string& line) {
  const std::string out = line + "\n";
  size_t done = 0;
  while (done < out.size()) {
    ssize_t n = write(STDOUT_FILENO, out.data() + done, out.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    done += static_cast<size_t>(n);
  }
  return true;
}

void Usage(FILE* to) {
  std::fprintf(to,
               "usage: pgslotd-mock-kafka [--brokers N] [--topic NAME:PARTITIONS]...\n"
               "Starts librdkafka's mock Kafka cluster, prints `bootstrap <servers>`, then\n"
               "reads commands on stdin, one per line, each answered `ok` or `error <why>`:\n"
               "  down <broker id> | up <broker id> | leader <topic> <partition> <broker id>\n"
               "  | error <request> <count> <error> | quit\n");
}

// Parses the command line into *options; false (with a message on stderr)
// when it is wrong.
bool ParseArgs(int argc, char** argv, Options* options) {
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "--help" || arg == "-h") {
      Usage(stdout);
      std::exit(0);
    }
    if ((arg == "--brokers" || arg == "--topic") && i + 1 >= argc) {
      std::fprintf(stderr, "pgslotd-mock-kafka: %s needs a value\n", arg.c_str());
      return false;
    }
    if (arg == "--brokers") {
      long n;
      if (!ParseInt(argv[++i], 1, 64, &n)) {
        std::fprintf(stderr, "pgslotd-mock-kafka: --brokers takes a number from 1 to 64\n");
        return false;
      }
      options->brokers = static_cast<int>(n);
    } else if (arg == "--topic") {
      const std::string value = argv[++i];
      const size_t colon = value.rfind(':');
      long partitions;
      if (colon == std::string::npos || colon == 0 ||
          !ParseInt(value.substr(colon + 1), 1, 10000, &partitions)) {
        std::fprintf(stderr,
                     "pgslotd-mock-kafka: --topic takes NAME:PARTITIONS (1 to 10000), not %s\n",
                     value.c_str());
        return false;
      }
      options->topics.emplace_back(value.substr(0, colon), static_cast<int>(partitions));
    } else {
      std::fprintf(stderr, "pgslotd-mock-kafka: unknown argument %s\n", arg.c_str());
      Usage(stderr);
      return false;
    }
  }
  return true;
}

// Reads commands from stdin and answers them until `quit`, end of input, a
// stop signal (on `signal_fd`) or a reader that has gone away. Returns
// which of these it was, for the log.
std::string Serve(rd_kafka_mock_cluster_t* cluster, int signal_fd) {
  std::string pending;
  bool overlong = false;  // skipping the rest of a line that was too long
  bool quit = false;
  for (;;) {
    pollfd fds[2] = {{STDIN_FILENO, POLLIN, 0}, {signal_fd, POLLIN, 0}};
    if (poll(fds, 2, -1) < 0) {
      if (errno == EINTR) continue;
      return std::string("poll: ") + std::strerror(errno);
    }
    if (fds[1].revents != 0) {
      signalfd_siginfo info;
      if (read(signal_fd, &info, sizeof(info)) != sizeof(info)) return "signal";
      return "signal " + std::to_string(info.ssi_signo);
    }
    if (fds[0].revents == 0) continue;
    char buf[4096];
    const ssize_t n = read(STDIN_FILENO, buf, sizeof(buf));
    const int read_errno = errno;
    if (n < 0 && read_errno == EINTR) continue;
    const bool eof = n <= 0;
    if (!eof) pending.append(buf, static_cast<size_t>(n));
    // Every whole line, then (at the end of input) an unterminated last one.
    size_t start = 0;
    for (;;) {
      size_t nl = pending.find('\n', start);
      if (nl == std::string::npos && !(eof && start < pending.size())) break;
      if (nl == std::string::npos) nl = pending.size();
      const std::string line = pending.substr(start, nl - start);
      start = std::min(nl + 1, pending.size());
      if (overlong) {  // the tail of a line already answered
        overlong = false;
        continue;
      }
      const std::string answer = line.size() > kMaxLine ? TooLong() : Execute(cluster, line, &quit);
      if (!Answer(answer)) return "stdout closed";
      if (quit) return "quit";
    }
    pending.erase(0, start);
    if (pending.size() > kMaxLine) {  // answered now, its tail skipped
      if (!overlong && !Answer(TooLong())) return "stdout closed";
      overlong = true;
      pending.clear();
    }
    if (eof) return n == 0 ? "end of input" : std::string("stdin: ") + std::strerror(read_errno);
  }
}

}  // namespace

int main(int argc, char** argv) {
  Options options;
  if (!ParseArgs(argc, argv, &options)) return kExitUsage;

  // The stop signals are taken in this thread through a signalfd; blocked
  // before librdkafka starts its threads, which inherit the mask. A reader
  // that goes away shows as a failed write, not SIGPIPE.
  sigset_t stop;
  sigemptyset(&stop);
  for (int sig : {SIGTERM, SIGINT, SIGHUP}) sigaddset(&stop, sig);
  if (sigprocmask(SIG_BLOCK, &stop, nullptr) != 0) {
    std::fprintf(stderr, "pgslotd-mock-kafka: sigprocmask: %s\n", std::strerror(errno));
    return 1;
  }
  signal(SIGPIPE, SIG_IGN);
  const int signal_fd = signalfd(-1, &stop, SFD_CLOEXEC);
  if (signal_fd < 0) {
    std::fprintf(stderr, "pgslotd-mock-kafka: signalfd: %s\n", std::strerror(errno));
    return 1;
  }

  // The mock cluster hangs off a client handle, used for nothing else.
  char errstr[512];
  rd_kafka_conf_t* conf = rd_kafka_conf_new();
  if (rd_kafka_conf_set(conf, "client.id", "pgslotd-mock-kafka", errstr, sizeof(errstr)) !=
      RD_KAFKA_CONF_OK) {
    std::fprintf(stderr, "pgslotd-mock-kafka: %s\n", errstr);
    rd_kafka_conf_destroy(conf);
    return 1;
  }
  rd_kafka_t* rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof(errstr));
  if (rk == nullptr) {  // conf is still ours on failure
    std::fprintf(stderr, "pgslotd-mock-kafka: rd_kafka_new: %s\n", errstr);
    rd_kafka_conf_destroy(conf);
    return 1;
  }
  rd_kafka_mock_cluster_t* cluster = rd_kafka_mock_cluster_new(rk, options.brokers);
  if (cluster == nullptr) {
    std::fprintf(stderr, "pgslotd-mock-kafka: cannot start the mock cluster\n");
    rd_kafka_destroy(rk);
    return 1;
  }
  int status = 0;
  const int replication = std::min(options.brokers, 3);
  for (const auto& [name, partitions] : options.topics) {
    rd_kafka_resp_err_t err =
        rd_kafka_mock_topic_create(cluster, name.c_str(), partitions, replication);
    // The mock picks leaders at random; tests need to know them.
    for (int p = 0; p < partitions && err == RD_KAFKA_RESP_ERR_NO_ERROR; ++p) {
      err = rd_kafka_mock_partition_set_leader(cluster, name.c_str(), p, p % options.brokers + 1);
    }
    if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
      std::fprintf(stderr, "pgslotd-mock-kafka: cannot create topic %s: %s\n", name.c_str(),
                   rd_kafka_err2str(err));
      status = 1;
    }
  }
  if (status == 0) {
    const std::string why =
        Answer(std::string("bootstrap ") + rd_kafka_mock_cluster_bootstraps(cluster))
            ? Serve(cluster, signal_fd)
            : "stdout closed";
    std::fprintf(stderr, "pgslotd-mock-kafka: stopping: %s\n", why.c_str());
  }
  rd_kafka_mock_cluster_destroy(cluster);
  rd_kafka_destroy(rk);
  close(signal_fd);
  std::fprintf(stderr, "pgslotd-mock-kafka: stopped\n");
  return status;
}
