#include "sink/kafka_sink.h"

#include <librdkafka/rdkafka.h>
#include <poll.h>

#include <cinttypes>
#include <cstdio>
#include <cstring>

#include "config/kafka_properties.h"
#include "sink/kafka_position.h"
#include "util/log.h"

namespace pgslotd {

namespace {

constexpr std::chrono::milliseconds kCloseFlush{5000};

// Kafka's errors that no retry of ours can mend: the slot stops.
bool IsPermanent(rd_kafka_resp_err_t err) {
  switch (err) {
    case RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE:
    case RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED:
    case RD_KAFKA_RESP_ERR_CLUSTER_AUTHORIZATION_FAILED:
    case RD_KAFKA_RESP_ERR_TRANSACTIONAL_ID_AUTHORIZATION_FAILED:
    case RD_KAFKA_RESP_ERR__AUTHENTICATION:
    case RD_KAFKA_RESP_ERR_SASL_AUTHENTICATION_FAILED:
    case RD_KAFKA_RESP_ERR_TOPIC_EXCEPTION:
      return true;
    default:
      return false;
  }
}

// Removes "{name}" and the one dot before or after it from `text`.
void DropPlaceholder(const std::string& name, std::string* text) {
  size_t at = text->find(name);
  while (at != std::string::npos) {
    size_t begin = at;
    size_t end = at + name.size();
    if (end < text->size() && (*text)[end] == '.') {
      ++end;
    } else if (begin > 0 && (*text)[begin - 1] == '.') {
      --begin;
    }
    text->erase(begin, end - begin);
    at = text->find(name);
  }
}

void Replace(const std::string& name, const std::string& value, std::string* text) {
  for (size_t at = text->find(name); at != std::string::npos;
       at = text->find(name, at + value.size())) {
    text->replace(at, name.size(), value);
  }
}

}  // namespace

KafkaSink::KafkaSink(const SlotConfig& config)
    : config_(config), transactional_(config.sink.exactly_once) {
  topics_.resize(1);
}

KafkaSink::~KafkaSink() { DestroyProducer(); }

std::string KafkaSink::Describe() const {
  return "kafka " + config_.sink.brokers + " topic " + TopicTemplate(config_);
}

std::string KafkaSink::ExpandTopic(const std::string& template_text, const std::string& slot,
                                   const std::string& schema, const std::string& table) {
  std::string topic = template_text;
  if (table.empty()) {
    DropPlaceholder("{schema}", &topic);
    DropPlaceholder("{table}", &topic);
  } else {
    Replace("{schema}", schema, &topic);
    Replace("{table}", table, &topic);
  }
  Replace("{slot}", slot, &topic);
  return topic;
}

Status KafkaSink::Open() {
  if (!config_.sink.properties_file.empty()) {
    std::string problem = PropertiesFileProblem(config_.sink.properties_file);
    if (!problem.empty()) return Status::SlotFatal("properties_file: " + problem);
  }
  // A transactional producer needs the server's system identifier for its
  // transactional.id: Recover makes it.
  if (rk_ != nullptr || transactional_) return Status::Ok();
  return CreateProducer("");
}

void KafkaSink::OnLog(const rd_kafka_s* rk, int level, const char* facility, const char* text) {
  const auto* self = static_cast<const KafkaSink*>(rd_kafka_opaque(rk));
  // librdkafka's syslog levels: up to 4 (warning) is worth an operator's
  // eye, but for settings a reader ignores (CONFWARN: the operator's
  // producer settings); the rest is for debugging.
  bool warn = level <= 4 && std::strcmp(facility, "CONFWARN") != 0;
  Log(warn ? spdlog::level::warn : spdlog::level::debug,
      LogEvent{self->config_.name, kInvalidLsn, nullptr, {}}, std::string("Kafka: ") + text);
}

void KafkaSink::SetCallbacks(rd_kafka_conf_s* conf) {
  rd_kafka_conf_set_opaque(conf, this);
  rd_kafka_conf_set_log_cb(conf, OnLog);
  // Errors are in the log as well (above); all brokers down once more, as
  // a warning of its own.
  rd_kafka_conf_set_error_cb(conf, [](rd_kafka_t*, int err, const char* reason, void* opaque) {
    if (err != RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN) return;
    static_cast<KafkaSink*>(opaque)->brokers_down_.store(true, std::memory_order_relaxed);
    Log(spdlog::level::warn,
        LogEvent{static_cast<KafkaSink*>(opaque)->config_.name, kInvalidLsn, nullptr, {}},
        std::string("Kafka: ") + reason + " (nothing past what they have is acknowledged)");
  });
}

Status KafkaSink::CreateProducer(const std::string& transactional_id) {
  std::string err;
  rd_kafka_conf_t* conf = MakeProducerConf(config_, &err);
  if (conf == nullptr) return Status::SlotFatal(err);
  char errstr[512];
  if (!transactional_id.empty() &&
      rd_kafka_conf_set(conf, "transactional.id", transactional_id.c_str(), errstr,
                        sizeof(errstr)) != RD_KAFKA_CONF_OK) {
    rd_kafka_conf_destroy(conf);
    return Status::SlotFatal(std::string("transactional_id: ") + errstr);
  }
  SetCallbacks(conf);
  rd_kafka_conf_set_dr_msg_cb(
      conf, [](rd_kafka_t* rk, const rd_kafka_message_t* m, void* o) { OnDelivery(rk, m, o); });
  rk_ = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof(errstr));
  if (rk_ == nullptr) {
    rd_kafka_conf_destroy(conf);
    return Status::SlotFatal(std::string("cannot create the Kafka producer: ") + errstr);
  }
  rd_kafka_queue_t* main_queue = rd_kafka_queue_get_main(rk_);
  static const char kOne[8] = {1, 0, 0, 0, 0, 0, 0, 0};  // an eventfd takes a u64
  rd_kafka_queue_io_event_enable(main_queue, events_.fd(), kOne, sizeof(kOne));
  rd_kafka_queue_destroy(main_queue);
  return Status::Ok();
}

