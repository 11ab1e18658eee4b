// A Kafka cluster for tests, and kcat to look into it.
//
// MockKafka runs pgslotd-mock-kafka (tests/kafka/mock_kafka_main.cc):
// librdkafka's mock brokers, which speak the Kafka protocol over TCP on
// 127.0.0.1, and take commands on the program's stdin (a broker down or up,
// a partition's leader moved, errors for the next requests of a kind). Records are read back, and
// written for the harness's own tests, by the real kcat, a client
// independent of whatever is under test.
//
// What the mock (librdkafka 2.0.2, Debian 12) does not do, so no test can
// rely on it (each checked by hand against this version):
//   - no transaction markers: the transactional requests are accepted, but
//     neither a commit nor an abort writes a control record, so a
//     read_committed consumer sees a transaction's records before it
//     commits and after it aborts, and offsets have no gaps where a real
//     broker's markers would be;
//   - no fencing: a second transactional producer with the same
//     transactional.id does not fence the first one, whose next commit
//     still succeeds;
//   - no SASL and no TLS: plaintext only;
//   - no leader election: a broker taken down keeps leading its
//     partitions, which cannot be written or read until it is up again or
//     SetLeader moves them;
//   - no CreateTopics or other admin requests: topics are made with
//     `--topic NAME:PARTITIONS` (MockKafka::Options::topics; partition p is
//     led by broker p % brokers + 1), or when a client first asks for one
//     (4 partitions, leaders picked at random);
//   - nothing is kept on disk: the cluster's records go with the process.
//
// Errors are thrown as std::runtime_error, as in test_util.h: a mock that
// does not start, a command not answered `ok`, a kcat that fails. The
// messages carry the tail of the mock's or kcat's stderr. Thread-safety:
// none; call everything from the test's own thread (Subprocess's rule).
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "test_util.h"

namespace pgslotd::test {

// One record as kcat read it.
struct KafkaRecord {
  std::string topic;
  int32_t partition = -1;
  int64_t offset = -1;
  // nullopt: a null key; a null value (a tombstone).
  std::optional<std::string> key;
  std::optional<std::string> value;
  // In the record's order; a null header value reads as "".
  std::vector<std::pair<std::string, std::string>> headers;
};

// How kcat -P sends records (MockKafka::TryProduce).
struct ProduceOptions {
  int32_t partition = -1;  // -1: librdkafka's partitioner (by key)
  // Headers on every record of the call: kcat -H name=value.
  std::vector<std::pair<std::string, std::string>> headers;
  // More librdkafka properties for kcat (-X name=value), after the
  // harness's own, e.g. "message.timeout.ms=3000".
  std::vector<std::string> properties;
};

// The path of the mock program: the PGSLOTD_MOCK_KAFKA_BINARY compile
// definition, or "pgslotd-mock-kafka" (looked up in PATH) without it.
std::string MockKafkaBinary();

// The kcat the harness runs: the PGSLOTD_KCAT compile definition (the
// path CMake found), or "kcat" (looked up in PATH) without it.
std::string KcatBinary();

class MockKafka {
 public:
  struct Options {
    int brokers = 3;  // ids 1..brokers
    // Topics made at start-up: name and number of partitions.
    std::vector<std::pair<std::string, int>> topics;
  };

  // Keeps its files (the mock's stdout and stderr, kcat's input and
  // output) in `dir`, which must outlive this object: the test's TempDir.
  explicit MockKafka(std::string dir);
  // The same in a TempDir of its own, removed with this object.
  MockKafka();
  // Stops the mock (Stop()) if it runs; kills it if it does not stop. A
  // mock that exited with a code other than 0 fails the running test.
  ~MockKafka();
  MockKafka(const MockKafka&) = delete;
  MockKafka& operator=(const MockKafka&) = delete;

  // Starts the mock and waits (up to `timeout`) for its bootstrap line.
  // Throws if it exits or says nothing in time. Call once.
  void Start(const Options& options,
             std::chrono::milliseconds timeout = std::chrono::milliseconds(60000));
  void Start(int brokers = 3) {
    Options options;
    options.brokers = brokers;
    Start(options);
  }

  // The brokers' host:port list, for bootstrap.servers.
  const std::string& bootstrap() const { return bootstrap_; }
  pid_t pid() const { return process_.pid(); }
  Subprocess& process() { return process_; }

