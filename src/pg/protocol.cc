#include "pg/protocol.h"

#include <chrono>
#include <string>

namespace pgslotd {

namespace {

// Seconds between the Unix epoch and 2000-01-01.
constexpr int64_t kPgEpochOffsetSecs = 946684800;

uint64_t ReadU64(const char* p) {
  uint64_t v = 0;
  for (int i = 0; i < 8; ++i) v = (v << 8) | static_cast<unsigned char>(p[i]);
  return v;
}

void WriteU64(uint64_t v, char* p) {
  for (int i = 7; i >= 0; --i) {
    p[i] = static_cast<char>(v & 0xFF);
    v >>= 8;
  }
}

}  // namespace

PgTimestamp NowPgTimestamp() {
  auto now = std::chrono::system_clock::now().time_since_epoch();
  int64_t us = std::chrono::duration_cast<std::chrono::microseconds>(now).count();
  return us - kPgEpochOffsetSecs * 1000000;
}

Status ParseServerMessage(const char* buf, size_t len, ServerMessage* out) {
  if (len < 1) return Status::Retryable("protocol error: empty CopyData message");
  switch (buf[0]) {
    case 'w':
      // Byte1('w') Int64 dataStart Int64 walEnd Int64 sendTime Byte(n) data
      if (len < 25) {
        return Status::Retryable("protocol error: XLogData message of " + std::to_string(len) +
                                 " bytes is shorter than its 25-byte header");
      }
      out->kind = ServerMessage::Kind::kXLogData;
      out->data_start = ReadU64(buf + 1);
      out->wal_end = ReadU64(buf + 9);
      out->send_time = static_cast<PgTimestamp>(ReadU64(buf + 17));
      out->reply_requested = false;
      out->payload = std::string_view(buf + 25, len - 25);
      return Status::Ok();
    case 'k':
      // Byte1('k') Int64 walEnd Int64 sendTime Byte1 replyRequested
      if (len < 18) {
        return Status::Retryable("protocol error: keepalive message of " + std::to_string(len) +
                                 " bytes is shorter than 18 bytes");
      }
      out->kind = ServerMessage::Kind::kKeepalive;
      out->data_start = 0;
      out->wal_end = ReadU64(buf + 1);
      out->send_time = static_cast<PgTimestamp>(ReadU64(buf + 9));
      out->reply_requested = buf[17] != 0;
      out->payload = std::string_view();
      return Status::Ok();
    default: {
      char hex[8];
      snprintf(hex, sizeof hex, "0x%02x", static_cast<unsigned char>(buf[0]));
      return Status::Retryable(std::string("protocol error: unknown CopyData message type ") + hex);
    }
  }
}

void BuildStatusUpdate(Lsn write, Lsn flush, Lsn apply, PgTimestamp now, bool reply_requested,
                       char out[kStatusUpdateSize]) {
  out[0] = 'r';
  WriteU64(write, out + 1);
  WriteU64(flush, out + 9);
  WriteU64(apply, out + 17);
  WriteU64(static_cast<uint64_t>(now), out + 25);
  out[33] = reply_requested ? 1 : 0;
}

}  // namespace pgslotd
