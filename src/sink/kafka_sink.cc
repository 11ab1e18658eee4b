#include "sink/kafka_sink.h"

#include <librdkafka/rdkafka.h>

#include <poll.h>

#include <cinttypes>
#include <cstdio>

#include "config/kafka_properties.h"

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

KafkaSink::KafkaSink(const SlotConfig& config) : config_(config) { topics_.resize(1); }

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
  if (rk_ != nullptr) return Status::Ok();
  std::string err;
  if (!config_.sink.properties_file.empty()) {
    std::string problem = PropertiesFileProblem(config_.sink.properties_file);
    if (!problem.empty()) return Status::SlotFatal("properties_file: " + problem);
  }
  rd_kafka_conf_t* conf = MakeProducerConf(config_, &err);
  if (conf == nullptr) return Status::SlotFatal(err);
  rd_kafka_conf_set_opaque(conf, this);
  rd_kafka_conf_set_dr_msg_cb(conf, [](rd_kafka_t* rk, const rd_kafka_message_t* m, void* o) {
    OnDelivery(rk, m, o);
  });
  char errstr[512];
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
  uint32_t id = record.info->kind == RecordKind::kChange ? record.info->table : 0;
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
  int lsn_len = std::snprintf(lsn, sizeof(lsn), "%X/%X", static_cast<unsigned>(record.info->lsn >> 32),
                              static_cast<unsigned>(record.info->lsn));
  auto* opaque = reinterpret_cast<void*>(static_cast<uintptr_t>(first_seq_ + in_flight_.size()));
  rd_kafka_resp_err_t err;
  if (config_.format == OutputFormat::kJson && record.info->kind != RecordKind::kRaw) {
    char commit[32];
    int commit_len =
        std::snprintf(commit, sizeof(commit), "%X/%X", static_cast<unsigned>(record.info->commit_lsn >> 32),
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
    std::string what = "producing a record of " + std::to_string(record.payload.size()) +
                       " bytes to topic " + topic + ": " + rd_kafka_err2str(err);
    if (err == RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE) {
      return Status::SlotFatal(what + " (raise message.max.bytes in properties, and the topic's "
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
  for (size_t i = 0; i < records.record_count(); ++i) {
    Record r = records.record(i);
    size_t end = static_cast<size_t>(r.info->end - records.offset());
    if (end > limit) break;
    Status s = Produce(r, r.info->end, &queue_full_);
    if (!s.ok() || queue_full_) return s;
    *taken = end;
  }
  return Status::Ok();
}

void KafkaSink::OnDelivery(rd_kafka_s* rk, const rd_kafka_message_s* msg, void* opaque) {
  (void)rk;
  auto* self = static_cast<KafkaSink*>(opaque);
  self->Delivered(static_cast<uint64_t>(reinterpret_cast<uintptr_t>(msg->_private)), msg->err,
                  msg);
}

void KafkaSink::Delivered(uint64_t seq, int err, const rd_kafka_message_s* msg) {
  if (seq < first_seq_ || seq >= first_seq_ + in_flight_.size()) return;  // discarded since
  InFlight& f = in_flight_[seq - first_seq_];
  if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
    ++delivery_errors_;
    if (failed_.ok()) {
      auto code = static_cast<rd_kafka_resp_err_t>(err);
      std::string what = "delivering a record of " + std::to_string(msg->len) +
                         " bytes to topic " + rd_kafka_topic_name(msg->rkt) + ": " +
                         rd_kafka_err2str(code);
      failed_ = IsPermanent(code) ? Status::SlotFatal(what) : Status::Retryable(what);
    }
    return;
  }
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
  return w;
}

Result<bool> KafkaSink::Probe() {
  if (!failed_.ok()) return failed_;
  return !queue_full_ || in_flight() == 0;
}

Status KafkaSink::Discard(uint64_t keep) {
  // What was produced cannot be taken back: its reports no longer count
  // (the server sends it again: at least once).
  first_seq_ += in_flight_.size();
  in_flight_.clear();
  reported_in_flight_ = 0;
  completed_.clear();
  queue_full_ = false;
  CountRenumbered(keep);
  if (!failed_.ok() && failed_.code() == Status::Code::kRetryable) {
    // A fatal producer error needs a new producer.
    bool fatal = rk_ != nullptr && rd_kafka_fatal_error(rk_, nullptr, 0) != RD_KAFKA_RESP_ERR_NO_ERROR;
    if (fatal) DestroyProducer();
    failed_ = Status::Ok();
    return Open();
  }
  return Status::Ok();
}

Status KafkaSink::Close() {
  if (rk_ == nullptr) return Status::Ok();
  rd_kafka_flush(rk_, static_cast<int>(kCloseFlush.count()));
  rd_kafka_poll(rk_, 0);
  DestroyProducer();
  return Status::Ok();
}

void KafkaSink::DestroyProducer() {
  if (rk_ == nullptr) return;
  rd_kafka_destroy(rk_);
  rk_ = nullptr;
}

}  // namespace pgslotd
