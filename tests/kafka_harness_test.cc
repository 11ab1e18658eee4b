// The Kafka harness itself: the mock cluster program and MockKafka, checked
// with kcat the way a user would check a Kafka cluster (what a consumer
// reads back, whether a producer's records were delivered, whether a
// process is left running).
#include "kafka_harness.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <memory>
#include <string>
#include <vector>

namespace pgslotd::test {
namespace {

using std::chrono::milliseconds;

// The records as ToString lines, for exact comparisons with readable
// failures.
std::vector<std::string> Lines(const std::vector<KafkaRecord>& records) {
  std::vector<std::string> lines;
  for (const KafkaRecord& r : records) lines.push_back(ToString(r));
  return lines;
}

// Whether a process with this pid exists (a zombie counts).
bool ProcessExists(pid_t pid) { return kill(pid, 0) == 0 || errno != ESRCH; }

// Whether something accepts TCP connections on the first address of a
// bootstrap list ("127.0.0.1:PORT,...").
bool Listening(const std::string& bootstrap) {
  const std::string first = bootstrap.substr(0, bootstrap.find(','));
  const size_t colon = first.rfind(':');
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(std::stoi(first.substr(colon + 1))));
  if (inet_pton(AF_INET, first.substr(0, colon).c_str(), &addr.sin_addr) != 1) {
    throw std::runtime_error("not an IPv4 address: " + first);
  }
  const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) throw std::runtime_error("socket failed");
  const bool connected = connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0;
  close(fd);
  return connected;
}

class KafkaHarness : public ::testing::Test {
 protected:
  TempDir dir_{"pgslotd-kafka-test"};
  MockKafka kafka_{dir_.path()};  // destroyed first: stops before the dir goes
};

// Keyed records sent through the mock's bootstrap come back from a
// consumer exactly: partition, offset, key, value and headers, in order.
TEST_F(KafkaHarness, KeyedRecordsComeBackExactly) {
  MockKafka::Options options;
  options.topics = {{"orders", 3}};
  kafka_.Start(options);

  ProduceOptions p0;
  p0.partition = 0;
  kafka_.Produce("orders", {{"a1", "first"}, {"a2", "second"}}, p0);
  ProduceOptions p2;
  p2.partition = 2;
  p2.headers = {{"source", "pgslotd"}, {"lsn", "0/16B3748"}};
  kafka_.Produce("orders", {{"b1", "{\"id\": 1, \"name\": \"caf\xc3\xa9\"}"}}, p2);
  kafka_.Produce("orders", {{"a3", "third"}}, p0);

  EXPECT_EQ(Lines(kafka_.ReadTopicUntil("orders", 4)),
            (std::vector<std::string>{
                "p0@0 key=a1 value=first headers=[]",
                "p0@1 key=a2 value=second headers=[]",
                "p0@2 key=a3 value=third headers=[]",
                "p2@0 key=b1 value={\"id\": 1, \"name\": \"caf\xc3\xa9\"} "
                "headers=[source=pgslotd,lsn=0/16B3748]",
            }));
  for (const KafkaRecord& r : kafka_.ReadTopic("orders")) EXPECT_EQ(r.topic, "orders");

  // Without a partition, librdkafka's partitioner keeps one key in one
  // partition, in the order sent (an auto-created topic: 4 partitions).
  kafka_.Produce("keyed", {{"same", "1"}, {"same", "2"}, {"same", "3"}});
  const std::vector<KafkaRecord> keyed = kafka_.ReadTopicUntil("keyed", 3);
  ASSERT_EQ(keyed.size(), 3u) << ::testing::PrintToString(Lines(keyed));
  for (size_t i = 0; i < keyed.size(); ++i) {
    EXPECT_EQ(keyed[i].partition, keyed[0].partition);
    EXPECT_EQ(keyed[i].offset, static_cast<int64_t>(i));
    EXPECT_EQ(keyed[i].value, std::to_string(i + 1));
  }
}