const std::string& KafkaSink::TopicOf(const Record& record) {
  // A change's table, or the table a snapshot's start or end line is about.
  uint32_t id = record.info->table;
  if (id >= topics_.size()) topics_.resize(id + 1);
  std::string& topic = topics_[id];
  if (topic.empty()) {
    topic = id == 0 ? ExpandTopic(TopicTemplate(config_), config_.name, "", "")
                    : ExpandTopic(TopicTemplate(config_), config_.name, record.table->schema,
                                  record.table->table);
  }
  return topic;
}

Status KafkaSink::Produce(const Record& record, uint64_t end, bool* queue_full) {
  const std::string& topic = TopicOf(record);
  bool keyed = !record.key.empty() && config_.sink.key == KafkaKey::kPrimaryKey;
  int32_t partition = keyed ? RD_KAFKA_PARTITION_UA : 0;
  char lsn[32];
  int lsn_len =
      std::snprintf(lsn, sizeof(lsn), "%X/%X", static_cast<unsigned>(record.info->lsn >> 32),
                    static_cast<unsigned>(record.info->lsn));
  auto* opaque = reinterpret_cast<void*>(static_cast<uintptr_t>(first_seq_ + in_flight_.size()));
  rd_kafka_resp_err_t err;
  if (config_.format == OutputFormat::kJson && record.info->kind != RecordKind::kRaw) {
    char commit[32];
    int commit_len = std::snprintf(commit, sizeof(commit), "%X/%X",
                                   static_cast<unsigned>(record.info->commit_lsn >> 32),
                                   static_cast<unsigned>(record.info->commit_lsn));
    char xid[16];
    int xid_len = std::snprintf(xid, sizeof(xid), "%" PRIu32, record.info->xid);
    err = rd_kafka_producev(
        rk_, RD_KAFKA_V_TOPIC(topic.c_str()), RD_KAFKA_V_PARTITION(partition),
        RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
        RD_KAFKA_V_VALUE(const_cast<char*>(record.payload.data()), record.payload.size()),
        RD_KAFKA_V_KEY(keyed ? record.key.data() : nullptr, keyed ? record.key.size() : 0),
        RD_KAFKA_V_HEADER("slot", config_.name.data(), static_cast<ssize_t>(config_.name.size())),
        RD_KAFKA_V_HEADER("lsn", lsn, lsn_len), RD_KAFKA_V_HEADER("commit_lsn", commit, commit_len),
        RD_KAFKA_V_HEADER("xid", xid, xid_len), RD_KAFKA_V_OPAQUE(opaque), RD_KAFKA_V_END);
  } else {
    err = rd_kafka_producev(
        rk_, RD_KAFKA_V_TOPIC(topic.c_str()), RD_KAFKA_V_PARTITION(partition),
        RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
        RD_KAFKA_V_VALUE(const_cast<char*>(record.payload.data()), record.payload.size()),
        RD_KAFKA_V_HEADER("slot", config_.name.data(), static_cast<ssize_t>(config_.name.size())),
        RD_KAFKA_V_HEADER("lsn", lsn, lsn_len), RD_KAFKA_V_OPAQUE(opaque), RD_KAFKA_V_END);
  }
  if (err == RD_KAFKA_RESP_ERR__QUEUE_FULL) {
    *queue_full = true;
    return Status::Ok();
  }
  if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
    std::string what =
        "producing a record of " + std::to_string(record.payload.size()) + " bytes" +
        (record.table ? " of table " + record.table->schema + "." + record.table->table
                      : std::string()) +
        " to topic " + topic + ": " + rd_kafka_err2str(err);
    if (err == RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE) {
      return Status::SlotFatal(what +
                               " (raise message.max.bytes in properties, and the topic's "
                               "max.message.bytes on the brokers)");
    }
    return IsPermanent(err) ? Status::SlotFatal(what) : Status::Retryable(what);
  }
  uint64_t begin = accepted();
  CountAccepted(end - begin);
  in_flight_.push_back(InFlight{begin, end, false});
  return Status::Ok();
}

