// The exactly-once file sink's state record, and the file sink's recovery,
// checkpoints and rotation on real files.
#include "sink/state_record.h"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <utility>
#include <vector>

#include "sink/file_sink.h"
#include "util/crc32c.h"

namespace pgslotd {
namespace {

class StateRecordTest : public ::testing::Test {
 protected:
  // `record` with its checksum line made right for what it holds.
  static std::string Rechecksummed(const std::string& record) {
    std::string body = record.substr(0, record.rfind("checksum "));
    char hex[9];
    std::snprintf(hex, sizeof hex, "%08x", Crc32c(body));
    return body + "checksum " + hex + "\n";
  }
  void SetUp() override {
    char tmpl[] = "/tmp/pgslotd-state-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override {
    int rc = std::system(("rm -rf " + dir_).c_str());
    (void)rc;
  }
  static std::string Read(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
  }
  static void Put(const std::string& path, const std::string& text) {
    std::ofstream(path, std::ios::binary | std::ios::trunc) << text;
  }
  static bool Exists(const std::string& path) { return ::access(path.c_str(), F_OK) == 0; }
  // Writes `text` through the sink and makes it durable.
  static void WriteDurably(FileSink* sink, const std::string& text) {
    size_t n = 0;
    ASSERT_TRUE(sink->Write(text.data(), text.size(), &n).ok());
    ASSERT_EQ(n, text.size());
    ASSERT_TRUE(sink->Sync().ok());
  }
  // A file holding `text`, durable, whose record says its first `offset`
  // bytes stand for `lsn`, as a sink left it when it stopped.
  static void RecordedFile(const std::string& path, const ExactlyOnceSink::StateKey& key,
                           const std::string& text, uint64_t offset, Lsn lsn) {
    FileSink sink(path, 0600);
    std::string note;
    bool warn;
    ASSERT_TRUE(sink.Recover(key, &note, &warn).ok());
    WriteDurably(&sink, text);
    ASSERT_TRUE(sink.Checkpoint(offset, lsn).ok());
  }
  ExactlyOnceSink::StateKey Key(const std::string& system_id = "7300000000000000001") const {
    return ExactlyOnceSink::StateKey{dir_ + "/s1.state", system_id, "s1"};
  }
  SinkStateRecord Sample() const {
    SinkStateRecord r;
    r.system_id = "7300000000000000001";
    r.slot = "s1";
    r.path = dir_ + "/odd name\nwith \\ newline";
    r.device = 2049;
    r.inode = 1234567;
    r.size = 4096;
    r.lsn = 0x16B3748;
    r.created = 1764000000;
    return r;
  }
  std::string dir_;
};

TEST_F(StateRecordTest, RoundTripsEveryFieldAndEscapesThePath) {
  SinkStateRecord r = Sample();
  std::string text = SerializeStateRecord(r);
  EXPECT_NE(text.find("\nversion 2\n"), std::string::npos) << text;
  EXPECT_NE(text.find("lsn 0/16B3748\n"), std::string::npos) << text;
  EXPECT_NE(text.find("path " + dir_ + "/odd name\\nwith \\\\ newline\n"), std::string::npos)
      << text;
  size_t checksum = text.rfind("checksum ");
  ASSERT_NE(checksum, std::string::npos) << text;
  EXPECT_EQ(text.size() - checksum, std::string("checksum 01234567\n").size()) << text;
  SinkStateRecord back;
  std::string err;
  bool legacy = true;
  ASSERT_TRUE(ParseStateRecord(text, &back, &err, &legacy)) << err;
  EXPECT_EQ(back, r);
  EXPECT_FALSE(legacy);
}

// A record as pgslotd wrote it before records had a checksum.
std::string VersionOne(const SinkStateRecord& r) {
  return "# pgslotd file sink state: written by pgslotd, do not edit\nversion 1\nsystem_id " +
         r.system_id + "\nslot " + r.slot + "\npath " + r.path + "\ndevice " +
         std::to_string(r.device) + "\ninode " + std::to_string(r.inode) + "\nsize " +
         std::to_string(r.size) + "\nlsn " + FormatLsn(r.lsn) + "\ncreated " +
         std::to_string(r.created) + "\n";
}

TEST_F(StateRecordTest, RefusesWhatIsNotAWholeRecord) {
  SinkStateRecord sample = Sample();
  sample.path = dir_ + "/out.log";
  std::string good = VersionOne(sample);
  SinkStateRecord out;
  std::string err;
  bool legacy = false;
  ASSERT_TRUE(ParseStateRecord(good, &out, &err, &legacy)) << err;
  EXPECT_TRUE(legacy);
  EXPECT_EQ(out, sample);
  EXPECT_FALSE(ParseStateRecord(good.substr(0, good.size() - 1), &out, &err));
  EXPECT_EQ(err, "the last line is not complete");
  std::string no_lsn = good;
  no_lsn.erase(no_lsn.find("lsn "),
               no_lsn.find('\n', no_lsn.find("lsn ")) - no_lsn.find("lsn ") + 1);
  EXPECT_FALSE(ParseStateRecord(no_lsn, &out, &err));
  EXPECT_EQ(err, "key lsn is missing");
  EXPECT_FALSE(ParseStateRecord(good + "size 1\n", &out, &err));
  EXPECT_EQ(err, "key size appears twice");
  EXPECT_FALSE(ParseStateRecord(good + "color blue\n", &out, &err));
  EXPECT_EQ(err, "it has keys this version does not know");
  EXPECT_FALSE(ParseStateRecord(good + "checksum 00000000\n", &out, &err));
  EXPECT_EQ(err, "it has keys this version does not know");
  std::string bad_size = good;
  bad_size.replace(bad_size.find("size 4096"), 9, "size 4x96");
  EXPECT_FALSE(ParseStateRecord(bad_size, &out, &err));
  EXPECT_EQ(err, "a value is malformed");
  std::string v4 = good;
  v4.replace(v4.find("version 1"), 9, "version 4");
  EXPECT_FALSE(ParseStateRecord(v4, &out, &err));
  EXPECT_EQ(err, "version 4 is not one this pgslotd reads");
}

TEST_F(StateRecordTest, ASnapshotUnderWayMakesItVersion3AndComesBackAsItWas) {
  SinkStateRecord r = Sample();
  const std::string v2 = SerializeStateRecord(r);
  EXPECT_NE(v2.find("\nversion 2\n"), std::string::npos) << v2;
  EXPECT_EQ(v2.find("snapshot"), std::string::npos) << "no snapshot, no line for it";
  r.snapshot = "queue 1 t public items started 1 rows 3 after 1 3 ranges 0 again 0 done 0 total 3";
  const std::string v3 = SerializeStateRecord(r);
  EXPECT_NE(v3.find("\nversion 3\n"), std::string::npos) << v3;
  EXPECT_NE(v3.find("\nsnapshot " + r.snapshot + "\nchecksum "), std::string::npos) << v3;
  SinkStateRecord out;
  std::string err;
  ASSERT_TRUE(ParseStateRecord(v3, &out, &err)) << err;
  EXPECT_EQ(out, r);

  std::string edited = v3;
  edited.replace(edited.find("rows 3"), 6, "rows 4");
  EXPECT_FALSE(ParseStateRecord(edited, &out, &err));
  EXPECT_EQ(err, "its checksum does not match its contents: it was edited or damaged");
  // Version 2 has no snapshot, version 3 must have one (checksums right).
  std::string v2_with = v3;
  v2_with.replace(v2_with.find("version 3"), 9, "version 2");
  EXPECT_FALSE(ParseStateRecord(Rechecksummed(v2_with), &out, &err));
  EXPECT_EQ(err, "it has keys this version does not know");
  std::string v3_without = v2;
  v3_without.replace(v3_without.find("version 2"), 9, "version 3");
  EXPECT_FALSE(ParseStateRecord(Rechecksummed(v3_without), &out, &err));
  EXPECT_EQ(err, "key snapshot is missing");
}

TEST_F(StateRecordTest, TheChecksumRefusesEveryEdit) {
  SinkStateRecord r = Sample();
  const std::string good = SerializeStateRecord(r);
  const std::string mismatch = "its checksum does not match its contents: it was edited or damaged";
  SinkStateRecord out;
  std::string err;
  std::string raised = good;
  raised.replace(raised.find("lsn 0/16B3748"), 13, "lsn 0/16B5748");  // 0x2000 further
  EXPECT_FALSE(ParseStateRecord(raised, &out, &err));
  EXPECT_EQ(err, mismatch);
  std::string lowered = good;
  lowered.replace(lowered.find("size 4096"), 9, "size 4000");
  EXPECT_FALSE(ParseStateRecord(lowered, &out, &err));
  EXPECT_EQ(err, mismatch);
  std::string header = good;
  header[2] = 'P';  // even the comment is covered
  EXPECT_FALSE(ParseStateRecord(header, &out, &err));
  EXPECT_EQ(err, mismatch);
  EXPECT_FALSE(ParseStateRecord(good + "\n", &out, &err));
  EXPECT_EQ(err, "the checksum is not its last line");
  std::string unchecked = good.substr(0, good.rfind("checksum "));
  EXPECT_FALSE(ParseStateRecord(unchecked, &out, &err));
  EXPECT_EQ(err, "key checksum is missing");
  // Whichever bit of whichever byte flips, the record is refused.
  for (size_t i = 0; i < good.size(); ++i) {
    for (int bit = 0; bit < 8; ++bit) {
      std::string flipped = good;
      flipped[i] = static_cast<char>(flipped[i] ^ (1 << bit));
      EXPECT_FALSE(ParseStateRecord(flipped, &out, &err)) << "byte " << i << " bit " << bit;
    }
  }
}

TEST_F(StateRecordTest, WritesAtomicallyAndReadsBack) {
  std::string file = dir_ + "/sub/s1.state";  // the directory is made when missing
  SinkStateRecord r = Sample();
  ASSERT_TRUE(WriteStateRecord(file, r).ok());
  EXPECT_FALSE(Exists(file + ".tmp"));
  r.lsn = 0x2000000;
  ASSERT_TRUE(WriteStateRecord(file, r).ok());
  SinkStateRecord back;
  bool found = false;
  ASSERT_TRUE(ReadStateRecord(file, &back, &found).ok());
  EXPECT_TRUE(found);
  EXPECT_EQ(back, r);
  ASSERT_TRUE(ReadStateRecord(dir_ + "/none.state", &back, &found).ok());
  EXPECT_FALSE(found);
  Put(file, "garbage\n");
  Status s = ReadStateRecord(file, &back, &found);
  EXPECT_EQ(s.code(), Status::Code::kSlotFatal);
  EXPECT_NE(s.message().find(file + " is unreadable"), std::string::npos) << s.message();
}

TEST_F(StateRecordTest, RecoverCutsATornTailAndResumesAtTheRecord) {
  std::string path = dir_ + "/out.log";
  {
    FileSink sink(path, 0600);
    std::string note;
    bool warn = true;
    Result<Lsn> r = sink.Recover(Key(), &note, &warn);
    ASSERT_TRUE(r.ok()) << r.status().message();
    EXPECT_EQ(r.value(), kInvalidLsn);  // no record yet
    WriteDurably(&sink, "BEGIN 1\nCOMMIT 1\n");
    ASSERT_TRUE(sink.Checkpoint(17, 0x100).ok());
    WriteDurably(&sink, "BEGIN 2\ntable ");  // a crash in the middle of transaction 2
  }
  FileSink sink(path, 0600);
  std::string note;
  bool warn = true;
  Result<Lsn> r = sink.Recover(Key(), &note, &warn);
  ASSERT_TRUE(r.ok()) << r.status().message();
  EXPECT_EQ(r.value(), 0x100u);
  EXPECT_FALSE(warn);
  EXPECT_EQ(note, "cut 14 bytes of an unfinished transaction off the end of " + path +
                      " (it is written again whole)");
  EXPECT_EQ(Read(path), "BEGIN 1\nCOMMIT 1\n");
  WriteDurably(&sink, "BEGIN 2\nCOMMIT 2\n");
  ASSERT_TRUE(sink.Checkpoint(17, 0x200).ok());
  SinkStateRecord rec;
  bool found = false;
  ASSERT_TRUE(ReadStateRecord(Key().file, &rec, &found).ok());
  EXPECT_EQ(rec.size, 34u);  // stream offset 17 of this sink is file byte 34
  EXPECT_EQ(rec.lsn, 0x200u);
  EXPECT_EQ(Read(path), "BEGIN 1\nCOMMIT 1\nBEGIN 2\nCOMMIT 2\n");
}

TEST_F(StateRecordTest, TheSnapshotProgressSetBeforeACheckpointIsWhatRecoverGivesBack) {
  std::string path = dir_ + "/out.log";
  const std::string progress =
      "queue 1 all started 0 rows 0 after 0 ranges 0 again 0 done 0 total 0";
  {
    FileSink sink(path, 0600);
    std::string note;
    bool warn;
    ASSERT_TRUE(sink.Recover(Key(), &note, &warn).ok());
    EXPECT_EQ(sink.RecoveredSnapshotProgress(), "") << "no record yet";
    WriteDurably(&sink, "BEGIN 1\nCOMMIT 1\n");
    sink.SetSnapshotProgress(progress);
    ASSERT_TRUE(sink.Checkpoint(17, 0x100).ok());
  }
  {
    FileSink sink(path, 0600);
    std::string note;
    bool warn;
    ASSERT_TRUE(sink.Recover(Key(), &note, &warn).ok());
    EXPECT_EQ(sink.RecoveredSnapshotProgress(), progress);
    WriteDurably(&sink, "BEGIN 2\nCOMMIT 2\n");
    ASSERT_TRUE(sink.Checkpoint(17, 0x200).ok()) << "the progress is kept until set again";
    EXPECT_NE(Read(Key().file).find("snapshot " + progress + "\n"), std::string::npos);
    sink.SetSnapshotProgress("");
    ASSERT_TRUE(sink.Checkpoint(17, 0x300).ok());
    EXPECT_NE(Read(Key().file).find("\nversion 2\n"), std::string::npos) << "snapshot over";
  }
  FileSink sink(path, 0600);
  std::string note;
  bool warn;
  ASSERT_TRUE(sink.Recover(Key(), &note, &warn).ok());
  EXPECT_EQ(sink.RecoveredSnapshotProgress(), "");
}

TEST_F(StateRecordTest, RecoverRefusesAFileShorterThanItsRecord) {
  std::string path = dir_ + "/out.log";
  RecordedFile(path, Key(), "BEGIN 1\nCOMMIT 1\n", 17, 0x100);
  ASSERT_EQ(::truncate(path.c_str(), 0), 0);  // copytruncate, or an old backup
  FileSink sink(path, 0600);
  std::string note;
  bool warn;
  Result<Lsn> r = sink.Recover(Key(), &note, &warn);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), Status::Code::kSlotFatal);
  EXPECT_NE(r.status().message().find(path + " holds 0 bytes but its state record"),
            std::string::npos)
      << r.status().message();
}

