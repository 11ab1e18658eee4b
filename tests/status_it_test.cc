// What an operator sees of a running daemon (pgslotd --status, the debug
// log), and one daemon per state directory.
#include <signal.h>

#include <string>
#include <vector>

#include "daemon_fixture.h"
#include "json_parse.h"

namespace pgslotd::test {
namespace {

using std::chrono::seconds;

class StatusTest : public DaemonTest {
 protected:
  // Runs `pgslotd --config cfg --status [--json]`; returns its exit code.
  int Status(const std::string& cfg, bool json, Subprocess* p) {
    std::vector<std::string> args = {PgslotdBinary(), "--config", cfg, "--status"};
    if (json) args.push_back("--json");
    p->Start(args);
    return p->Wait(seconds(10));
  }

  // The line of `status` about `slot`.
  static std::string LineOf(const std::string& status, const std::string& slot) {
    for (const std::string& line : SplitLines(status)) {
      if (line.rfind(slot + ": ", 0) == 0) return line;
    }
    return "";
  }
};

TEST_F(StatusTest, StatusShowsEverySlotFromAShell) {
  pg_->Exec("DROP TABLE IF EXISTS st; CREATE TABLE st(id int)");
  FreshSlots({"it_st_file", "it_st_pipe"});
  pg_->DropSlotIfExists("it_st_gone");
  std::string log = dir_->File("st.log");
  std::string fifo = dir_->File("st.fifo");
  std::string cfg =
      WriteConfig(Header() + SlotYaml("it_st_file", "{type: file, path: " + log + "}") +
                  SlotYaml("it_st_pipe", "{type: pipe, path: " + fifo + "}") +
                  SlotYaml("it_st_gone", "{type: stdout}"));
  Subprocess p;
  p.Start({PgslotdBinary(), "--config", cfg});
  pg_->Exec("INSERT INTO st VALUES (1)");
  std::string end = pg_->CurrentWalLsn();
  ASSERT_TRUE(WaitFor([&] { return FlushAtLeast("it_st_file", end); }, seconds(20))) << p.Stderr();
  // The pipe has no reader: that slot waits for its sink.
  std::string text;
  ASSERT_TRUE(WaitFor(
      [&] {
        Subprocess s;
        if (Status(cfg, false, &s) != 0) return false;
        text = s.Stdout();
        return LineOf(text, "it_st_file").find("streaming;") != std::string::npos &&
               LineOf(text, "it_st_pipe").find("waiting for sink;") != std::string::npos &&
               LineOf(text, "it_st_gone").find("failed (") != std::string::npos;
      },
      seconds(20)))
      << text << p.Stderr();
  EXPECT_EQ(SplitLines(text).size(), 3u) << text;
  std::string file_line = LineOf(text, "it_st_file");
  std::string acked = pg_->ConfirmedFlushLsn("it_st_file");
  EXPECT_NE(file_line.find("acknowledged "), std::string::npos) << file_line;
  EXPECT_NE(file_line.find("; sink file " + log + " (idle)"), std::string::npos) << file_line;
  EXPECT_NE(LineOf(text, "it_st_pipe").find("sink pipe " + fifo + " (waiting for reader)"),
            std::string::npos)
      << text;
  EXPECT_NE(LineOf(text, "it_st_gone")
                .find("replication slot \"it_st_gone\" does not exist in the server"),
            std::string::npos)
      << text;

  Subprocess js;
  ASSERT_EQ(Status(cfg, true, &js), 0) << js.Stderr();
  Json doc = JsonParser::Parse(js.Stdout());
  ASSERT_EQ(doc["slots"].items.size(), 3u);
  const Json& file = doc["slots"].items[0];
  EXPECT_EQ(file["name"].text, "it_st_file");
  EXPECT_EQ(file["state"].text, "streaming");
  EXPECT_EQ(file["sink"].text, "file " + log);
  EXPECT_EQ(file["sink_state"].text, "idle");
  EXPECT_EQ(file["error"].text, "");
  EXPECT_EQ(file["lag_alarm"].kind, Json::Kind::kBool);
  EXPECT_EQ(file["lag_seconds"].kind, Json::Kind::kNumber);
  EXPECT_FALSE(file["acknowledged_lsn"].text.empty());
  EXPECT_EQ(doc["slots"].items[1]["state"].text, "waiting for sink");
  EXPECT_EQ(doc["slots"].items[2]["state"].text, "failed");
  EXPECT_NE(doc["slots"].items[2]["error"].text.find("does not exist"), std::string::npos);

  ASSERT_TRUE(p.Signal(SIGTERM));
  ASSERT_EQ(p.Wait(seconds(20)), 0) << p.Stderr();
  // Nobody answers now: a clear error, exit 1.
  Subprocess after;
  EXPECT_EQ(Status(cfg, false, &after), 1);
  EXPECT_NE(after.Stderr().find("cannot reach the pgslotd running " + cfg), std::string::npos)
      << after.Stderr();
  EXPECT_FALSE(FileExists(dir_->File("pgslotd.sock"))) << "the socket goes with the daemon";
}

TEST_F(StatusTest, ASecondPgslotdOnTheSameStateDirectoryExitsNamingTheFirst) {
  pg_->Exec("DROP TABLE IF EXISTS lockt; CREATE TABLE lockt(id int)");
  FreshSlots({"it_lock_a"});
  std::string log = dir_->File("a.log");
  std::string cfg =
      WriteConfig(Header() + SlotYaml("it_lock_a", "{type: file, path: " + log + "}"));
  Subprocess first;
  first.Start({PgslotdBinary(), "--config", cfg});
  pg_->Exec("INSERT INTO lockt VALUES (1)");
  std::string end = pg_->CurrentWalLsn();
  ASSERT_TRUE(WaitFor([&] { return FlushAtLeast("it_lock_a", end); }, seconds(20)))
      << first.Stderr();
  std::string record = ReadFile(dir_->File("it_lock_a.state"));
  // Another configuration with the same state directory.
  std::string other = WriteConfig(
      Header() + SlotYaml("it_lock_a", "{type: file, path: " + dir_->File("b.log") + "}"),
      "other.yaml");
  Subprocess second;
  second.Start({PgslotdBinary(), "--config", other});
  EXPECT_EQ(second.Wait(seconds(20)), 1);
  EXPECT_NE(second.Stderr().find("another pgslotd (pid " + std::to_string(first.pid()) +
                                 ") already uses the state directory " + dir_->path()),
            std::string::npos)
      << second.Stderr();
  EXPECT_EQ(ReadFile(dir_->File("it_lock_a.state")), record) << "the first one's record stays";
  EXPECT_FALSE(FileExists(dir_->File("b.log")));
  EXPECT_TRUE(first.Running());
  ASSERT_TRUE(first.Signal(SIGTERM));
  ASSERT_EQ(first.Wait(seconds(20)), 0) << first.Stderr();
  // The lock goes with the process, even after kill -9.
  Subprocess third;
  third.Start({PgslotdBinary(), "--config", cfg});
  ASSERT_TRUE(WaitFor([&] { return third.Stderr().find("streaming from") != std::string::npos; },
                      seconds(20)))
      << third.Stderr();
  third.Signal(SIGKILL);
  ASSERT_EQ(third.Wait(seconds(20)), 128 + SIGKILL);
  Subprocess fourth;
  fourth.Start({PgslotdBinary(), "--config", cfg, "--end-lsn", pg_->CurrentWalLsn()});
  EXPECT_EQ(fourth.Wait(seconds(60)), 0) << fourth.Stderr();
}

TEST_F(StatusTest, AReloadThatMovesTheStateDirectoryIsRefused) {
  pg_->Exec("DROP TABLE IF EXISTS mv; CREATE TABLE mv(id int)");
  FreshSlots({"it_mv"});
  std::string log = dir_->File("mv.log");
  std::string slot = SlotYaml("it_mv", "{type: file, path: " + log + "}");
  std::string cfg = WriteConfig(Header() + slot);
  Subprocess p;
  p.Start({PgslotdBinary(), "--config", cfg});
  ASSERT_TRUE(
      WaitFor([&] { return p.Stderr().find("streaming from") != std::string::npos; }, seconds(20)));
  WriteConfig("connection: \"" + pg_->Conninfo() + "\"\nstate_directory: " + dir_->File("moved") +
              "\nruntime_directory: " + dir_->path() + "\nslots:\n" + slot);
  ASSERT_TRUE(p.Signal(SIGHUP));
  ASSERT_TRUE(WaitFor(
      [&] { return p.Stderr().find("refused: state_directory changed") != std::string::npos; },
      seconds(20)))
      << p.Stderr();
  pg_->Exec("INSERT INTO mv VALUES (7)");
  std::string end = pg_->CurrentWalLsn();
  ASSERT_TRUE(WaitFor([&] { return FlushAtLeast("it_mv", end); }, seconds(20))) << p.Stderr();
  EXPECT_FALSE(FileExists(dir_->File("moved")));
  ASSERT_TRUE(p.Signal(SIGTERM));
  EXPECT_EQ(p.Wait(seconds(20)), 0);
}

TEST_F(StatusTest, DebugLogsSessionsAndProgress) {
  pg_->Exec("DROP TABLE IF EXISTS dbg; CREATE TABLE dbg(id int)");
  FreshSlots({"it_dbg"});
  pg_->Exec("INSERT INTO dbg VALUES (1)");
  std::string cfg = WriteConfig(Header("postgres", "log_level: debug\n") +
                                SlotYaml("it_dbg", "{type: file, path: " + dir_->File("d") + "}"));
  Subprocess p;
  p.Start({PgslotdBinary(), "--config", cfg});
  ASSERT_TRUE(WaitFor(
      [&] {
        return !LinesWithAll(p.Stderr(), {"debug slot it_dbg: progress: received ", ", durable ",
                                          ", acknowledged ", "sink "})
                    .empty();
      },
      seconds(20)))
      << p.Stderr();
  ASSERT_TRUE(p.Signal(SIGTERM));
  ASSERT_EQ(p.Wait(seconds(20)), 0);
  EXPECT_EQ(LinesWithAll(p.Stderr(), {"debug slot it_dbg: session ended (stopped): started at ",
                                      ", received up to ", ", acknowledged "})
                .size(),
            1u)
      << p.Stderr();
  // At info, none of it.
  Subprocess quiet;
  std::string info = WriteConfig(
      Header() + SlotYaml("it_dbg", "{type: file, path: " + dir_->File("d") + "}"), "info.yaml");
  quiet.Start({PgslotdBinary(), "--config", info, "--end-lsn", pg_->CurrentWalLsn()});
  ASSERT_EQ(quiet.Wait(seconds(30)), 0);
  EXPECT_EQ(quiet.Stderr().find("progress:"), std::string::npos) << quiet.Stderr();
}

}  // namespace
}  // namespace pgslotd::test
