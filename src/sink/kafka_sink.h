// A Kafka sink: one Kafka record per slot record (json: per change; raw: per
// plugin message), produced with librdkafka (acks=all, an idempotent
// producer).
//
// Topics and partitions. A change goes to the topic the `topic` template
// names ({slot}, and for json {schema} and {table}); a record without a
// table (begin, commit, message, truncate, raw) goes to the template with
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
// Backpressure. When librdkafka's queue is full, Append takes no more and
// WaitSpec waits for a delivery report. pgslotd sets
// queue.buffering.max.kbytes to kDefaultQueueKbytes unless the properties
// set it (librdkafka's default is 1 GiB).
#pragma once

#include <cstdint>
#include <deque>
#include <string>
#include <vector>

#include "sink/sink.h"
#include "util/fd.h"

struct rd_kafka_s;
struct rd_kafka_message_s;

namespace pgslotd {

class KafkaSink : public Sink {
 public:
  static constexpr const char* kDefaultQueueKbytes = "32768";

  KafkaSink(const SlotConfig& config);
  ~KafkaSink() override;

  std::string Describe() const override;
  Status Open() override;
  Status Append(const RecordBuffer& records, size_t limit, size_t* taken) override;
  Status Sync() override;
  Wait WaitSpec() const override;
  Result<bool> Probe() override;
  Status Discard(uint64_t keep) override;
  int CompletionFd() const override { return events_.fd(); }
  void TakeCompleted(std::vector<Range>* ranges) override;
  Status Reopen() override { return Status::Ok(); }
  Status Close() override;

  // Records produced and not yet reported, for metrics and STATUS.
  size_t in_flight() const { return in_flight_.size() - reported_in_flight_; }
  uint64_t delivery_errors() const { return delivery_errors_; }

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

  static void OnDelivery(rd_kafka_s* rk, const rd_kafka_message_s* msg, void* opaque);
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
};

}  // namespace pgslotd