TEST_F(StateRecordTest, AFileBehindTheServerIsRefusedBeforeAnythingIsCut) {
  std::string path = dir_ + "/out.log";
  RecordedFile(path, Key(), "BEGIN 1\nCOMMIT 1\n", 8, 0x100);  // an old record: only "BEGIN 1\n"
  FileSink sink(path, 0600);
  ExactlyOnceSink::StateKey key = Key();
  key.confirmed = 0x180;  // the server was told more than the record says
  std::string note;
  bool warn;
  Result<Lsn> r = sink.Recover(key, &note, &warn);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), Status::Code::kSlotFatal);
  EXPECT_NE(r.status().message().find("the server has been told that changes up to 0/180 are "
                                      "stored, but file " +
                                      path + " holds them only up to 0/100"),
            std::string::npos)
      << r.status().message();
  EXPECT_EQ(Read(path), "BEGIN 1\nCOMMIT 1\n");  // nothing cut
}

TEST_F(StateRecordTest, AReplacedFileWithContentIsRefusedAnEmptyOneIsUsed) {
  std::string path = dir_ + "/out.log";
  RecordedFile(path, Key(), "BEGIN 1\nCOMMIT 1\n", 17, 0x100);
  ASSERT_EQ(::rename(path.c_str(), (dir_ + "/elsewhere").c_str()), 0);
  Put(path, "BEGIN 0\n");  // an older copy put back
  {
    FileSink sink(path, 0600);
    std::string note;
    bool warn;
    Result<Lsn> r = sink.Recover(Key(), &note, &warn);
    ASSERT_FALSE(r.ok());
    EXPECT_NE(r.status().message().find(path + " is not the file its state record"),
              std::string::npos)
        << r.status().message();
  }
  Put(path, "");  // logrotate's create mode while pgslotd was stopped
  FileSink sink(path, 0600);
  std::string note;
  bool warn = false;
  Result<Lsn> r = sink.Recover(Key(), &note, &warn);
  ASSERT_TRUE(r.ok()) << r.status().message();
  EXPECT_EQ(r.value(), 0x100u);
  EXPECT_TRUE(warn);
  EXPECT_NE(note.find(path + " was replaced by an empty file"), std::string::npos) << note;
}

