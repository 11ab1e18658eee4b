// A Kafka sink: one Kafka record per slot record (json: per change; raw: per
// plugin message), produced with librdkafka (acks=all, an idempotent
// producer).
//
// Topics and partitions. A change goes to the topic the `topic` template
// names ({slot}, and for json {schema} and {table}), and so does a
// snapshot's start or end line (of the table it frames); a record without
// a table (begin, commit, message, truncate, raw) goes to the template with
// {schema} and {table} taken away and the dots around them, so by default
// to "{slot}". A keyed record (json with key: primary_key, a table with a
// primary key) goes to the partition librdkafka's murmur2 partitioner
// picks for its key (the one a Java producer picks), so each row's changes
// stay in order; every other record goes to partition 0, so records of a
// slot keep commit order in each partition. Headers: slot and lsn, and for
// json commit_lsn and xid.
//
// Completion. A record is complete when its delivery report says the
// brokers have it (acks=all); the report arrives on librdkafka's main
// queue, whose readiness is written to an eventfd (CompletionFd), so that a
// report wakes the worker. Sync() serves the reports; TakeCompleted hands
// over the ranges of stream offsets of the records delivered, in any order.
// A failed delivery is never complete: Sync() returns the error (retryable:
// the worker re-sends from the last acknowledged position; a record too
// large for the brokers, or a topic the credentials may not write, stops
// the slot).
//
// Exactly once (exactly_once: true, the default). A transactional producer
// (transactional.id: config/kafka_properties.h TransactionalId) puts whole
// PostgreSQL transactions into Kafka transactions: one begins with the
// first record after the last ended, and ends at the first PostgreSQL
// transaction boundary (RecordInfo::unit_end) past transaction_records or
// transaction_bytes, or once fsync_interval has passed (the worker's
// sync schedule: Sync). It ends with Checkpoint, which adds the position
// record (sink/kafka_position.h), with a snapshot's progress when one is
// under way, and commits; only then is the position recorded, and so
// acknowledged. Commits wait briefly per call and are
// resumed on the next (librdkafka's calls are resumable), so the worker
// keeps reading its socket while the brokers take their time. Recover, at
// session start, creates the producer for the server's system identifier
// (init_transactions fences an older producer with the same id and aborts
// its open transaction) and reads the committed position back. After a
// failure, Discard aborts the open transaction (what it held is invisible
// to read_committed consumers) and the server sends it again.
//
// Backpressure. When librdkafka's queue is full, Append takes no more and
// WaitSpec waits for a delivery report. pgslotd sets
// queue.buffering.max.kbytes to kDefaultQueueKbytes unless the properties
// set it (librdkafka's default is 1 GiB).
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <deque>
#include <string>
#include <utility>
#include <vector>

#include "sink/sink.h"
#include "util/fd.h"

struct rd_kafka_s;
struct rd_kafka_message_s;
struct rd_kafka_error_s;
struct rd_kafka_conf_s;

namespace pgslotd {

class KafkaSink : public Sink, public ExactlyOnceSink {
 public:
  static constexpr const char* kDefaultQueueKbytes = "32768";

  explicit KafkaSink(const SlotConfig& config);
  ~KafkaSink() override;

  std::string Describe() const override;
  Status Open() override;
  Status Append(const RecordBuffer& records, size_t limit, size_t* taken) override;
  Status Sync() override;
  Wait WaitSpec() const override;
  Result<bool> Probe() override;
  Status Discard(uint64_t keep) override;
  bool CanRetract() const override { return transactional_; }
  bool SyncIsCostly() const override { return txn_open_ && !CommitUrgent(); }
  std::chrono::milliseconds RecheckAfter() const override;
  int CompletionFd() const override { return events_.fd(); }
  void TakeCompleted(std::vector<Range>* ranges) override;
  Status Reopen() override { return Status::Ok(); }
  Status Close() override;
  ExactlyOnceSink* exactly_once() override { return transactional_ ? this : nullptr; }
  bool GetFigures(Figures* figures) const override;

  // ExactlyOnceSink (exactly_once: true).
  Result<Lsn> Recover(const StateKey& key, std::string* note, bool* warn) override;
  Result<bool> Checkpoint(uint64_t offset, Lsn lsn) override;
  bool RotationDue(uint64_t) const override { return false; }
  Status Rotate() override { return Status::Ok(); }
  bool CheckpointUrgent() const override { return CommitUrgent(); }
  bool RecoverTouchesShared() const override { return true; }
  // A snapshot's progress travels in the position record's value.
  bool KeepsSnapshotProgress() const override { return true; }
  void SetSnapshotProgress(std::string progress) override { snapshot_ = std::move(progress); }
  std::string RecoveredSnapshotProgress() const override { return recovered_snapshot_; }

