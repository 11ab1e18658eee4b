#include "sink/kafka_position.h"

#include <librdkafka/rdkafka.h>

#include <algorithm>
#include <memory>
#include <utility>

namespace pgslotd {

namespace {

using Clock = std::chrono::steady_clock;

// Records read per step back from the partition's end.
constexpr int64_t kWindow = 1000;

struct ClientDeleter {
  void operator()(rd_kafka_t* rk) const { rd_kafka_destroy(rk); }
};
struct TopicDeleter {
  void operator()(rd_kafka_topic_t* rkt) const { rd_kafka_topic_destroy(rkt); }
};

int MillisLeft(Clock::time_point deadline) {
  auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
  return static_cast<int>(std::max<int64_t>(left.count(), 0));
}

Status ReadError(const std::string& topic, rd_kafka_resp_err_t err) {
  std::string what =
      "reading the committed position from Kafka topic " + topic + ": " + rd_kafka_err2str(err);
  bool permanent = err == RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED ||
                   err == RD_KAFKA_RESP_ERR__AUTHENTICATION ||
                   err == RD_KAFKA_RESP_ERR_SASL_AUTHENTICATION_FAILED;
  return permanent ? Status::SlotFatal(what) : Status::Retryable(what);
}

// One window, [start, end) of the partition: the last record with `key`
// in it (*found, when there is one) and where the partition ended for a
// read_committed reader (*stable_end, when it was reached).
struct Window {
  int64_t start;
  int64_t end;
};
Status ScanWindow(rd_kafka_topic_t* rkt, const std::string& key, Window w,
                  Clock::time_point deadline, CommittedPosition* found, int64_t* stable_end) {
  if (rd_kafka_consume_start(rkt, 0, w.start) != 0) {
    return ReadError(rd_kafka_topic_name(rkt), rd_kafka_last_error());
  }
  Status s = Status::Ok();
  while (true) {
    rd_kafka_message_t* m = rd_kafka_consume(rkt, 0, std::min(MillisLeft(deadline), 100));
    if (m == nullptr) {
      if (MillisLeft(deadline) > 0) continue;
      s = Status::Retryable(std::string("reading the committed position from Kafka topic ") +
                            rd_kafka_topic_name(rkt) + ": the brokers did not answer in time");
      break;
    }
    bool done = false;
    if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
      *stable_end = m->offset;
      done = true;
    } else if (m->err != RD_KAFKA_RESP_ERR_NO_ERROR) {
      s = ReadError(rd_kafka_topic_name(rkt), m->err);
      done = true;
    } else if (m->offset >= w.end) {
      done = true;
    } else if (m->key_len == key.size() &&
               key.compare(0, key.size(), static_cast<char*>(m->key), m->key_len) == 0) {
      CommittedPosition p = ParsePosition(std::string_view(static_cast<char*>(m->payload), m->len));
      if (p.lsn != kInvalidLsn || p.malformed) *found = std::move(p);
    }
    done = done || m->offset + 1 >= w.end;
    rd_kafka_message_destroy(m);
    if (done) break;
  }
  rd_kafka_consume_stop(rkt, 0);
  return s;
}

// The snapshot progress as a JSON string's content: '"', '\\' and
// control characters escaped, every other byte as it is (a key's text in
// the server's encoding), so that it reads back byte for byte.
void AppendQuoted(std::string_view text, std::string* out) {
  static const char kHex[] = "0123456789abcdef";
  for (char c : text) {
    auto u = static_cast<unsigned char>(c);
    if (c == '"' || c == '\\') {
      *out += '\\';
      *out += c;
    } else if (u < 0x20) {
      *out += "\\u00";
      *out += kHex[u >> 4];
      *out += kHex[u & 0xF];
    } else {
      *out += c;
    }
  }
}

int HexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// Reads a JSON string's content up to its closing quote (what AppendQuoted
// writes, and JSON's other escapes up to U+007F); false when malformed.
bool ReadQuoted(std::string_view in, std::string* out) {
  for (size_t i = 0; i < in.size(); ++i) {
    char c = in[i];
    if (c == '"') return true;
    if (c != '\\') {
      *out += c;
      continue;
    }
    if (++i == in.size()) return false;
    switch (in[i]) {
      case '"':
      case '\\':
      case '/':
        *out += in[i];
        break;
      case 'b':
        *out += '\b';
        break;
      case 'f':
        *out += '\f';
        break;
      case 'n':
        *out += '\n';
        break;
      case 'r':
        *out += '\r';
        break;
      case 't':
        *out += '\t';
        break;
      case 'u': {
        if (i + 4 >= in.size()) return false;
        int code = 0;
        for (size_t k = 1; k <= 4; ++k) {
          int h = HexValue(in[i + k]);
          if (h < 0) return false;
          code = code * 16 + h;
        }
        if (code >= 0x80) return false;
        *out += static_cast<char>(code);
        i += 4;
        break;
      }
      default:
        return false;
    }
  }
  return false;
}

}  // namespace