TEST_F(StateRecordTest, ACheckpointRefusesAFileTruncatedUnderIt) {
  std::string path = dir_ + "/out.log";
  FileSink sink(path, 0600);
  std::string note;
  bool warn;
  ASSERT_TRUE(sink.Recover(Key(), &note, &warn).ok());
  WriteDurably(&sink, "BEGIN 1\nCOMMIT 1\n");
  ASSERT_TRUE(sink.Checkpoint(17, 0x100).ok());
  ASSERT_EQ(::truncate(path.c_str(), 0), 0);  // copytruncate
  Status s = sink.Checkpoint(17, 0x100).status();
  EXPECT_EQ(s.code(), Status::Code::kSlotFatal);
  EXPECT_NE(s.message().find(path + " holds 0 bytes where pgslotd wrote 17"), std::string::npos)
      << s.message();
}

TEST_F(StateRecordTest, ARecordOfAnotherServerIsNeverApplied) {
  std::string path = dir_ + "/out.log";
  RecordedFile(path, Key("111"), "BEGIN 1\nCOMMIT 1\n", 8,
               0x100);  // says only "BEGIN 1\n" is whole
  FileSink sink(path, 0600);
  std::string note;
  bool warn = false;
  Result<Lsn> r = sink.Recover(Key("222"), &note, &warn);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r.value(), kInvalidLsn);
  EXPECT_TRUE(warn);
  EXPECT_NE(note.find("belongs to another server (system identifier 111; this one is 222)"),
            std::string::npos)
      << note;
  EXPECT_EQ(Read(path), "BEGIN 1\nCOMMIT 1\n");  // untouched
}