  // Records produced and not yet reported, for metrics and STATUS.
  size_t in_flight() const { return in_flight_.size() - reported_in_flight_; }
  uint64_t delivery_errors() const { return delivery_errors_; }
  uint64_t transactions_committed() const { return transactions_committed_; }
  uint64_t transactions_aborted() const { return transactions_aborted_; }

  // The topic a record of `schema`.`table` goes to (empty table: a record
  // without one), by `template_text` for `slot`.
  static std::string ExpandTopic(const std::string& template_text, const std::string& slot,
                                 const std::string& schema, const std::string& table);

 private:
  // One record produced: its range of stream offsets; done once reported.
  struct InFlight {
    uint64_t begin;
    uint64_t end;
    bool done;
  };

  // How long one call waits for a commit before it returns (resumed by the
  // next); how long an abort, init_transactions and the position's read
  // may take (at a failure or session start; the heartbeat allows 10 s).
  static constexpr std::chrono::milliseconds kCommitWait{50};
  static constexpr std::chrono::milliseconds kAbortWait{3000};
  static constexpr std::chrono::milliseconds kInitWait{3000};
  static constexpr std::chrono::milliseconds kReadWait{3000};
  // The delivery reports' opaque of the position record.
  static constexpr uintptr_t kPositionSeq = ~uintptr_t{0};

  static void OnLog(const rd_kafka_s* rk, int level, const char* facility, const char* text);
  void SetCallbacks(rd_kafka_conf_s* conf);
  bool GroupEnds(const Record& r);
  Result<Lsn> Recovered(const StateKey& key, Lsn lsn, std::string* note, bool* warn);

  static void OnDelivery(rd_kafka_s* rk, const rd_kafka_message_s* msg, void* opaque);
  Status CreateProducer(const std::string& transactional_id);
  Status InitTransactions();
  Status BeginTransaction();
  Status ProducePosition(Lsn lsn);
  Result<bool> ResumeCommit();
  void AbortTransaction();
  Status TransactionError(const char* doing, struct rd_kafka_error_s* error);
  bool CommitUrgent() const { return commit_wanted_ || closing_ || committing_; }
  void Delivered(uint64_t seq, int err, const rd_kafka_message_s* msg);
  Status Produce(const Record& record, uint64_t end, bool* queue_full);
  const std::string& TopicOf(const Record& record);
  void DestroyProducer();

  const SlotConfig& config_;
  rd_kafka_s* rk_ = nullptr;
  WakeupFd events_;
  bool queue_full_ = false;
  std::vector<std::string> topics_;  // by table id; [0]: records without a table
  std::string lsn_text_;
  // Produced records in produce order; seq of in_flight_[0] is first_seq_.
  std::deque<InFlight> in_flight_;
  uint64_t first_seq_ = 0;
  size_t reported_in_flight_ = 0;  // of in_flight_, done
  std::vector<Range> completed_;   // reported, not yet taken
  Status failed_;                  // the first failed delivery or fatal error
  uint64_t delivery_errors_ = 0;
  // Set by librdkafka's thread when all brokers are down; cleared by a
  // delivery report or a commit (this thread).
  std::atomic<bool> brokers_down_{false};

  // Exactly once.
  const bool transactional_;
  std::string system_id_;         // of the server the producer was made for
  std::string transactional_id_;  // its transactional.id
  std::string position_key_;
  bool initialized_ = false;  // init_transactions has succeeded
  bool txn_open_ = false;     // a Kafka transaction is open
  uint64_t txn_records_ = 0;  // records and value bytes in it
  uint64_t txn_bytes_ = 0;
  bool commit_wanted_ = false;  // end it at the next boundary
  bool closing_ = false;        // at a boundary: no more records until it ends
  bool committing_ = false;     // its commit is under way
  uint64_t commit_offset_ = 0;  // what the commit under way stands for
  Lsn commit_lsn_ = kInvalidLsn;
  Lsn committed_lsn_ = kInvalidLsn;  // the position record last committed
  // A snapshot's progress: what the worker set for the next position
  // record, what the commit under way holds, what the last committed one
  // holds, and what the committed one held at Recover.
  std::string snapshot_;
  std::string commit_snapshot_;
  std::string committed_snapshot_;
  std::string recovered_snapshot_;
  uint64_t transactions_committed_ = 0;
  uint64_t transactions_aborted_ = 0;
};

}  // namespace pgslotd