// A broker taken down leads its partitions still, so nothing reaches them
// (a producer times out) while other partitions keep working; once it is
// up, records sent to it arrive, and the timed-out one never does.
TEST_F(KafkaHarness, BrokerDownThenUp) {
  MockKafka::Options options;
  options.topics = {{"events", 3}};
  kafka_.Start(options);
  // The leaders the mock sets at start-up, as the cluster's metadata says.
  EXPECT_EQ(kafka_.Leader("events", 0), 1);
  EXPECT_EQ(kafka_.Leader("events", 1), 2);
  EXPECT_EQ(kafka_.Leader("events", 2), 3);

  kafka_.Down(1);
  ProduceOptions to_down;
  to_down.partition = 0;
  to_down.properties = {"message.timeout.ms=2000"};
  std::string log;
  EXPECT_EQ(kafka_.TryProduce("events", {{"k", "while-down"}}, to_down, &log), 1) << log;
  EXPECT_NE(log.find("Message timed out"), std::string::npos) << log;
  ProduceOptions to_other;
  to_other.partition = 1;
  kafka_.Produce("events", {{"k", "other-partition"}}, to_other);

  kafka_.Up(1);
  ProduceOptions to_up;
  to_up.partition = 0;
  kafka_.Produce("events", {{"k", "after-up"}}, to_up);

  EXPECT_EQ(Lines(kafka_.ReadTopicUntil("events", 2)),
            (std::vector<std::string>{"p0@0 key=k value=after-up headers=[]",
                                      "p1@0 key=k value=other-partition headers=[]"}));
}

// A partition whose leader is down is written again once SetLeader moves it
// to a broker that is up, as after a real leader election.
TEST_F(KafkaHarness, LeaderMovesAwayFromADownBroker) {
  MockKafka::Options options;
  options.topics = {{"events", 2}};
  kafka_.Start(options);
  ASSERT_EQ(kafka_.Leader("events", 0), 1);
  kafka_.Down(1);
  kafka_.SetLeader("events", 0, 2);
  EXPECT_EQ(kafka_.Leader("events", 0), 2);
  ProduceOptions to_p0;
  to_p0.partition = 0;
  kafka_.Produce("events", {{"k", "moved"}}, to_p0);
  EXPECT_EQ(Lines(kafka_.ReadTopicUntil("events", 1)),
            (std::vector<std::string>{"p0@0 key=k value=moved headers=[]"}));
}

// Injected errors reach the producer: a retriable one fails a producer
// that may not retry, with that error; with retries it delivers every
// record once. A non-retriable one fails the next produce, and nothing is
// queued before it (the retriable errors were all used up).
TEST_F(KafkaHarness, InjectedProduceErrors) {
  MockKafka::Options options;
  options.topics = {{"t", 1}};
  kafka_.Start(options);
  ProduceOptions no_retries;
  no_retries.properties = {"message.send.max.retries=0"};
  std::string log;

  kafka_.InjectErrors("Produce", 1, "REQUEST_TIMED_OUT");
  EXPECT_EQ(kafka_.TryProduce("t", {{"k0", "refused"}}, no_retries, &log), 1) << log;
  EXPECT_NE(log.find("Broker: Request timed out"), std::string::npos) << log;

  kafka_.InjectErrors("Produce", 3, "NOT_LEADER_FOR_PARTITION");
  kafka_.InjectErrors("Produce", 2, "7");  // REQUEST_TIMED_OUT by number
  kafka_.Produce("t", {{"k1", "v1"}, {"k2", "v2"}});

  kafka_.InjectErrors("Produce", 1, "RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE");
  EXPECT_EQ(kafka_.TryProduce("t", {{"k3", "too-large"}}, no_retries, &log), 1) << log;
  EXPECT_NE(log.find("Broker: Message size too large"), std::string::npos) << log;
  kafka_.Produce("t", "k4", "v4");

  EXPECT_EQ(Lines(kafka_.ReadTopicUntil("t", 3)),
            (std::vector<std::string>{"p0@0 key=k1 value=v1 headers=[]",
                                      "p0@1 key=k2 value=v2 headers=[]",
                                      "p0@2 key=k4 value=v4 headers=[]"}));
}