TEST_F(StateRecordTest, RotationKeepsNumberedFilesAndTheRecordFollows) {
  std::string path = dir_ + "/out.log";
  RotateConfig rotate;
  rotate.size = 10;
  rotate.keep = 2;
  FileSink sink(path, 0640, rotate);
  std::string note;
  bool warn;
  ASSERT_TRUE(sink.Recover(Key(), &note, &warn).ok());
  uint64_t offset = 0;
  for (int i = 1; i <= 4; ++i) {
    EXPECT_FALSE(sink.RotationDue(offset));
    std::string txn = "txn " + std::to_string(i) + " 12345\n";  // 12 bytes: over the limit
    WriteDurably(&sink, txn);
    offset += txn.size();
    EXPECT_TRUE(sink.RotationDue(offset));
    ASSERT_TRUE(sink.Checkpoint(offset, 0x100 * i).ok());
    ASSERT_TRUE(sink.Rotate().ok());
    ASSERT_TRUE(sink.Checkpoint(offset, 0x100 * i).ok());
  }
  EXPECT_EQ(Read(path), "");
  EXPECT_EQ(Read(path + ".1"), "txn 4 12345\n");
  EXPECT_EQ(Read(path + ".2"), "txn 3 12345\n");
  EXPECT_FALSE(Exists(path + ".3"));
  struct stat st;
  ASSERT_EQ(stat(path.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0640u);
  SinkStateRecord rec;
  bool found = false;
  ASSERT_TRUE(ReadStateRecord(Key().file, &rec, &found).ok());
  EXPECT_EQ(rec.inode, static_cast<uint64_t>(st.st_ino));
  EXPECT_EQ(rec.size, 0u);
  EXPECT_EQ(rec.lsn, 0x400u);
}

TEST_F(StateRecordTest, ACrashRightAfterRotatingLosesNothing) {
  std::string path = dir_ + "/out.log";
  RotateConfig rotate;
  rotate.size = 5;
  {
    FileSink sink(path, 0600, rotate);
    std::string note;
    bool warn;
    ASSERT_TRUE(sink.Recover(Key(), &note, &warn).ok());
    WriteDurably(&sink, "txn 1\n");
    ASSERT_TRUE(sink.Checkpoint(6, 0x100).ok());
    ASSERT_TRUE(sink.Rotate().ok());
    WriteDurably(&sink, "txn 2 unrecorded\n");  // killed before the record named the new file
  }
  FileSink sink(path, 0600, rotate);
  std::string note;
  bool warn = true;
  Result<Lsn> r = sink.Recover(Key(), &note, &warn);
  ASSERT_TRUE(r.ok()) << r.status().message();
  EXPECT_EQ(r.value(), 0x100u);
  EXPECT_FALSE(warn) << note;
  EXPECT_EQ(Read(path + ".1"), "txn 1\n");
  EXPECT_EQ(Read(path), "");  // written after the record: it comes again
}

// The record of `path` (as it is now) that the sink would write for `size`
// bytes at `lsn`.
SinkStateRecord RecordOf(const std::string& path, const ExactlyOnceSink::StateKey& key,
                         uint64_t size, Lsn lsn) {
  struct stat st;
  EXPECT_EQ(stat(path.c_str(), &st), 0);
  SinkStateRecord r;
  r.system_id = key.system_id;
  r.slot = key.slot;
  r.path = path;
  r.device = static_cast<uint64_t>(st.st_dev);
  r.inode = static_cast<uint64_t>(st.st_ino);
  r.size = size;
  r.lsn = lsn;
  r.created = 1764000000;
  return r;
}

TEST_F(StateRecordTest, ARecordOfTheOldFormatIsUsedAndRewrittenWithAChecksum) {
  std::string path = dir_ + "/out.log";
  Put(path, "BEGIN 1\nCOMMIT 1\nBEGIN 2\n");  // an upgrade after a crash
  SinkStateRecord old = RecordOf(path, Key(), 17, 0x100);
  Put(Key().file, VersionOne(old));
  FileSink sink(path, 0600);
  std::string note;
  bool warn = true;
  Result<Lsn> r = sink.Recover(Key(), &note, &warn);
  ASSERT_TRUE(r.ok()) << r.status().message();
  EXPECT_EQ(r.value(), 0x100u);
  EXPECT_FALSE(warn) << note;
  EXPECT_NE(note.find("the state record " + Key().file +
                      " had no checksum (an older pgslotd wrote it): rewritten with one"),
            std::string::npos)
      << note;
  EXPECT_EQ(Read(path), "BEGIN 1\nCOMMIT 1\n");
  // Rewritten at once, before anything is streamed: the same record, with
  // its checksum.
  std::string text = Read(Key().file);
  EXPECT_EQ(text, SerializeStateRecord(old));
  SinkStateRecord back;
  bool found = false;
  bool legacy = true;
  ASSERT_TRUE(ReadStateRecord(Key().file, &back, &found, &legacy).ok());
  EXPECT_FALSE(legacy);
  EXPECT_EQ(back, old);
  // And so is the next one the sink writes.
  WriteDurably(&sink, "BEGIN 2\nCOMMIT 2\n");
  ASSERT_TRUE(sink.Checkpoint(17, 0x200).ok());
  ASSERT_TRUE(ReadStateRecord(Key().file, &back, &found, &legacy).ok());
  EXPECT_FALSE(legacy);
  EXPECT_EQ(back.lsn, 0x200u);
  EXPECT_NE(Read(Key().file).find("\nchecksum "), std::string::npos);
}

TEST_F(StateRecordTest, AnEditedRecordStopsTheSlotAndLeavesEverythingAsItIs) {
  std::string path = dir_ + "/out.log";
  RecordedFile(path, Key(), "BEGIN 1\nCOMMIT 1\nBEGIN 2\nCOMMIT 2\n", 34, 0x200);
  const std::string file_before = Read(path);
  for (const auto& [from, to] : std::vector<std::pair<std::string, std::string>>{
           {"lsn 0/200", "lsn 0/2200"},  // would skip what the server sends up to 0/2200
           {"size 34", "size 17"},       // would cut transaction 2, acknowledged already
           {"created 1", "created 2"}}) {
    std::string good = Read(Key().file);
    std::string edited = good;
    ASSERT_NE(edited.find(from), std::string::npos) << edited;
    edited.replace(edited.find(from), from.size(), to);
    Put(Key().file, edited);
    FileSink sink(path, 0600);
    std::string note;
    bool warn;
    Result<Lsn> r = sink.Recover(Key(), &note, &warn);
    ASSERT_FALSE(r.ok()) << from << " -> " << to;
    EXPECT_EQ(r.status().code(), Status::Code::kSlotFatal);
    EXPECT_NE(r.status().message().find("the state record " + Key().file +
                                        " is unreadable (its checksum does not match its "
                                        "contents: it was edited or damaged)"),
              std::string::npos)
        << r.status().message();
    EXPECT_EQ(Read(path), file_before);
    EXPECT_EQ(Read(Key().file), edited);
    Put(Key().file, good);
  }
}

TEST_F(StateRecordTest, AMovedFileShorterThanItsRecordIsRefused) {
  std::string path = dir_ + "/out.log";
  RecordedFile(path, Key(), "BEGIN 1\nCOMMIT 1\n", 17, 0x100);
  ASSERT_EQ(::rename(path.c_str(), (path + ".1").c_str()), 0);  // logrotate
  ASSERT_EQ(::truncate((path + ".1").c_str(), 8), 0);
  FileSink sink(path, 0600);
  std::string note;
  bool warn;
  Result<Lsn> r = sink.Recover(Key(), &note, &warn);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), Status::Code::kSlotFatal);
  EXPECT_NE(r.status().message().find(path + ".1 holds 8 bytes but its state record"),
            std::string::npos)
      << r.status().message();
}