Status KafkaSink::Append(const RecordBuffer& records, size_t limit, size_t* taken) {
  *taken = 0;
  if (!failed_.ok()) return failed_;
  queue_full_ = false;
  if (closing_ || committing_) return Status::Ok();  // WaitSpec: until the commit
  if (rk_ == nullptr) return Status::Retryable("internal error: no Kafka producer");
  for (size_t i = 0; i < records.record_count(); ++i) {
    Record r = records.record(i);
    size_t end = static_cast<size_t>(r.info->end - records.offset());
    if (end > limit) break;
    if (transactional_ && !txn_open_) {
      if (Status s = BeginTransaction(); !s.ok()) return s;
    }
    Status s = Produce(r, r.info->end, &queue_full_);
    if (!s.ok() || queue_full_) return s;
    *taken = end;
    if (transactional_ && GroupEnds(r)) break;
  }
  return Status::Ok();
}

bool KafkaSink::GroupEnds(const Record& r) {
  ++txn_records_;
  txn_bytes_ += r.payload.size();
  if (!r.info->unit_end) return false;
  if (commit_wanted_ || txn_records_ >= config_.sink.transaction_records ||
      txn_bytes_ >= config_.sink.transaction_bytes) {
    commit_wanted_ = true;
    closing_ = true;
  }
  return closing_;
}

void KafkaSink::OnDelivery(rd_kafka_s* rk, const rd_kafka_message_s* msg, void* opaque) {
  (void)rk;
  auto* self = static_cast<KafkaSink*>(opaque);
  self->Delivered(static_cast<uint64_t>(reinterpret_cast<uintptr_t>(msg->_private)), msg->err, msg);
}

void KafkaSink::Delivered(uint64_t seq, int err, const rd_kafka_message_s* msg) {
  // The position record (its commit says how it went), or one discarded since.
  if (seq < first_seq_ || seq >= first_seq_ + in_flight_.size()) return;
  InFlight& f = in_flight_[seq - first_seq_];
  if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
    ++delivery_errors_;
    if (failed_.ok()) {
      auto code = static_cast<rd_kafka_resp_err_t>(err);
      std::string what = "delivering a record of " + std::to_string(msg->len) + " bytes to topic " +
                         rd_kafka_topic_name(msg->rkt) + ": " + rd_kafka_err2str(code);
      failed_ = IsPermanent(code) ? Status::SlotFatal(what) : Status::Retryable(what);
    }
    return;
  }
  brokers_down_.store(false, std::memory_order_relaxed);
  if (f.done) return;
  f.done = true;
  ++reported_in_flight_;
  completed_.push_back(Range{f.begin, f.end});
  while (!in_flight_.empty() && in_flight_.front().done) {
    in_flight_.pop_front();
    ++first_seq_;
    --reported_in_flight_;
  }
}