// Every line gets one answer; a bad one gets `error <why>` and changes
// nothing, and the mock goes on answering.
TEST_F(KafkaHarness, BadCommandsAreAnsweredWithError) {
  kafka_.Start(3);
  const std::vector<std::string> bad = {
      "",
      "   ",
      "bogus",
      "down",
      "down 1 2",
      "down one",
      "down 4",
      "up 99999999999",
      "leader t 0",
      "leader t 0 9",
      "leader t -1 1",
      "error Produce 1",
      "error Nope 1 REQUEST_TIMED_OUT",
      "error Produce 0 REQUEST_TIMED_OUT",
      "error Produce -1 REQUEST_TIMED_OUT",
      "error Produce 1 NOT_AN_ERROR",
      "error Produce 1 _MSG_TIMED_OUT",
      "error Produce 1 -5",
      "error Produce 1 99999",
      "quit now",
      std::string("\x01\xff\x7f"),
      std::string(10000, 'x'),
  };
  for (const std::string& line : bad) {
    const std::string answer = kafka_.Command(line);
    EXPECT_EQ(answer.rfind("error ", 0), 0u) << "\"" << line.substr(0, 40) << "\": " << answer;
  }
  EXPECT_EQ(kafka_.Command("down 2"), "ok");
  EXPECT_EQ(kafka_.Command("up 2"), "ok");
  EXPECT_EQ(kafka_.Command("  up\t2  "), "ok");
  EXPECT_EQ(kafka_.Command("error metadata 1 0"), "ok");  // NO_ERROR: a no-op

  // None of it stopped a producer or left an error queued.
  ProduceOptions no_retries;
  no_retries.properties = {"message.send.max.retries=0"};
  kafka_.Produce("t", {{"k", "v"}}, no_retries);
  EXPECT_EQ(Lines(kafka_.ReadTopicUntil("t", 1)).size(), 1u);
  EXPECT_EQ(kafka_.Stop(), 0) << kafka_.Log();
}

// Closing its stdin (as a test process that goes away does) stops the
// mock: it exits 0 and its brokers stop listening.
TEST_F(KafkaHarness, StopsWhenStdinCloses) {
  kafka_.Start(1);
  const pid_t pid = kafka_.pid();
  ASSERT_TRUE(Listening(kafka_.bootstrap()));
  EXPECT_EQ(kafka_.Stop(), 0) << kafka_.Log();
  EXPECT_FALSE(ProcessExists(pid));
  EXPECT_FALSE(Listening(kafka_.bootstrap()));
}

// Destroying the harness leaves no process and no listener behind.
TEST_F(KafkaHarness, StopsWhenDestroyed) {
  auto kafka = std::make_unique<MockKafka>(dir_.path());
  kafka->Start(3);
  const pid_t pid = kafka->pid();
  const std::string bootstrap = kafka->bootstrap();
  kafka->Produce("t", "k", "v");
  kafka.reset();
  EXPECT_FALSE(ProcessExists(pid));
  EXPECT_FALSE(Listening(bootstrap));
  // It stopped on end of input rather than being killed.
  const std::string log = ReadFile(dir_.File("mock-kafka.stderr"));
  EXPECT_NE(log.find("pgslotd-mock-kafka: stopping: end of input\n"), std::string::npos) << log;
  EXPECT_NE(log.find("pgslotd-mock-kafka: stopped\n"), std::string::npos) << log;
}

// `quit` and SIGTERM stop it cleanly too.
TEST_F(KafkaHarness, StopsOnQuitAndSigterm) {
  kafka_.Start(1);
  EXPECT_EQ(kafka_.Command("quit"), "ok");
  EXPECT_EQ(kafka_.process().Wait(milliseconds(30000)), 0) << kafka_.Log();
  EXPECT_NE(kafka_.Log().find("stopping: quit"), std::string::npos) << kafka_.Log();

  TempDir other_dir("pgslotd-kafka-test");
  MockKafka other(other_dir.path());
  other.Start(1);
  ASSERT_TRUE(other.process().Signal(SIGTERM));
  EXPECT_EQ(other.process().Wait(milliseconds(30000)), 0) << other.Log();
  EXPECT_NE(other.Log().find("stopping: signal 15"), std::string::npos) << other.Log();
}

}  // namespace
}  // namespace pgslotd::test
