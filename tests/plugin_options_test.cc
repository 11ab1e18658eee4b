#include "pg/plugin_options.h"

#include <gtest/gtest.h>

namespace pgslotd {
namespace {

using Options = std::vector<std::pair<std::string, std::string>>;

SlotConfig Slot(std::string plugin, OutputFormat format, Options options) {
  SlotConfig slot;
  slot.plugin = std::move(plugin);
  slot.format = format;
  slot.options = std::move(options);
  return slot;
}

const Options kPublication = {{"publication_names", "pub"}};

TEST(PluginOptionsTest, JsonOnFourteenAndLaterStreamsWithProtocolTwo) {
  for (int version : {140000, 150010, 170002}) {
    SessionOptions s =
        EffectiveOptions(Slot("pgoutput", OutputFormat::kJson, kPublication), version);
    EXPECT_EQ(s.options,
              (Options{{"publication_names", "pub"}, {"proto_version", "2"}, {"streaming", "on"}}));
    EXPECT_EQ(s.protocol, "pgoutput protocol 2, streaming in-progress transactions");
  }
}

TEST(PluginOptionsTest, JsonBeforeFourteenUsesProtocolOneWithoutStreaming) {
  SessionOptions s = EffectiveOptions(Slot("pgoutput", OutputFormat::kJson, kPublication), 130012);
  EXPECT_EQ(s.options, (Options{{"publication_names", "pub"}, {"proto_version", "1"}}));
  EXPECT_EQ(s.protocol, "pgoutput protocol 1");
}

TEST(PluginOptionsTest, AnExplicitProtocolOneNeverGetsStreaming) {
  Options given = {{"proto_version", "1"}, {"publication_names", "pub"}};
  SessionOptions s = EffectiveOptions(Slot("pgoutput", OutputFormat::kJson, given), 150010);
  EXPECT_EQ(s.options, given);
  EXPECT_EQ(s.protocol, "pgoutput protocol 1");
}

TEST(PluginOptionsTest, AnExplicitProtocolTwoGetsStreamingUnlessTheSlotSaysOtherwise) {
  Options two = {{"proto_version", "2"}, {"publication_names", "pub"}};
  SessionOptions s = EffectiveOptions(Slot("pgoutput", OutputFormat::kJson, two), 150010);
  EXPECT_EQ(s.options,
            (Options{{"proto_version", "2"}, {"publication_names", "pub"}, {"streaming", "on"}}));

  Options off = {{"publication_names", "pub"}, {"streaming", "off"}};
  s = EffectiveOptions(Slot("pgoutput", OutputFormat::kJson, off), 150010);
  EXPECT_EQ(s.options,
            (Options{{"publication_names", "pub"}, {"streaming", "off"}, {"proto_version", "2"}}));
  EXPECT_EQ(s.protocol, "pgoutput protocol 2");
}

TEST(PluginOptionsTest, OtherPluginsAndRawFormatGetExactlyTheSlotsOptions) {
  Options given = {{"include-xids", "0"}};
  SessionOptions s = EffectiveOptions(Slot("test_decoding", OutputFormat::kRaw, given), 150010);
  EXPECT_EQ(s.options, given);
  EXPECT_EQ(s.protocol, "test_decoding");

  s = EffectiveOptions(Slot("pgoutput", OutputFormat::kRaw, kPublication), 150010);
  EXPECT_EQ(s.options, kPublication);
  EXPECT_EQ(s.protocol, "pgoutput");
}

TEST(PluginOptionsTest, ASnapshotAsksForMessagesUnlessTheSlotDoes) {
  SlotConfig slot = Slot("pgoutput", OutputFormat::kJson, kPublication);
  slot.snapshot = SnapshotMode::kInitial;
  EXPECT_EQ(EffectiveOptions(slot, 150000).options, (Options{{"publication_names", "pub"},
                                                             {"proto_version", "2"},
                                                             {"streaming", "on"},
                                                             {"messages", "true"}}));
  EXPECT_EQ(EffectiveOptions(slot, 140000).options.size(), 3u)
      << "no snapshot below PostgreSQL 15, so no messages either";
  slot.options.emplace_back("messages", "on");
  EXPECT_EQ(EffectiveOptions(slot, 150000).options.size(), 4u) << "the slot's own, not twice";
}

TEST(PluginOptionsTest, PublicationNamesAreSplitAndFoldedAsTheServerDoes) {
  SlotConfig slot = Slot("pgoutput", OutputFormat::kJson,
                         {{"publication_names", " Orders ,\"Mixed Case\", \"a\"\"b\",x"}});
  EXPECT_EQ(PublicationNames(slot),
            (std::vector<std::string>{"orders", "Mixed Case", "a\"b", "x"}));
  EXPECT_TRUE(PublicationNames(Slot("pgoutput", OutputFormat::kJson, {})).empty());
}

}  // namespace
}  // namespace pgslotd