TEST_F(StateRecordTest, TheTemporaryFileIsCreatedAfreshNeverThroughALink) {
  std::string victim = dir_ + "/victim";
  Put(victim, "someone else's\n");
  std::string file = dir_ + "/s1.state";
  ASSERT_EQ(::symlink(victim.c_str(), (file + ".tmp").c_str()), 0);
  ASSERT_TRUE(WriteStateRecord(file, Sample()).ok());
  EXPECT_EQ(Read(victim), "someone else's\n");
  EXPECT_FALSE(Exists(file + ".tmp"));
  EXPECT_EQ(Read(file), SerializeStateRecord(Sample()));
  // A temporary file a crash left behind is replaced, not appended to.
  Put(file + ".tmp", "left by a crash, and longer than any record would be ...............\n");
  SinkStateRecord r = Sample();
  r.lsn = 0x2000000;
  ASSERT_TRUE(WriteStateRecord(file, r).ok());
  EXPECT_EQ(Read(file), SerializeStateRecord(r));
  EXPECT_FALSE(Exists(file + ".tmp"));
}

TEST_F(StateRecordTest, ARecordThatIsALinkOrNoRegularFileIsRefused) {
  std::string file = dir_ + "/s1.state";
  std::string elsewhere = dir_ + "/elsewhere.state";
  ASSERT_TRUE(WriteStateRecord(elsewhere, Sample()).ok());
  ASSERT_EQ(::symlink(elsewhere.c_str(), file.c_str()), 0);
  SinkStateRecord back;
  bool found = true;
  Status s = ReadStateRecord(file, &back, &found);
  EXPECT_EQ(s.code(), Status::Code::kSlotFatal);
  EXPECT_FALSE(found);
  EXPECT_NE(s.message().find("the state record " + file + " is a symbolic link"), std::string::npos)
      << s.message();
  ASSERT_EQ(::unlink(file.c_str()), 0);
  ASSERT_EQ(::mkfifo(file.c_str(), 0600), 0);  // would block a plain open
  s = ReadStateRecord(file, &back, &found);
  EXPECT_EQ(s.code(), Status::Code::kSlotFatal);
  EXPECT_NE(s.message().find("the state record " + file + " is not a regular file"),
            std::string::npos)
      << s.message();
}

