// On-demand snapshot requests: the --table names, the request file's text,
// and the worker's side (taking files in order, moving a bad one aside,
// deleting each once it is done with).
#include "snapshot/snapshot_request.h"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

namespace pgslotd {
namespace {

QualifiedTable Parsed(const std::string& text) {
  QualifiedTable t;
  std::string err;
  EXPECT_TRUE(ParseQualifiedTable(text, &t, &err)) << err;
  return t;
}

std::string Refusal(const std::string& text) {
  QualifiedTable t;
  std::string err;
  EXPECT_FALSE(ParseQualifiedTable(text, &t, &err)) << text;
  return err;
}

TEST(SnapshotRequestTest, TableNamesAreReadAsSqlReadsThem) {
  EXPECT_EQ(Parsed("public.orders"), QualifiedTable("public", "orders"));
  EXPECT_EQ(Parsed("Sales.Orders"), QualifiedTable("sales", "orders"));
  EXPECT_EQ(Parsed("\"Sales\".\"Order \"\"Lines\"\"\""),
            QualifiedTable("Sales", "Order \"Lines\""));
  EXPECT_EQ(Parsed("s.\"a.b\""), QualifiedTable("s", "a.b"));
}

TEST(SnapshotRequestTest, ATableNameWithoutSchemaOrWithStrayQuotesIsRefused) {
  EXPECT_EQ(Refusal("orders"),
            "\"orders\": no schema: give the table as SCHEMA.TABLE (public.orders)");
  EXPECT_EQ(Refusal("a.b.c"),
            "\"a.b.c\": more than SCHEMA.TABLE (quote a name with a dot in it: \"my.table\")");
  EXPECT_EQ(Refusal(".t"), "\".t\": an empty name");
  EXPECT_EQ(Refusal("s."), "\"s.\": an empty name");
  EXPECT_EQ(Refusal("\"s.t"), "\"\"s.t\": a quoted name is not closed");
  EXPECT_EQ(Refusal("s.t\"x\""), "\"s.t\"x\"\": a quote inside an unquoted name");
  EXPECT_EQ(Refusal(""), "\"\": an empty name");
}

TEST(SnapshotRequestTest, ARequestComesBackAsItWasWritten) {
  std::vector<QualifiedTable> tables = {{"public", "orders"}, {"my schema", "t\tab\nle\\"}};
  const std::string text = SerializeSnapshotRequest(tables);
  EXPECT_EQ(text,
            "pgslotd-snapshot-request 1\n"
            "table public orders\n"
            "table my\\sschema t\\tab\\nle\\\\\n");
  std::vector<QualifiedTable> back;
  std::string err;
  ASSERT_TRUE(ParseSnapshotRequest(text, &back, &err)) << err;
  EXPECT_EQ(back, tables);

  EXPECT_EQ(SerializeSnapshotRequest({}), "pgslotd-snapshot-request 1\nall\n");
  ASSERT_TRUE(ParseSnapshotRequest("pgslotd-snapshot-request 1\nall\n", &back, &err)) << err;
  EXPECT_TRUE(back.empty());
}

TEST(SnapshotRequestTest, WhatIsNoRequestIsRefusedWithTheReason) {
  struct Case {
    const char* text;
    const char* error;
  } cases[] = {
      {"", "it is empty"},
      {"pgslotd-snapshot-request 1\n", "it names no table"},
      {"pgslotd-snapshot-request 2\nall\n", "line 1 is not what a request holds"},
      {"pgslotd-snapshot-request 1\nall", "its last line is cut off"},
      {"pgslotd-snapshot-request 1\ntable public\n", "line 2 is not what a request holds"},
      {"pgslotd-snapshot-request 1\ntable public t x\n", "line 2 is not what a request holds"},
      {"pgslotd-snapshot-request 1\ntable public t\\q\n", "line 2 is not what a request holds"},
      {"pgslotd-snapshot-request 1\nall\ntable a b\n", "line 3 is not what a request holds"},
      {"pgslotd-snapshot-request 1\ntable a b\nall\n", "line 3 is not what a request holds"},
      {"pgslotd-snapshot-request 1\ntable \\e b\n", "line 2 is not what a request holds"},
  };
  for (const Case& c : cases) {
    std::vector<QualifiedTable> tables;
    std::string err;
    EXPECT_FALSE(ParseSnapshotRequest(c.text, &tables, &err)) << c.text;
    EXPECT_EQ(err, c.error) << c.text;
  }
}

class SnapshotRequestFilesTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/pgslotd-request-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override {
    int rc = std::system(("rm -rf " + dir_).c_str());
    (void)rc;
  }
  std::string Write(const std::vector<QualifiedTable>& tables) {
    std::string warning;
    Result<std::string> path = WriteSnapshotRequest(dir_, "orders", tables, &warning);
    EXPECT_TRUE(path.ok()) << path.status().message();
    EXPECT_EQ(warning, "");
    return path.ok() ? path.value() : std::string();
  }
  static bool Exists(const std::string& path) { return ::access(path.c_str(), F_OK) == 0; }
  std::string dir_;
};

TEST_F(SnapshotRequestFilesTest, RequestsAreTakenOnceInTheOrderTheyWereMade) {
  mode_t umask_before = ::umask(077);  // an operator's strict umask
  std::string first = Write({{"public", "a"}});
  ::umask(umask_before);
  std::string second = Write({});
  std::string third = Write({{"public", "b"}, {"public", "c"}});
  // Another slot's request, and a temporary file of a writer, are not ours.
  std::string warning;
  Result<std::string> other = WriteSnapshotRequest(dir_, "orders_archive", {}, &warning);
  ASSERT_TRUE(other.ok());
  std::ofstream(dir_ + "/.orders.snapshot-request.1-1.tmp") << "half";
  struct stat st;
  ASSERT_EQ(::stat(first.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0644u) << "the daemon's user reads it, whatever the umask";
  EXPECT_EQ(first.rfind(dir_ + "/orders.snapshot-request.", 0), 0u) << first;

  SnapshotRequestFiles files(dir_, "orders");
  EXPECT_TRUE(files.AnyWaiting());
  std::vector<std::string> errors;
  std::vector<SnapshotRequestFiles::Request> taken = files.TakeNew(&errors);
  EXPECT_TRUE(errors.empty());
  ASSERT_EQ(taken.size(), 3u);
  EXPECT_EQ(taken[0].path, first);
  EXPECT_EQ(taken[0].tables, (std::vector<QualifiedTable>{{"public", "a"}}));
  EXPECT_EQ(taken[1].path, second);
  EXPECT_TRUE(taken[1].tables.empty());
  EXPECT_EQ(taken[2].path, third);
  EXPECT_EQ(taken[2].tables.size(), 2u);
  // Taken: not again, until a new one comes.
  EXPECT_TRUE(files.TakeNew(&errors).empty());
  std::string fourth = Write({{"public", "d"}});
  taken = files.TakeNew(&errors);
  ASSERT_EQ(taken.size(), 1u);
  EXPECT_EQ(taken[0].path, fourth);
}

TEST_F(SnapshotRequestFilesTest, AFileThatIsNoRequestIsMovedAsideWithTheReason) {
  std::string bad = dir_ + "/orders.snapshot-request.00000000000000000001-1";
  std::ofstream(bad) << "pgslotd-snapshot-request 1\nevery table\n";
  std::string good = Write({});
  SnapshotRequestFiles files(dir_, "orders");
  std::vector<std::string> errors;
  std::vector<SnapshotRequestFiles::Request> taken = files.TakeNew(&errors);
  ASSERT_EQ(taken.size(), 1u);
  EXPECT_EQ(taken[0].path, good);
  ASSERT_EQ(errors.size(), 1u);
  EXPECT_EQ(errors[0], "snapshot request " + bad +
                           " is no request (line 2 is not what a request holds): moved aside to " +
                           bad + ".invalid; ask again with pgslotd --snapshot");
  EXPECT_FALSE(Exists(bad));
  EXPECT_TRUE(Exists(bad + ".invalid"));
  EXPECT_TRUE(files.TakeNew(&errors).empty());
  EXPECT_EQ(errors.size(), 1u);
}

TEST_F(SnapshotRequestFilesTest, AFileSinkDeletesARequestOnceARecordWrittenAfterItHoldsIt) {
  std::string first = Write({});
  SnapshotRequestFiles files(dir_, "orders");
  std::vector<std::string> errors;
  std::vector<SnapshotRequestFiles::Request> taken = files.TakeNew(&errors);
  ASSERT_EQ(taken.size(), 1u);
  EXPECT_EQ(first, dir_ + "/orders.snapshot-request." + taken[0].id);
  files.Queued(taken[0], 7);  // seven records written before it was queued
  EXPECT_TRUE(files.pending());
  EXPECT_TRUE(files.Settle(true, 7, false).empty());
  EXPECT_TRUE(Exists(first));
  std::string second = Write({{"public", "t"}});
  std::vector<SnapshotRequestFiles::Request> more = files.TakeNew(&errors);
  ASSERT_EQ(more.size(), 1u);
  files.Queued(more[0], 7);
  // The eighth holds both.
  EXPECT_EQ(files.Settle(true, 8, false), (std::vector<std::string>{taken[0].id, more[0].id}));
  EXPECT_FALSE(Exists(first));
  EXPECT_FALSE(Exists(second));
  EXPECT_FALSE(files.pending());
  EXPECT_FALSE(files.AnyWaiting());
}

TEST_F(SnapshotRequestFilesTest, AStreamSinkDeletesItsRequestsOnceTheSnapshotIsFinished) {
  std::string first = Write({});
  SnapshotRequestFiles files(dir_, "orders");
  std::vector<std::string> errors;
  std::vector<SnapshotRequestFiles::Request> taken = files.TakeNew(&errors);
  ASSERT_EQ(taken.size(), 1u);
  files.Queued(taken[0], 0);
  files.Settle(false, 5, false);  // records say nothing for a stream sink
  EXPECT_TRUE(Exists(first));
  EXPECT_EQ(files.Settle(false, 0, true), std::vector<std::string>{taken[0].id});
  EXPECT_FALSE(Exists(first));
  EXPECT_FALSE(files.pending());
}

TEST_F(SnapshotRequestFilesTest, WritingIntoAMissingDirectorySaysWhatToDo) {
  std::string warning;
  Result<std::string> path = WriteSnapshotRequest(dir_ + "/none", "orders", {}, &warning);
  ASSERT_FALSE(path.ok());
  EXPECT_EQ(path.status().message(),
            "the state directory " + dir_ +
                "/none does not exist (pgslotd creates it when it first starts; start it once, "
                "or create it for the user it runs as)");
}

}  // namespace
}  // namespace pgslotd