  // Sends one command line (no newline) and returns the mock's answer
  // without its newline: "ok" or "error <why>". Throws if no answer comes
  // within `timeout` (the mock is gone or hangs).
  std::string Command(const std::string& line,
                      std::chrono::milliseconds timeout = std::chrono::milliseconds(60000));
  // down / up / error commands; each throws unless answered `ok`.
  void Down(int32_t broker_id);
  void Up(int32_t broker_id);
  // Makes `broker_id` the leader of `topic`'s `partition` (-1: none), as
  // a real cluster does when the leader fails; clients learn it from their
  // next metadata request.
  void SetLeader(const std::string& topic, int32_t partition, int32_t broker_id);
  // The next `count` requests of kind `request` (a Kafka API name such as
  // Produce, EndTxn, Metadata) fail with `error` (librdkafka's name of a
  // broker error, e.g. NOT_LEADER_FOR_PARTITION, or its number).
  void InjectErrors(const std::string& request, int count, const std::string& error);

  // Closes the mock's stdin (it stops on end of file) and waits up to
  // `timeout` for it to exit; returns its exit code, or -1 if it is still
  // running (the destructor then kills it).
  int Stop(std::chrono::milliseconds timeout = std::chrono::milliseconds(30000));

  // The mock's stderr so far (librdkafka's log).
  std::string Log() const;

  // The leader of `topic`'s `partition`, from the cluster's metadata
  // (kcat -L). Throws if kcat fails or the partition is not listed.
  int32_t Leader(const std::string& topic, int32_t partition);

  // Sends `records` (key, value) to `topic` with kcat -P, one kcat run,
  // and returns kcat's exit code once it is done: 0 when every record was
  // delivered (acknowledged by the leader), 1 when any failed. kcat's
  // stderr goes to *log if given. Keys may hold neither tab nor newline,
  // values no newline (kcat's delimiters) and none may be empty; anything
  // else throws. Throws if kcat runs past `timeout` (it is killed).
  int TryProduce(const std::string& topic,
                 const std::vector<std::pair<std::string, std::string>>& records,
                 const ProduceOptions& options = {}, std::string* log = nullptr,
                 std::chrono::milliseconds timeout = std::chrono::milliseconds(120000));
  // The same, throwing unless every record was delivered.
  void Produce(const std::string& topic,
               const std::vector<std::pair<std::string, std::string>>& records,
               const ProduceOptions& options = {});
  void Produce(const std::string& topic, const std::string& key, const std::string& value) {
    Produce(topic, {{key, value}});
  }

  // Every record of `topic` up to the end of each partition as it is when
  // kcat gets there (kcat -C -o beginning -e -J), ordered by partition and
  // offset. A topic that does not exist yet is created (empty).
  std::vector<KafkaRecord> ReadTopic(const std::string& topic);
  // ReadTopic until it returns at least `count` records or `timeout` has
  // passed; returns the last read (more than `count` when more are there,
  // fewer at the deadline), so that the caller asserts on exactly what
  // the topic holds.
  std::vector<KafkaRecord> ReadTopicUntil(
      const std::string& topic, size_t count,
      std::chrono::milliseconds timeout = std::chrono::milliseconds(60000));

 private:
  // Runs kcat with `args` (after -b <bootstrap>) to its end, up to
  // `timeout`; returns its exit code, its stdout in *out and its stderr in
  // *err. Throws if it cannot be started or runs past the timeout.
  int RunKcat(const std::vector<std::string>& args, std::chrono::milliseconds timeout,
              std::string* out, std::string* err);
  // A fresh file name in dir_ for one kcat run's input or output.
  std::string NextFile(const std::string& what);
  // The complete lines the mock has written to stdout so far.
  std::vector<std::string> StdoutLines() const;
  std::string Describe() const;  // exit state and stderr tail, for errors

  std::unique_ptr<TempDir> own_dir_;  // only for MockKafka()
  std::string dir_;
  Subprocess process_;
  std::string bootstrap_;
  size_t lines_seen_ = 0;  // stdout lines answered so far, bootstrap included
  int files_ = 0;          // for NextFile
};

// A record as a one-line text for failure messages and comparisons:
// "p<partition>@<offset> key=<key> value=<value> headers=[a=b,...]"
// (null key or value printed as `null`).
std::string ToString(const KafkaRecord& record);

}  // namespace pgslotd::test