Status KafkaSink::Sync() {
  if (rk_ == nullptr) return failed_;
  // Called while the transaction gathers records (SyncIsCostly): the
  // fsync_interval schedule says its time is up.
  if (transactional_ && SyncIsCostly()) commit_wanted_ = true;
  rd_kafka_poll(rk_, 0);  // serves delivery reports (Delivered)
  if (failed_.ok()) {
    char errstr[512];
    rd_kafka_resp_err_t fatal = rd_kafka_fatal_error(rk_, errstr, sizeof(errstr));
    if (fatal != RD_KAFKA_RESP_ERR_NO_ERROR) {
      failed_ = Status::Retryable(std::string("the Kafka producer failed: ") + errstr);
    }
  }
  return failed_;
}

void KafkaSink::TakeCompleted(std::vector<Range>* ranges) {
  events_.Drain();
  if (rk_ != nullptr) rd_kafka_poll(rk_, 0);
  ranges->insert(ranges->end(), completed_.begin(), completed_.end());
  completed_.clear();
}

Sink::Wait KafkaSink::WaitSpec() const {
  Wait w;
  w.fd = events_.fd();  // a delivery report makes room
  w.events = POLLIN;
  w.retry = std::chrono::milliseconds(100);
  w.reason = "Kafka queue full";
  if (closing_ || committing_) {
    w.retry = std::chrono::milliseconds(20);
    w.reason = "ending a Kafka transaction";
  }
  return w;
}

std::chrono::milliseconds KafkaSink::RecheckAfter() const {
  // A commit under way is resumed on the next turn; nothing else wakes it.
  return committing_ ? std::chrono::milliseconds(20) : std::chrono::milliseconds(0);
}

Result<bool> KafkaSink::Probe() {
  if (!failed_.ok()) return failed_;
  if (closing_ || committing_) return false;
  return !queue_full_ || in_flight() == 0;
}

Status KafkaSink::Discard(uint64_t keep) {
  // Exactly once: the open transaction is aborted (its records are never
  // seen by a read_committed consumer), so the stream is cut back to
  // `keep`, the recorded offset. Otherwise what was produced cannot be
  // taken back: its reports no longer count (the server sends it again: at
  // least once).
  if (transactional_) AbortTransaction();
  first_seq_ += in_flight_.size();
  in_flight_.clear();
  reported_in_flight_ = 0;
  completed_.clear();
  queue_full_ = false;
  if (transactional_) {
    CountCutTo(keep);
  } else {
    CountRenumbered(keep);
  }
  if (!failed_.ok() && failed_.code() == Status::Code::kRetryable) {
    // A fatal producer error needs a new producer.
    bool fatal =
        rk_ != nullptr && rd_kafka_fatal_error(rk_, nullptr, 0) != RD_KAFKA_RESP_ERR_NO_ERROR;
    if (fatal) DestroyProducer();
    failed_ = Status::Ok();
  }
  return Open();
}

Status KafkaSink::Close() {
  if (rk_ == nullptr) return Status::Ok();
  if (transactional_) {
    AbortTransaction();  // what is not recorded is sent again next time
  } else {
    rd_kafka_flush(rk_, static_cast<int>(kCloseFlush.count()));
    rd_kafka_poll(rk_, 0);
  }
  DestroyProducer();
  return Status::Ok();
}

void KafkaSink::DestroyProducer() {
  if (rk_ == nullptr) return;
  rd_kafka_destroy(rk_);
  rk_ = nullptr;
  initialized_ = false;
  txn_open_ = closing_ = committing_ = commit_wanted_ = false;
}

bool KafkaSink::GetFigures(Figures* figures) const {
  figures->in_flight = in_flight();
  figures->delivery_errors = delivery_errors_;
  figures->transactions_committed = transactions_committed_;
  figures->transactions_aborted = transactions_aborted_;
  figures->brokers_down = brokers_down_.load(std::memory_order_relaxed);
  return true;
}

// --- Exactly once ---------------------------------------------------------

