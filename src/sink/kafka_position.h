// pgslotd's committed positions in Kafka: how a kafka sink with
// exactly_once knows, at start, what its committed Kafka transactions hold.
//
// Every Kafka transaction a slot commits ends with one record in partition 0
// of the position topic (`position_topic`, default pgslotd_positions; best
// compacted), produced inside that transaction:
//   key    <system identifier>/<slot>
//   value  {"system_id":"7300…","slot":"orders","lsn":"0/16B3748",
//           "transactional_id":"pgslotd-7300…-orders"}
// and, while a snapshot is under way (or its request files are not yet
// deleted), a last field "snapshot" with its progress at that place of the
// output (snapshot/snapshot_progress.h: one line of tokens, as a JSON
// string).
// So the newest record of a key that a read_committed reader sees is the
// position up to which the slot's output is in committed Kafka
// transactions: no more (it commits with them), no less.
#pragma once

#include <chrono>
#include <string>
#include <string_view>

#include "pg/lsn.h"
#include "util/status.h"

struct rd_kafka_conf_s;

namespace pgslotd {

std::string PositionKey(const std::string& system_id, const std::string& slot);
// What a position record says.
struct CommittedPosition {
  Lsn lsn = kInvalidLsn;   // kInvalidLsn: none
  std::string snapshot;    // a snapshot's progress; empty: none
  bool malformed = false;  // a position whose snapshot field cannot be read
};

// `snapshot` empty: no snapshot field.
std::string PositionValue(const std::string& system_id, const std::string& slot, Lsn lsn,
                          const std::string& transactional_id, const std::string& snapshot = "");
// The position a record's value names; kInvalidLsn when it names none.
Lsn PositionOf(std::string_view value);
// The position and snapshot progress a record's value holds; lsn
// kInvalidLsn when it names no position, and then also when its snapshot
// field cannot be read (`malformed`).
CommittedPosition ParsePosition(std::string_view value);

// Reads the newest record with `key` in partition 0 of `topic`, with a
// client configured by `conf` (taken; config/kafka_properties.h
// MakeReaderConf: read_committed). Reads back from the partition's end, a
// window at a time, so a compacted or a long topic costs the same. Returns
// what it says, or lsn kInvalidLsn when there is none (or no such topic
// yet).
// SlotFatal when the newest record of `key` names a position with a
// snapshot field that cannot be read (an older one would be wrong).
// Retryable when the brokers do not answer within `timeout`, or when an
// open transaction of another producer hides the partition's end (its
// last stable offset is below its end: what follows may be ours).
Result<CommittedPosition> ReadCommittedPosition(rd_kafka_conf_s* conf, const std::string& topic,
                                                const std::string& key,
                                                std::chrono::milliseconds timeout);

}  // namespace pgslotd
