// The table that decides what a slot does about a server error
// (pg/server_error.h): by step, SQLSTATE and the slot's condition, never
// by the words of the message. The real-server cases, in German, are in
// server_error_it_test.cc.
#include "pg/server_error.h"

#include <gtest/gtest.h>

#include <string>

namespace pgslotd {
namespace {

using Code = Status::Code;

ServerError Err(SessionStep step, const std::string& sqlstate,
                const std::string& message = "the server's words") {
  ServerError e;
  e.step = step;
  e.sqlstate = sqlstate;
  e.message = message;
  return e;
}

ErrorContext Ctx(bool created_here = false) {
  return ErrorContext{"orders", "wal2json", "cdc", created_here};
}

Status Classify(const ServerError& e, SlotCondition slot = SlotCondition::kUnknown,
                bool created_here = false) {
  return ClassifyServerError(e, slot, Ctx(created_here));
}

bool Has(const Status& s, const std::string& words) {
  return s.message().find(words) != std::string::npos;
}

TEST(ServerErrorTest, ConnectionFailures) {
  ServerError no_password = Err(SessionStep::kConnect, "", "fe_sendauth: no password supplied");
  no_password.needs_password = true;
  Status s = Classify(no_password);
  EXPECT_EQ(s.code(), Code::kSlotFatal);
  EXPECT_TRUE(Has(s,
                  "fe_sendauth: no password supplied: the server asks for a password and none "
                  "is given: put it in a passfile"))
      << s.message();

  s = Classify(Err(SessionStep::kConnect, "28P01"));
  EXPECT_EQ(s.code(), Code::kSlotFatal);
  EXPECT_TRUE(Has(s,
                  "the server's words (SQLSTATE 28P01): the server refused the password of "
                  "role cdc"))
      << s.message();
  s = Classify(Err(SessionStep::kConnect, "42501"));
  EXPECT_EQ(s.code(), Code::kSlotFatal);
  EXPECT_TRUE(Has(s, "ALTER ROLE cdc REPLICATION")) << s.message();
  EXPECT_EQ(Classify(Err(SessionStep::kConnect, "28000")).code(), Code::kSlotFatal);
  EXPECT_EQ(Classify(Err(SessionStep::kConnect, "3D000")).code(), Code::kSlotFatal);

  // What can pass is retried: no server (no SQLSTATE), a server starting or
  // shutting down, no connection to spare.
  for (const char* passing : {"", "57P03", "57P01", "53300", "08006"}) {
    EXPECT_EQ(Classify(Err(SessionStep::kConnect, passing)).code(), Code::kRetryable) << passing;
  }
}

TEST(ServerErrorTest, AMissingPluginLibraryIsNamedAsSuch) {
  for (SessionStep step : {SessionStep::kCreateSlot, SessionStep::kStartReplication}) {
    Status s = Classify(Err(step, "58P01", "could not access file \"wal2jsn\""));
    EXPECT_EQ(s.code(), Code::kSlotFatal);
    EXPECT_TRUE(Has(s, "the output plugin \"wal2json\" is not installed on the server"))
        << s.message();
  }
}

TEST(ServerErrorTest, APluginTheServerDoesNotAllowIsNamedWithTheSettingToChange) {
  // Servers with output_plugin_libraries refuse other plugins with 42501;
  // on a replication connection, that is the only privilege left to lack.
  for (SessionStep step : {SessionStep::kCreateSlot, SessionStep::kStartReplication}) {
    Status s = Classify(Err(step, "42501"));
    EXPECT_EQ(s.code(), Code::kSlotFatal);
    EXPECT_TRUE(Has(s,
                    "the server does not let replication roles use the output plugin "
                    "\"wal2json\" (it is not in the server setting output_plugin_libraries)"))
        << s.message();
    EXPECT_TRUE(Has(s, "output_plugin_libraries = '<that list>, wal2json'")) << s.message();
  }
  // Elsewhere it is a privilege of the role.
  Status s = Classify(Err(SessionStep::kQuery, "42501"));
  EXPECT_EQ(s.code(), Code::kSlotFatal);
  EXPECT_TRUE(Has(s, "role cdc lacks a privilege this needs")) << s.message();
}

TEST(ServerErrorTest, SharedSqlstatesAskForTheSlotsCondition) {
  // 55000 is an invalidated slot, and other things too.
  ServerError e = Err(SessionStep::kStartReplication, "55000");
  EXPECT_TRUE(NeedsSlotCondition(e));
  EXPECT_EQ(Classify(e, SlotCondition::kUnknown).code(), Code::kRetryable);
  EXPECT_EQ(Classify(e, SlotCondition::kLost).code(), Code::kSlotInvalidated);
  EXPECT_EQ(Classify(e, SlotCondition::kHealthy).code(), Code::kSlotFatal);
  EXPECT_EQ(Classify(e, SlotCondition::kMissing).code(), Code::kSlotFatal);
  // 58P01 while streaming: WAL removed under an invalidated slot, or another file.
  e = Err(SessionStep::kStreaming, "58P01");
  EXPECT_TRUE(NeedsSlotCondition(e));
  Status s = Classify(e, SlotCondition::kLost);
  EXPECT_EQ(s.code(), Code::kSlotInvalidated);
  EXPECT_TRUE(Has(s, "invalidated slot \"orders\"")) << s.message();
  EXPECT_EQ(Classify(e, SlotCondition::kHealthy).code(), Code::kSlotFatal);

  for (const char* own : {"", "55006", "57P01", "42704", "XX000"}) {
    EXPECT_FALSE(NeedsSlotCondition(Err(SessionStep::kStreaming, own))) << own;
  }
  EXPECT_FALSE(NeedsSlotCondition(Err(SessionStep::kCreateSlot, "58P01")));
}

TEST(ServerErrorTest, StartingReplication) {
  Status s = Classify(Err(SessionStep::kStartReplication, "55006"));
  EXPECT_EQ(s.code(), Code::kRetryable);
  EXPECT_TRUE(Has(s, "slot \"orders\" is in use by another process")) << s.message();
  // Options the plugin refuses: test_decoding's 22023, pgoutput's XX000.
  for (const char* refused : {"22023", "XX000", "0A000"}) {
    EXPECT_EQ(Classify(Err(SessionStep::kStartReplication, refused)).code(), Code::kSlotFatal)
        << refused;
  }
  s = Classify(Err(SessionStep::kStartReplication, "42601", "syntax error"));
  EXPECT_EQ(s.code(), Code::kSlotFatal);
  EXPECT_TRUE(Has(s, "syntax error (SQLSTATE 42601): the server could not parse")) << s.message();
  EXPECT_EQ(Classify(Err(SessionStep::kStartReplication, "42704")).code(), Code::kSlotFatal);
}

TEST(ServerErrorTest, ASlotCreatedHereThatCannotStartSaysHowToDropIt) {
  Status s = Classify(Err(SessionStep::kStartReplication, "22023"), SlotCondition::kUnknown, true);
  EXPECT_EQ(s.code(), Code::kSlotFatal);
  EXPECT_TRUE(Has(s, "SELECT pg_drop_replication_slot('orders')")) << s.message();
  // Not for a slot the operator made, nor for a passing error.
  EXPECT_FALSE(Has(Classify(Err(SessionStep::kStartReplication, "22023")), "pg_drop"));
  EXPECT_FALSE(
      Has(Classify(Err(SessionStep::kStartReplication, "55006"), SlotCondition::kUnknown, true),
          "pg_drop"));
}

TEST(ServerErrorTest, WhileStreaming) {
  // A shutdown, a crash, a lost connection, a transient internal error.
  for (const char* passing : {"57P01", "57P02", "", "08006", "XX000", "53200"}) {
    EXPECT_EQ(Classify(Err(SessionStep::kStreaming, passing)).code(), Code::kRetryable) << passing;
  }
  // pgoutput's missing publication: the same change fails every time.
  Status s = Classify(Err(SessionStep::kStreaming, "42704"));
  EXPECT_EQ(s.code(), Code::kSlotFatal);
  EXPECT_TRUE(Has(s, "publication")) << s.message();
}

TEST(ServerErrorTest, UnknownErrorsAreRetriedAndKeepTheirSqlstate) {
  Status s = Classify(Err(SessionStep::kQuery, "P0001", "raised"));
  EXPECT_EQ(s.code(), Code::kRetryable);
  EXPECT_EQ(s.message(), "raised (SQLSTATE P0001)");
  EXPECT_EQ(Classify(Err(SessionStep::kQuery, "", "")).message(), "the server gave no reason");
}

TEST(ServerErrorTest, OneLineJoinsLinesAndDropsControlCharacters) {
  EXPECT_EQ(OneLine("server closed the connection unexpectedly\n\tThis probably means the server "
                    "terminated abnormally\n\tbefore or while processing the request.\n"),
            "server closed the connection unexpectedly; This probably means the server terminated "
            "abnormally; before or while processing the request.");
  EXPECT_EQ(OneLine("a\x1b[31mred\r\n\n"), "a [31mred");
  EXPECT_EQ(OneLine(""), "");
}

TEST(ServerErrorTest, TheSqlstateOfAFailedConnectionIsFoundInAnyLanguage) {
  std::string state;
  EXPECT_EQ(ParseConnectFailure("connection to server on socket \"/tmp/d/.s.PGSQL.5432\" failed: "
                                "FATAL:  28P01: password authentication failed for user \"cdc\"\n"
                                "LOCATION:  auth_failed, auth.c:326\n",
                                &state),
            "connection to server on socket \"/tmp/d/.s.PGSQL.5432\" failed: FATAL:  password "
            "authentication failed for user \"cdc\"");
  EXPECT_EQ(state, "28P01");
  EXPECT_EQ(
      ParseConnectFailure("Verbindung zum Server auf Socket \xc2\xbb/tmp/.s.PGSQL.5432\xc2\xab "
                          "fehlgeschlagen: FATAL:  42501: nur Superuser und Rollen mit dem "
                          "Attribut REPLICATION d\xc3\xbcrfen WAL-Sender starten\n"
                          "ORT:  InitPostgres, postinit.c:918\n",
                          &state),
      "Verbindung zum Server auf Socket \xc2\xbb/tmp/.s.PGSQL.5432\xc2\xab fehlgeschlagen: "
      "FATAL:  nur Superuser und Rollen mit dem Attribut REPLICATION d\xc3\xbcrfen WAL-Sender "
      "starten");
  EXPECT_EQ(state, "42501");
  // No server reached: no SQLSTATE.
  EXPECT_EQ(ParseConnectFailure("connection to server at \"127.0.0.1\", port 1 failed: Connection "
                                "refused\n\tIs the server running on that host and accepting "
                                "TCP/IP connections?\n",
                                &state),
            "connection to server at \"127.0.0.1\", port 1 failed: Connection refused; Is the "
            "server running on that host and accepting TCP/IP connections?");
  EXPECT_EQ(state, "");
  EXPECT_EQ(ParseConnectFailure("fe_sendauth: no password supplied\n", &state),
            "fe_sendauth: no password supplied");
  EXPECT_EQ(state, "");
}

}  // namespace
}  // namespace pgslotd
