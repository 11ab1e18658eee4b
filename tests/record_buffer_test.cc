// The record buffer: records keep their bytes, description and key as they
// are consumed from the front and cut from the back.
#include "decode/record_buffer.h"

#include <gtest/gtest.h>

#include <string>

namespace pgslotd {
namespace {

void Add(RecordBuffer* b, const std::string& line, Lsn lsn, const std::string& key = "",
         uint32_t table = 0) {
  b->bytes()->Append(line.data(), line.size());
  b->bytes()->Append('\n');
  b->key_bytes()->Append(key.data(), key.size());
  RecordInfo info;
  info.lsn = lsn;
  info.table = table;
  b->EndRecord(info);
}

std::string Payloads(const RecordBuffer& b) {
  std::string all;
  for (size_t i = 0; i < b.record_count(); ++i) {
    Record r = b.record(i);
    all += std::string(r.payload) + "|" + std::string(r.key) + ";";
  }
  return all;
}

TEST(RecordBufferTest, RecordsKeepTheirBytesAndKeysAcrossConsumeAndTruncate) {
  RecordBuffer b(16);
  b.set_wants_keys(true);
  uint32_t orders = b.InternTable("public", "orders");
  Add(&b, "one", 10, "{\"id\":1}", orders);
  Add(&b, "two", 20);
  Add(&b, "three", 30, "{\"id\":3}", orders);
  EXPECT_EQ(Payloads(b), "one|{\"id\":1};two|;three|{\"id\":3};");
  EXPECT_EQ(b.info(2).end, 14u);
  EXPECT_EQ(b.record(0).table->table, "orders");
  EXPECT_EQ(b.record(1).table, nullptr);

  b.Consume(4);  // "one\n"
  EXPECT_EQ(b.offset(), 4u);
  EXPECT_EQ(Payloads(b), "two|;three|{\"id\":3};");
  b.Consume(2);  // half of "two\n": the record stays
  EXPECT_EQ(b.record_count(), 2u);
  b.Consume(2);
  EXPECT_EQ(Payloads(b), "three|{\"id\":3};");

  b.Truncate(0);  // a cut back: "three" and its key go
  EXPECT_EQ(b.record_count(), 0u);
  EXPECT_TRUE(b.empty());
  Add(&b, "four", 40, "{\"id\":4}");
  EXPECT_EQ(Payloads(b), "four|{\"id\":4};");
  EXPECT_EQ(b.info(0).end, 13u) << "offsets go on from what was consumed";
  EXPECT_EQ(b.info(0).lsn, 40u);
}

TEST(RecordBufferTest, TruncateKeepsTheRecordsBeforeTheCut) {
  RecordBuffer b(16);
  b.set_wants_keys(true);
  Add(&b, "a", 1, "{\"k\":1}");
  Add(&b, "b", 2, "{\"k\":2}");
  Add(&b, "c", 3, "{\"k\":3}");
  b.Truncate(4);  // keeps "a\nb\n"
  EXPECT_EQ(Payloads(b), "a|{\"k\":1};b|{\"k\":2};");
  Add(&b, "d", 4, "{\"k\":4}");
  EXPECT_EQ(Payloads(b), "a|{\"k\":1};b|{\"k\":2};d|{\"k\":4};");
}

TEST(RecordBufferTest, TheSameTableNameHasOneIdForTheLifeOfTheBuffer) {
  RecordBuffer b(16);
  uint32_t a = b.InternTable("s", "t");
  EXPECT_EQ(b.InternTable("s", "t"), a);
  EXPECT_NE(b.InternTable("s.t", ""), a);
  EXPECT_NE(b.InternTable("st", ""), b.InternTable("s", "t"));
  EXPECT_EQ(b.table(a)->schema, "s");
  EXPECT_EQ(b.table(0), nullptr);
}

TEST(RecordBufferTest, ManyRecordsConsumedInStepNeverPileUp) {
  RecordBuffer b(64);
  Add(&b, "x", 0);
  for (int i = 1; i < 100000; ++i) {
    Add(&b, "x", static_cast<Lsn>(i));
    b.Consume(2);  // a reader always a record behind
  }
  EXPECT_EQ(b.record_count(), 1u);
  EXPECT_EQ(b.size(), 2u);
  EXPECT_LE(b.descriptions_held(), 2050u);
}

}  // namespace
}  // namespace pgslotd
