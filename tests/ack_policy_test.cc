// The ack policy driven from scripted event sequences: what a slot may
// acknowledge after each step. The first cases are the former AckTracker's,
// carried over; the rest are the sequences the worker produces.
#include "slot/ack_policy.h"

#include <gtest/gtest.h>

namespace pgslotd {
namespace {

using Clock = AckPolicy::Clock;
using Txn = AckPolicy::TxnState;
constexpr Txn kOutside{false, false};
constexpr Txn kInside{true, false};
constexpr Txn kCommitted{false, true};

// A policy whose server has proven everything (keepalives are not capped).
AckPolicy Stream(bool exactly_once = false) {
  AckPolicy p(exactly_once);
  p.server().Reset(0xFFFFFFFF00000000ull);
  return p;
}

// A data message at `lsn` ending at `offset`, then the end of its batch:
// a mark "once [0, offset) is durable, lsn may be acknowledged".
void Mark(AckPolicy* p, uint64_t offset, Lsn lsn, Clock::time_point now = Clock::now()) {
  p->Data(lsn, offset, kOutside, now);
  p->EndOfBatch(offset, now);
}

TEST(AckPolicyTest, AcknowledgesOnlyDurableMarks) {
  AckPolicy p = Stream();
  Mark(&p, 100, 0x10);
  Mark(&p, 250, 0x20);
  Mark(&p, 400, 0x30);
  EXPECT_FALSE(p.Durable(99));
  EXPECT_EQ(p.Acknowledgeable(), kInvalidLsn);
  EXPECT_TRUE(p.Durable(260));
  EXPECT_EQ(p.Acknowledgeable(), 0x20u);
  EXPECT_EQ(p.SafeOffset(), 250u);
  EXPECT_TRUE(p.HasPending());
  EXPECT_TRUE(p.Durable(400));
  EXPECT_EQ(p.Acknowledgeable(), 0x30u);
  EXPECT_FALSE(p.HasPending());
}

TEST(AckPolicyTest, NeverMovesBackwardsNorBelowFloor) {
  AckPolicy p = Stream();
  p.RaiseFloor(0x500);
  Mark(&p, 10, 0x100);  // a BEGIN whose first_lsn is older than the floor
  EXPECT_FALSE(p.Durable(10));
  EXPECT_EQ(p.Acknowledgeable(), 0x500u);
  Mark(&p, 20, 0x600);
  Mark(&p, 30, 0x550);
  p.Durable(30);
  EXPECT_EQ(p.Acknowledgeable(), 0x600u);
  p.RaiseFloor(0x10);
  EXPECT_EQ(p.Acknowledgeable(), 0x600u);
}

TEST(AckPolicyTest, KeepaliveWhenIdleAppliesAtOnce) {
  AckPolicy p = Stream();
  Mark(&p, 50, 0x10);
  p.Durable(50);
  EXPECT_EQ(p.Keepalive(0x99, 50, Clock::now()), 0x99u);  // at the current end, all durable
  EXPECT_EQ(p.Acknowledgeable(), 0x99u);
}

TEST(AckPolicyTest, KeepaliveWaitsForEarlierBytes) {
  AckPolicy p = Stream();
  p.Data(0x10, 50, kOutside, Clock::now());
  p.Keepalive(0x99, 50, Clock::now());  // right after that data: one mark
  EXPECT_EQ(p.Acknowledgeable(), kInvalidLsn);
  p.Durable(49);
  EXPECT_EQ(p.Acknowledgeable(), kInvalidLsn);
  p.Durable(50);
  EXPECT_EQ(p.Acknowledgeable(), 0x99u);
}

TEST(AckPolicyTest, RestartDropsPendingAndGrowsPastRing) {
  AckPolicy p = Stream();
  auto now = Clock::now();
  for (uint64_t i = 1; i <= 10000; ++i) Mark(&p, i * 10, i, now);
  EXPECT_EQ(p.OldestPending(), now);
  p.Durable(5000 * 10 + 5);
  EXPECT_EQ(p.Acknowledgeable(), 5000u);
  EXPECT_EQ(p.SafeOffset(), 50000u);
  p.Restart(50000, p.durable_lsn());
  EXPECT_FALSE(p.HasPending());
  p.Durable(1000000);
  EXPECT_EQ(p.Acknowledgeable(), 5000u);
}

TEST(AckPolicyTest, SafeOffsetIsOnlyEverAMark) {
  AckPolicy p = Stream();
  Mark(&p, 100, 0x10);
  p.Durable(350);  // durable past the mark, inside what follows it
  EXPECT_EQ(p.SafeOffset(), 100u);
  EXPECT_FALSE(p.HasPending());
  Mark(&p, 300, 0x20);  // a mark already durable applies at once
  EXPECT_EQ(p.Acknowledgeable(), 0x20u);
  EXPECT_EQ(p.SafeOffset(), 300u);
}

TEST(AckPolicyTest, RestartMayLowerTheAcknowledgedPosition) {
  AckPolicy p = Stream();
  Mark(&p, 100, 0x50);
  p.Durable(100);
  p.Restart(60, 0x30);  // a file cut back to its state record
  EXPECT_EQ(p.Acknowledgeable(), 0x30u);
  EXPECT_EQ(p.SafeOffset(), 60u);
  Mark(&p, 90, 0x40);
  EXPECT_FALSE(p.Durable(80));
  EXPECT_TRUE(p.Durable(90));
  EXPECT_EQ(p.Acknowledgeable(), 0x40u);
}

TEST(AckPolicyTest, DroppedOutputIsNoLongerDurable) {
  AckPolicy p = Stream();
  Mark(&p, 100, 0x10);
  p.Durable(500);
  p.Dropped(100);       // bytes after 100 were dropped and are written anew
  Mark(&p, 400, 0x20);  // not durable yet, although 400 once was
  EXPECT_EQ(p.Acknowledgeable(), 0x10u);
  EXPECT_TRUE(p.Durable(400));
  EXPECT_EQ(p.Acknowledgeable(), 0x20u);
}

// --- Scripted sequences ---------------------------------------------------

TEST(AckPolicyTest, APartialWriteAcknowledgesOnlyWholeMessages) {
  AckPolicy p = Stream();
  auto now = Clock::now();
  p.Data(0x10, 100, kOutside, now);
  p.Data(0x20, 250, kOutside, now);
  p.EndOfBatch(250, now);  // one mark for the batch: its end, its highest position
  p.Durable(180);          // the sink took part of the batch
  EXPECT_EQ(p.Acknowledgeable(), kInvalidLsn);
  EXPECT_EQ(p.NextBoundary(180), 250u);  // a stream sink finishes the message it is in
  p.Durable(250);
  EXPECT_EQ(p.Acknowledgeable(), 0x20u);
}

TEST(AckPolicyTest, ACutBackGoesToTheLastDurableBoundaryAndStartsAfresh) {
  AckPolicy p = Stream();
  Mark(&p, 100, 0x10);
  Mark(&p, 200, 0x20);
  p.Durable(150);  // a failed write: the sink holds 150 bytes
  ASSERT_EQ(p.SafeOffset(), 100u);
  p.Restart(p.SafeOffset(), p.durable_lsn());  // cut back to 100, resent from 0x10
  EXPECT_FALSE(p.HasPending());
  EXPECT_EQ(p.Acknowledgeable(), 0x10u);
  Mark(&p, 180, 0x20);  // the re-sent message, at its new offset
  p.Durable(180);
  EXPECT_EQ(p.Acknowledgeable(), 0x20u);
}

TEST(AckPolicyTest, ExactlyOnceMarksFallOnlyBetweenTransactions) {
  AckPolicy p = Stream(/*exactly_once=*/true);
  auto now = Clock::now();
  p.StartFromRecord(0, kInvalidLsn);
  p.Data(0x10, 20, kInside, now);  // BEGIN
  p.Data(0x18, 60, kInside, now);  // a change
  p.EndOfBatch(60, now);           // the batch ends inside the transaction: no mark
  p.Keepalive(0x28, 60, now);      // nor from a keepalive
  EXPECT_FALSE(p.AtBoundary());
  p.Durable(60);
  EXPECT_EQ(p.durable_lsn(), kInvalidLsn);
  p.Data(0x30, 80, kCommitted, now);  // COMMIT: a mark at once
  EXPECT_TRUE(p.AtBoundary());
  p.Durable(80);
  EXPECT_EQ(p.durable_lsn(), 0x30u);
  // Durable is not enough: only what the state record holds is acknowledged.
  EXPECT_EQ(p.Acknowledgeable(), kInvalidLsn);
  std::optional<AckPolicy::Point> want = p.CheckpointWanted();
  ASSERT_TRUE(want);
  EXPECT_EQ(want->offset, 80u);
  EXPECT_EQ(want->lsn, 0x30u);
  p.Recorded(want->offset, want->lsn);
  EXPECT_EQ(p.Acknowledgeable(), 0x30u);
  EXPECT_FALSE(p.CheckpointWanted());
}

TEST(AckPolicyTest, AMessageOutsideATransactionIsRecordedJustPastItsPosition) {
  AckPolicy p = Stream(true);
  p.StartFromRecord(0, kInvalidLsn);
  p.Data(0x40, 30, kOutside, Clock::now());  // a non-transactional logical message
  p.Durable(30);
  // Restarted exactly at 0x40 the server sends it again: the record says 0x41.
  EXPECT_EQ(p.durable_lsn(), 0x41u);
}

TEST(AckPolicyTest, PositionlessOutputIsRecordedWithThePositionBeforeIt) {
  AckPolicy p = Stream(true);
  auto now = Clock::now();
  p.StartFromRecord(0, kInvalidLsn);
  p.Positionless(20, now);  // nothing before it has a position: no mark
  p.Durable(20);
  EXPECT_FALSE(p.CheckpointWanted().has_value());
  p.Data(0x10, 60, kCommitted, now);
  p.Positionless(90, now);  // a snapshot's lines after the transaction
  p.Durable(90);
  ASSERT_TRUE(p.CheckpointWanted().has_value());
  EXPECT_EQ(p.CheckpointWanted()->offset, 90u) << "the record holds them at once";
  EXPECT_EQ(p.CheckpointWanted()->lsn, 0x10u) << "and claims nothing more";
  p.Data(0x20, 120, kInside, now);
  p.Positionless(130, now);  // inside a transaction: never a mark
  p.Durable(130);
  EXPECT_EQ(p.CheckpointWanted()->offset, 90u);

  AckPolicy stream = Stream(false);  // a stream sink: the next message covers them
  stream.Data(0x10, 60, kCommitted, now);
  stream.EndOfBatch(60, now);
  stream.Positionless(90, now);
  stream.Durable(90);
  EXPECT_EQ(stream.SafeOffset(), 60u);
}

TEST(AckPolicyTest, AResentTransactionIsDroppedAndTheStreamGoesOnWhereItBegan) {
  AckPolicy p = Stream(true);
  auto now = Clock::now();
  p.StartFromRecord(500, 0x100);  // the file holds 500 bytes, standing for 0x100
  EXPECT_EQ(p.Acknowledgeable(), 0x100u);
  p.Data(0xF0, 520, kInside, now);  // a re-sent transaction's BEGIN and change
  p.Data(0xF8, 560, kInside, now);
  p.Durable(540);  // some of it even reached the disk
  p.Dropped(500);  // its COMMIT (0x100) is at or below the record: dropped
  EXPECT_TRUE(p.AtBoundary());
  EXPECT_FALSE(p.HasPending());
  p.Data(0x110, 530, kInside, now);  // the next transaction, from offset 500
  p.Data(0x120, 560, kCommitted, now);
  p.Durable(545);  // 540 was durable before the drop; it no longer counts
  EXPECT_EQ(p.durable_lsn(), 0x100u);
  p.Durable(560);
  EXPECT_EQ(p.durable_lsn(), 0x120u);
  EXPECT_EQ(p.CheckpointWanted()->offset, 560u);
}

TEST(AckPolicyTest, AStreamedTransactionCountsOnlyOnceAllItsPiecesAreOut) {
  AckPolicy p = Stream(true);
  auto now = Clock::now();
  p.StartFromRecord(0, kInvalidLsn);
  p.Data(0x10, 40, kCommitted, now);  // an earlier transaction, whole
  p.InPieces(40, now);                // a stream commit replayed from its spool, in pieces
  EXPECT_TRUE(p.in_pieces());
  EXPECT_FALSE(p.AtBoundary());
  p.Keepalive(0x90, 1000, now);  // mid-replay: no mark inside the output
  p.Durable(1000);
  EXPECT_EQ(p.durable_lsn(), 0x10u);
  p.Data(0x80, 1500, kCommitted, now);  // all of it out
  EXPECT_FALSE(p.in_pieces());
  p.Durable(1500);
  EXPECT_EQ(p.durable_lsn(), 0x80u);
}

TEST(AckPolicyTest, AnIdleKeepaliveIsCappedAtTheReadingAndFollowsNewerOnes) {
  AckPolicy p(false);
  auto now = Clock::now();
  p.server().Reset(0x100);  // IDENTIFY_SYSTEM's xlogpos
  EXPECT_EQ(p.Keepalive(0x500, 0, now), 0x100u);
  p.Durable(0);
  EXPECT_EQ(p.Acknowledgeable(), 0x100u);
  p.server().Note(0x300);  // the monitor's reading
  p.FollowReadings(0, now);
  p.Durable(0);
  EXPECT_EQ(p.Acknowledgeable(), 0x300u);
  p.server().Note(0x600);
  p.FollowReadings(0, now);  // never beyond what the keepalive claimed
  EXPECT_EQ(p.Acknowledgeable(), 0x500u);
}

TEST(AckPolicyTest, AReadingDoesNotMoveAKeepaliveThatDataCameAfter) {
  AckPolicy p(false);
  auto now = Clock::now();
  p.server().Reset(0x100);
  p.Keepalive(0x500, 0, now);
  Mark(&p, 40, 0x120);  // data after the keepalive, not durable
  p.server().Note(0x400);
  p.FollowReadings(40, now);
  p.Durable(0);
  EXPECT_EQ(p.Acknowledgeable(), 0x100u);
  p.Durable(40);
  EXPECT_EQ(p.Acknowledgeable(), 0x120u);
}

TEST(AckPolicyTest, OutOfOrderCompletionsAcknowledgeOnlyWithoutAGap) {
  AckPolicy p = Stream();
  Mark(&p, 1, 0x10);  // three records, numbered 0, 1, 2
  Mark(&p, 2, 0x20);
  Mark(&p, 3, 0x30);
  EXPECT_FALSE(p.Completed(2, 3));  // the third's delivery report first
  EXPECT_EQ(p.Acknowledgeable(), kInvalidLsn);
  EXPECT_TRUE(p.Completed(0, 1));
  EXPECT_EQ(p.Acknowledgeable(), 0x10u);
  EXPECT_TRUE(p.Completed(1, 2));  // fills the gap: everything is complete
  EXPECT_EQ(p.Acknowledgeable(), 0x30u);
  EXPECT_FALSE(p.HasPending());
}

TEST(AckPolicyTest, OverlappingAndRepeatedCompletionsAreMerged) {
  AckPolicy p = Stream();
  Mark(&p, 10, 0x10);
  Mark(&p, 20, 0x20);
  EXPECT_FALSE(p.Completed(12, 20));
  EXPECT_FALSE(p.Completed(12, 15));  // again, within it
  EXPECT_FALSE(p.Completed(0, 5));
  EXPECT_FALSE(p.Completed(0, 5));  // a repeated report
  EXPECT_TRUE(p.Completed(4, 13));  // bridges both
  EXPECT_EQ(p.Acknowledgeable(), 0x20u);
}

TEST(AckPolicyTest, ExactlyOnceRecordsAtStartAndAfterARestart) {
  AckPolicy p = Stream(true);
  p.StartFromRecord(100, 0x50);  // a record applied at session start
  EXPECT_EQ(p.Acknowledgeable(), 0x50u);
  EXPECT_FALSE(p.CheckpointWanted());
  p.RaiseFloor(0x60);  // no record: the slot's own position is recorded at once
  p.StartFromRecord(100, kInvalidLsn);
  EXPECT_EQ(p.Acknowledgeable(), kInvalidLsn);
  ASSERT_TRUE(p.CheckpointWanted());
  EXPECT_EQ(p.CheckpointWanted()->lsn, 0x60u);
  EXPECT_EQ(p.CheckpointWanted()->offset, 100u);
}

TEST(AckPolicyTest, APausedSinkForgetsWhatItWillNeverWrite) {
  AckPolicy p = Stream();
  Mark(&p, 10, 0x10);
  Mark(&p, 20, 0x20);
  Mark(&p, 30, 0x30);
  EXPECT_TRUE(p.IsBoundary(20));
  EXPECT_FALSE(p.IsBoundary(25));
  p.Unwritten(20);  // the sink took 15 bytes; it gets the rest of that message only
  EXPECT_EQ(p.NextBoundary(20), 20u);
  p.Durable(30);
  EXPECT_EQ(p.Acknowledgeable(), 0x20u);
}

TEST(AckPolicyTest, AMarkFallsEveryKMarkEveryWithoutWaitingForTheBatch) {
  AckPolicy p = Stream();
  auto now = Clock::now();
  p.Data(0x10, 1000, kOutside, now);
  p.Durable(1000);
  EXPECT_EQ(p.Acknowledgeable(), kInvalidLsn);  // no mark before the batch ends
  p.Data(0x20, AckPolicy::kMarkEvery + 5, kOutside, now);
  p.Durable(AckPolicy::kMarkEvery + 5);
  EXPECT_EQ(p.Acknowledgeable(), 0x20u);  // a pipe reader's progress counts
}

TEST(AckPolicyTest, ADroppedRangeForgetsCompletionsBeyondIt) {
  AckPolicy p = Stream();
  Mark(&p, 10, 0x10);
  EXPECT_FALSE(p.Completed(5, 10));
  p.Unwritten(7);
  Mark(&p, 12, 0x20);
  EXPECT_FALSE(p.Completed(0, 5));  // [5, 7) only is still complete
  EXPECT_EQ(p.Acknowledgeable(), kInvalidLsn);
  EXPECT_TRUE(p.Completed(7, 12));
  EXPECT_EQ(p.Acknowledgeable(), 0x20u);
}

}  // namespace
}  // namespace pgslotd
