// Golden tests: pgoutput messages captured from a real PostgreSQL 15
// (fuzz/corpus, made by fuzz/capture_corpus.cc: every value kind and op of
// the json format, proto_version 1, binary values, and streamed
// transactions with commits, aborts and subtransaction aborts) decoded and
// compared byte for byte with reviewed output in tests/golden/.
//
// After an intended change of the format, regenerate with
//   PGSLOTD_UPDATE_GOLDEN=1 build/tests/unit_tests --gtest_filter='Golden*'
// and review the diff before committing it.
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "decode/pgoutput_formatter.h"

namespace pgslotd {
namespace {

std::string Slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// Decodes a corpus file (messages framed by a 2-byte big-endian length),
// giving each message an LSN as the fuzzer does.
std::string Decode(const std::string& framed, const std::string& spool_dir) {
  JsonOptions options;
  options.include_transactions = true;
  options.spool_dir = spool_dir;
  options.spool_memory = 64;  // streamed changes go through spool files
  options.slot_name = "golden";
  PgoutputFormatter f(options);
  RecordBuffer out;
  std::string all;
  Lsn lsn = 0x1000000;
  for (size_t at = 0; at + 2 <= framed.size();) {
    size_t len =
        (static_cast<unsigned char>(framed[at]) << 8) | static_cast<unsigned char>(framed[at + 1]);
    at += 2;
    len = std::min(len, framed.size() - at);
    Status s = f.Format(std::string_view(framed.data() + at, len), lsn, &out);
    while (s.ok() && f.HasMoreOutput()) s = f.Continue(&out, 4096);
    if (!s.ok()) all += "ERROR " + s.message() + "\n";
    all.append(out.data(), out.size());
    out.Clear();
    at += len;
    lsn += 16 + len;
  }
  return all;
}

class GoldenTest : public ::testing::TestWithParam<const char*> {};

TEST_P(GoldenTest, CapturedMessagesDecodeToTheReviewedOutput) {
  std::string name = GetParam();
  std::string src = PGSLOTD_SOURCE_DIR;
  std::string corpus = Slurp(src + "/fuzz/corpus/" + name);
  ASSERT_FALSE(corpus.empty()) << "missing fuzz/corpus/" << name;
  char tmpl[] = "/tmp/pgslotd-golden-XXXXXX";
  ASSERT_NE(mkdtemp(tmpl), nullptr);
  std::string got = Decode(corpus, std::string(tmpl) + "/spool");
  std::filesystem::remove_all(tmpl);
  std::string golden_path = src + "/tests/golden/" + name + ".jsonl";
  if (std::getenv("PGSLOTD_UPDATE_GOLDEN")) {
    std::ofstream(golden_path, std::ios::binary) << got;
    GTEST_SKIP() << "wrote " << golden_path;
  }
  std::string want = Slurp(golden_path);
  ASSERT_FALSE(want.empty()) << "missing " << golden_path;
  EXPECT_EQ(got.find("ERROR "), std::string::npos) << "captured messages must all decode";
  EXPECT_EQ(got, want);
}

INSTANTIATE_TEST_SUITE_P(Captured, GoldenTest,
                         ::testing::Values("v1-all", "binary-all", "stream-all"));

}  // namespace
}  // namespace pgslotd