std::string PositionKey(const std::string& system_id, const std::string& slot) {
  return system_id + "/" + slot;
}

std::string PositionValue(const std::string& system_id, const std::string& slot, Lsn lsn,
                          const std::string& transactional_id, const std::string& snapshot) {
  // The names are digits, [a-z0-9_] and an operator's id: quoted as they are
  // but for the two characters JSON forbids there.
  std::string id;
  for (char c : transactional_id) {
    if (c == '"' || c == '\\') id += '\\';
    id += c;
  }
  std::string value = "{\"system_id\":\"" + system_id + "\",\"slot\":\"" + slot + "\",\"lsn\":\"" +
                      FormatLsn(lsn) + "\",\"transactional_id\":\"" + id + "\"";
  if (!snapshot.empty()) {
    value += ",\"snapshot\":\"";
    AppendQuoted(snapshot, &value);
    value += '"';
  }
  value += '}';
  return value;
}

Lsn PositionOf(std::string_view value) {
  constexpr std::string_view kField = "\"lsn\":\"";
  size_t at = value.find(kField);
  if (at == std::string_view::npos) return kInvalidLsn;
  at += kField.size();
  size_t end = value.find('"', at);
  if (end == std::string_view::npos) return kInvalidLsn;
  return ParseLsn(value.substr(at, end - at)).value_or(kInvalidLsn);
}

CommittedPosition ParsePosition(std::string_view value) {
  CommittedPosition position;
  position.lsn = PositionOf(value);
  constexpr std::string_view kField = "\"snapshot\":\"";
  size_t at = value.find(kField);
  if (position.lsn == kInvalidLsn || at == std::string_view::npos) return position;
  if (!ReadQuoted(value.substr(at + kField.size()), &position.snapshot)) {
    position = CommittedPosition{};
    position.malformed = true;
  }
  return position;
}

Result<CommittedPosition> ReadCommittedPosition(rd_kafka_conf_s* conf, const std::string& topic,
                                                const std::string& key,
                                                std::chrono::milliseconds timeout) {
  Clock::time_point deadline = Clock::now() + timeout;
  char errstr[512];
  std::unique_ptr<rd_kafka_t, ClientDeleter> rk(
      rd_kafka_new(RD_KAFKA_CONSUMER, conf, errstr, sizeof(errstr)));
  if (rk == nullptr) {
    rd_kafka_conf_destroy(conf);
    return Status::SlotFatal(std::string("cannot create a Kafka client: ") + errstr);
  }
  int64_t low = 0;
  int64_t high = 0;
  rd_kafka_resp_err_t err = rd_kafka_query_watermark_offsets(rk.get(), topic.c_str(), 0, &low,
                                                             &high, MillisLeft(deadline));
  if (err == RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART || err == RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC ||
      err == RD_KAFKA_RESP_ERR__UNKNOWN_PARTITION) {
    return CommittedPosition{};  // no topic yet: nothing was ever committed there
  }
  if (err != RD_KAFKA_RESP_ERR_NO_ERROR) return ReadError(topic, err);
  std::unique_ptr<rd_kafka_topic_t, TopicDeleter> rkt(
      rd_kafka_topic_new(rk.get(), topic.c_str(), nullptr));
  CommittedPosition found;
  for (int64_t end = high; end > low && found.lsn == kInvalidLsn && !found.malformed;) {
    Window w{std::max(low, end - kWindow), end};
    int64_t stable_end = -1;
    if (Status s = ScanWindow(rkt.get(), key, w, deadline, &found, &stable_end); !s.ok()) return s;
    if (end == high && stable_end >= 0 && stable_end < high) {
      return Status::Retryable(
          "Kafka topic " + topic + " partition 0 has a transaction still open at offset " +
          std::to_string(stable_end) + " (its end is " + std::to_string(high) +
          "): the committed position may lie beyond it; waiting for it to end (a producer that "
          "died with it open is timed out by the brokers after its transaction.timeout.ms)");
    }
    end = w.start;
  }
  if (found.malformed) {
    return Status::SlotFatal("the newest position record of key " + key + " in Kafka topic " +
                             topic +
                             " has a snapshot field pgslotd cannot read (was it written by "
                             "another program?); nothing is acknowledged on the strength of an "
                             "older one (set position_topic to a new topic to start again)");
  }
  return found;
}

}  // namespace pgslotd