Status KafkaSink::TransactionError(const char* doing, rd_kafka_error_s* error) {
  rd_kafka_resp_err_t code = rd_kafka_error_code(error);
  std::string what = std::string(doing) + ": " + rd_kafka_error_string(error);
  bool abort = rd_kafka_error_txn_requires_abort(error);
  bool fatal = rd_kafka_error_is_fatal(error);
  rd_kafka_error_destroy(error);
  Status s = IsPermanent(code) ? Status::SlotFatal(what) : Status::Retryable(what);
  if (failed_.ok()) failed_ = s;
  if (abort) AbortTransaction();
  if (fatal) DestroyProducer();  // a new one, fenced by the same id, at the next Recover
  return s;
}

Status KafkaSink::InitTransactions() {
  rd_kafka_error_t* e = rd_kafka_init_transactions(rk_, static_cast<int>(kInitWait.count()));
  if (e == nullptr) {
    initialized_ = true;
    return Status::Ok();
  }
  if (rd_kafka_error_is_retriable(e)) {
    std::string what = rd_kafka_error_string(e);
    rd_kafka_error_destroy(e);
    return Status::Retryable("initializing Kafka transactions for transactional.id " +
                             transactional_id_ + ": " + what + " (tried again)");
  }
  Status s = TransactionError("initializing Kafka transactions", e);
  failed_ = Status::Ok();  // reported here; the next session starts afresh
  DestroyProducer();
  return s;
}

Status KafkaSink::BeginTransaction() {
  if (rd_kafka_error_t* e = rd_kafka_begin_transaction(rk_); e != nullptr) {
    return TransactionError("beginning a Kafka transaction", e);
  }
  txn_open_ = true;
  txn_records_ = 0;
  txn_bytes_ = 0;
  return Status::Ok();
}

Status KafkaSink::ProducePosition(Lsn lsn) {
  std::string value = PositionValue(system_id_, config_.name, lsn, transactional_id_, snapshot_);
  rd_kafka_resp_err_t err =
      rd_kafka_producev(rk_, RD_KAFKA_V_TOPIC(config_.sink.position_topic.c_str()),
                        RD_KAFKA_V_PARTITION(0), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                        RD_KAFKA_V_KEY(position_key_.data(), position_key_.size()),
                        RD_KAFKA_V_VALUE(value.data(), value.size()),
                        RD_KAFKA_V_OPAQUE(reinterpret_cast<void*>(kPositionSeq)), RD_KAFKA_V_END);
  if (err == RD_KAFKA_RESP_ERR_NO_ERROR) return Status::Ok();
  std::string what = "producing the position record to topic " + config_.sink.position_topic +
                     ": " + rd_kafka_err2str(err);
  if (err == RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE) {
    // Only a snapshot's progress (its keys to read again) makes it large.
    return Status::SlotFatal(
        what + ": it is " + std::to_string(value.size()) + " bytes, of which " +
        std::to_string(snapshot_.size()) +
        " are the snapshot's progress (mostly the keys it has still to read again); raise "
        "message.max.bytes in properties and the position topic's max.message.bytes on the "
        "brokers");
  }
  return IsPermanent(err) ? Status::SlotFatal(what) : Status::Retryable(what);
}

Result<bool> KafkaSink::Checkpoint(uint64_t offset, Lsn lsn) {
  if (!failed_.ok()) return failed_;
  if (committing_) {
    Result<bool> done = ResumeCommit();
    if (!done.ok() || !done.value()) return done;
    // A later point (a keepalive since), or a progress that changed since
    // (a request queued): the next call commits it.
    return offset == commit_offset_ && lsn == commit_lsn_ && snapshot_ == committed_snapshot_;
  }
  if (lsn == committed_lsn_ && !txn_open_ && snapshot_ == committed_snapshot_) return true;
  if (offset != accepted() || in_flight() > 0) {
    commit_wanted_ = true;  // Append stops at the next boundary
    return false;
  }
  if (rk_ == nullptr) return Status::Retryable("internal error: no Kafka producer");
  if (!txn_open_) {
    if (Status s = BeginTransaction(); !s.ok()) return s;
  }
  if (Status s = ProducePosition(lsn); !s.ok()) {
    if (failed_.ok()) failed_ = s;
    return s;
  }
  committing_ = true;
  commit_offset_ = offset;
  commit_lsn_ = lsn;
  commit_snapshot_ = snapshot_;
  Result<bool> done = ResumeCommit();
  if (!done.ok() || !done.value()) return done;
  return true;
}