TEST_F(StateRecordTest, ALinkPlantedAtTheSinkPathIsNeitherCutNorWritten) {
  // Rotated by pgslotd, which then crashed before it made the new file; a
  // link put at the path in a directory everyone may write to must not
  // have its target emptied as "the new file, written after the record".
  std::string shared = dir_ + "/shared";
  ASSERT_EQ(::mkdir(shared.c_str(), 0700), 0);
  ASSERT_EQ(::chmod(shared.c_str(), 01777), 0);
  std::string path = shared + "/out.log";
  RecordedFile(path, Key(), "BEGIN 1\nCOMMIT 1\n", 17, 0x100);
  ASSERT_EQ(::rename(path.c_str(), (path + ".1").c_str()), 0);
  std::string victim = dir_ + "/victim";
  Put(victim, "precious\n");
  ASSERT_EQ(::symlink(victim.c_str(), path.c_str()), 0);
  FileSink sink(path, 0600);
  std::string note;
  bool warn;
  Result<Lsn> r = sink.Recover(Key(), &note, &warn);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), Status::Code::kSlotFatal);
  EXPECT_NE(r.status().message().find(path + " is a symbolic link (to " + victim + ") in " +
                                      shared + ", a directory every user may write to"),
            std::string::npos)
      << r.status().message();
  EXPECT_EQ(Read(victim), "precious\n");
  EXPECT_EQ(Read(path + ".1"), "BEGIN 1\nCOMMIT 1\n");
}

}  // namespace
}  // namespace pgslotd
