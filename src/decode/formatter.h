// Formatters: how a slot turns the plugin's messages into records for its
// sink (decode/record_buffer.h).
//
// The worker calls Format() once per XLogData message, in stream order, on
// its own thread (a formatter belongs to one worker; no locking). Format
// appends zero or more complete records to `out`: raw appends one, the
// payload and "\n"; json (pgoutput) appends one JSON object per line per
// change, nothing for a relation or type message, and for a streamed
// (in-progress) transaction nothing until its Stream Commit, when every
// spooled change is appended in order. Each record is described as far as
// the format knows: its position, and for json its transaction's id and
// commit position, its table and, when out->wants_keys(), its key.
//
// `lsn` is the message's dataStart. Everything a formatter appends for
// messages up to and including this one may be acknowledged once durable:
// a formatter must therefore never hold back output it has been given
// beyond the current call, except a streamed transaction's spool, whose
// changes the server sends again in full if the stream is restarted before
// its commit (acknowledging one of its change positions never skips it), and
// the rest of the output of a commit that is replayed in pieces
// (HasMoreOutput/Continue).
//
// Errors: a malformed or truncated message, an unknown relation id, an
// unknown message type, a column count that does not match its relation
// are kRetryable (the worker reconnects without acknowledging, and the
// server sends the data again); never a crash or an out-of-bounds read.
// Reset() is called before each new stream (reconnect): it drops all
// per-stream state (relation cache, open transaction, spools).
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "config/config.h"
#include "decode/record_buffer.h"
#include "pg/lsn.h"
#include "util/status.h"

namespace pgslotd {

class Formatter {
 public:
  virtual ~Formatter() = default;
  virtual Status Format(std::string_view payload, Lsn lsn, RecordBuffer* out) = 0;
  virtual void Reset() = 0;

  // Output still to come for the last message given to Format: a streamed
  // transaction's commit, replayed from its spool a piece at a time so that
  // it never sits in memory whole. While HasMoreOutput(), the worker gives the
  // formatter no new message, writes `out` to the sink between calls, calls
  // Continue() until HasMoreOutput() is false, and only then counts the message's
  // position as written (so it is never acknowledged half written).
  virtual bool HasMoreOutput() const { return false; }
  // Appends about `budget` more bytes of that output (at least one
  // line). Errors as Format's.
  virtual Status Continue(RecordBuffer* out, size_t budget) {
    (void)out;
    (void)budget;
    return Status::Ok();
  }

  // The spool of streamed transactions, for the metrics: bytes held in
  // memory and in files. False for a formatter without one.
  struct SpoolFigures {
    uint64_t memory_bytes = 0;
    uint64_t disk_bytes = 0;
  };
  virtual bool GetSpoolFigures(SpoolFigures* figures) const {
    (void)figures;
    return false;
  }

  // Transaction framing, for sinks that keep whole transactions (a file):
  // whether the output so far ends inside a transaction (begun, not yet
  // committed). The worker acknowledges and cuts back only where this is
  // false, so a transaction is never kept or acknowledged in part. A
  // formatter that cannot tell says false: each message is then a unit.
  virtual bool InTransaction() const { return false; }
  // Whether the output completed last (by Format, or by the Continue that
  // finished what a Format began) ended a transaction: its position is then the
  // end of the commit record, the position a re-sent copy would have too.
  virtual bool EndedTransaction() const { return false; }

  // Whether Format writes each message exactly as it came, then "\n" (raw
  // output). The worker then writes a large message to the sink straight
  // from where libpq put it, never copying it, and calls Frame(payload)
  // instead of Format so that the transaction framing stays as Format
  // would leave it.
  virtual bool PassesThrough() const { return false; }
  virtual void Frame(std::string_view payload) { (void)payload; }
};

// How raw output shows where transactions begin and end, by plugin (see
// MakeFormatter): test_decoding's BEGIN/COMMIT lines, wal2json format 2's
// "B"/"C" actions, wal2json format 1's one message per transaction,
// pgoutput's binary 'B'/'C'; kNone for plugins it does not know.
enum class RawFraming { kNone, kTestDecoding, kWal2jsonV1, kWal2jsonV2, kPgoutput };

// Each message as received, followed by "\n".
class RawFormatter : public Formatter {
 public:
  explicit RawFormatter(RawFraming framing = RawFraming::kNone) : framing_(framing) {}
  Status Format(std::string_view payload, Lsn lsn, RecordBuffer* out) override {
    out->bytes()->Append(payload.data(), payload.size());
    out->bytes()->Append('\n');
    RecordInfo info;
    info.lsn = lsn;
    out->EndRecord(info);
    if (framing_ != RawFraming::kNone) Frame(payload);
    return Status::Ok();
  }
  void Reset() override {
    in_txn_ = false;
    ended_ = false;
  }
  bool InTransaction() const override { return in_txn_; }
  bool EndedTransaction() const override { return ended_; }
  bool PassesThrough() const override { return true; }
  void Frame(std::string_view payload) override;

 private:
  const RawFraming framing_;
  bool in_txn_ = false;
  bool ended_ = false;
};

// The framing raw output of `plugin` with `options` has.
RawFraming RawFramingFor(const std::string& plugin,
                         const std::vector<std::pair<std::string, std::string>>& options);

class PrimaryKeys;

// The formatter a slot's config asks for. `primary_keys` (not owned, may be
// null) is where json reads the keys its replica identities do not tell.
std::unique_ptr<Formatter> MakeFormatter(const SlotConfig& config,
                                         PrimaryKeys* primary_keys = nullptr);

}  // namespace pgslotd