Result<bool> KafkaSink::ResumeCommit() {
  rd_kafka_error_t* e = rd_kafka_commit_transaction(rk_, static_cast<int>(kCommitWait.count()));
  if (e != nullptr && rd_kafka_error_is_retriable(e)) {
    rd_kafka_error_destroy(e);  // under way: resumed by the next call
    return false;
  }
  if (e != nullptr) return TransactionError("committing a Kafka transaction", e);
  txn_open_ = closing_ = committing_ = commit_wanted_ = false;
  brokers_down_.store(false, std::memory_order_relaxed);
  committed_lsn_ = commit_lsn_;
  committed_snapshot_ = commit_snapshot_;
  ++transactions_committed_;
  return true;
}

void KafkaSink::AbortTransaction() {
  if (rk_ == nullptr || (!txn_open_ && !committing_)) return;
  rd_kafka_error_t* e = rd_kafka_abort_transaction(rk_, static_cast<int>(kAbortWait.count()));
  txn_open_ = closing_ = committing_ = commit_wanted_ = false;
  ++transactions_aborted_;
  if (e == nullptr) return;
  // The next producer's init_transactions aborts it instead.
  Log(spdlog::level::warn, LogEvent{config_.name, kInvalidLsn, nullptr, {}},
      std::string("Kafka: aborting a transaction: ") + rd_kafka_error_string(e) +
          " (a new producer with the same transactional.id aborts it)");
  rd_kafka_error_destroy(e);
  DestroyProducer();
}

Result<Lsn> KafkaSink::Recover(const StateKey& key, std::string* note, bool* warn) {
  if (rk_ != nullptr && key.system_id != system_id_) DestroyProducer();
  if (rk_ == nullptr) {
    system_id_ = key.system_id;
    transactional_id_ = TransactionalId(config_, system_id_);
    position_key_ = PositionKey(system_id_, config_.name);
    if (Status s = CreateProducer(transactional_id_); !s.ok()) return s;
  }
  // First: fence any older producer of this slot and abort what it left
  // open, so that the partition's end is stable when it is read.
  if (!initialized_) {
    if (Status s = InitTransactions(); !s.ok()) return s;
  }
  std::string err;
  rd_kafka_conf_t* conf = MakeReaderConf(config_, &err);
  if (conf == nullptr) return Status::SlotFatal(err);
  SetCallbacks(conf);
  Result<CommittedPosition> read =
      ReadCommittedPosition(conf, config_.sink.position_topic, position_key_, kReadWait);
  if (!read.ok()) return read.status();
  committed_lsn_ = read.value().lsn;
  recovered_snapshot_ = read.value().snapshot;
  committed_snapshot_ = recovered_snapshot_;
  return Recovered(key, committed_lsn_, note, warn);
}

Result<Lsn> KafkaSink::Recovered(const StateKey& key, Lsn lsn, std::string* note, bool* warn) {
  const std::string where = "topic " + config_.sink.position_topic + " (key " + position_key_ + ")";
  if (lsn == kInvalidLsn) {
    *note = "no committed position of this slot in " + where +
            " yet: starting from the slot's position";
    return lsn;
  }
  if (key.wal_end != kInvalidLsn && lsn > key.wal_end) {
    return Status::SlotFatal(
        "the committed position in " + where + " is " + FormatLsn(lsn) +
        ", beyond the server's WAL end " + FormatLsn(key.wal_end) +
        ": it is not this server's (or the server was restored from a backup); nothing is "
        "skipped or acknowledged on its strength (set position_topic to a new topic to start "
        "again from the slot's position)");
  }
  if (key.confirmed != kInvalidLsn && lsn < key.confirmed) {
    *warn = true;
    *note = "the committed position in " + where + " is " + FormatLsn(lsn) +
            ", below the slot's confirmed position " + FormatLsn(key.confirmed) +
            ": the server cannot send what lies between again (was the topic recreated, or "
            "the slot used by another client?); going on from the slot's position";
    committed_lsn_ = key.confirmed;
    return key.confirmed;
  }
  *note = "committed Kafka transactions hold this slot's changes up to " + FormatLsn(lsn) + " (" +
          where + "); what the server sends again up to there is skipped";
  return lsn;
}

}  // namespace pgslotd
