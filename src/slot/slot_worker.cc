#include "slot/slot_worker.h"

#include <poll.h>
#include <pthread.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>

#include "pg/conninfo.h"
#include "pg/quote.h"
#include "pg/replication_conn.h"
#include "slot/read_pacer.h"
#include "util/log.h"

namespace pgslotd {

namespace {

using std::chrono::duration_cast;
using std::chrono::milliseconds;

constexpr milliseconds kBackoffMin{100};
constexpr milliseconds kBackoffMax{30000};
constexpr milliseconds kConnectTimeout{30000};
constexpr milliseconds kFinishTimeout{5000};
// At a stop, how long a reader may take nothing before the rest of a
// message it has half taken is given up on.
constexpr milliseconds kFinishIdle{1000};
constexpr std::chrono::seconds kStableSession{30};
constexpr std::chrono::seconds kProgressEvery{10};
// A mark every this many bytes, so a pipe reader's progress is acknowledged
// within a batch.
constexpr uint64_t kMarkEvery = 64 * 1024;
// Bytes gathered before writing while the server keeps sending.
constexpr uint64_t kWriteBatch = 1 << 20;
// A raw message at least this large is written to the sink from libpq's
// buffer, not copied into the slot's.
constexpr size_t kWriteThrough = 1 << 20;
// After a message at least this large the session is started again, which
// gives back the memory libpq held for it.
constexpr uint64_t kReleaseAfter = 16 << 20;

// A duration as SHOW prints it ("60s", "1min", "500ms", "0"); nullopt if
// unreadable.
std::optional<milliseconds> ParseServerDuration(const std::string& text) {
  size_t digits = 0;
  while (digits < text.size() && text[digits] >= '0' && text[digits] <= '9') ++digits;
  if (digits == 0 || digits > 12) return std::nullopt;
  int64_t n = std::stoll(text.substr(0, digits));
  std::string unit = text.substr(digits);
  if (unit == "ms") return milliseconds(n);
  if (unit == "s" || unit.empty()) return milliseconds(n * 1000);
  if (unit == "min") return milliseconds(n * 60000);
  if (unit == "h") return milliseconds(n * 3600000);
  if (unit == "d") return milliseconds(n * 86400000);
  return std::nullopt;
}

int64_t MillisUntil(std::chrono::steady_clock::time_point t,
                    std::chrono::steady_clock::time_point now) {
  if (t <= now) return 0;
  return duration_cast<milliseconds>(t - now).count() + 1;
}

}  // namespace

const char* SlotStateName(SlotState s) {
  switch (s) {
    case SlotState::kStarting:
      return "starting";
    case SlotState::kConnecting:
      return "connecting";
    case SlotState::kStreaming:
      return "streaming";
    case SlotState::kWaitingForSink:
      return "waiting for sink";
    case SlotState::kPaused:
      return "paused: waiting for sink";
    case SlotState::kReconnecting:
      return "reconnecting";
    case SlotState::kStopping:
      return "stopping";
    case SlotState::kStopped:
      return "stopped";
    case SlotState::kDone:
      return "done";
    case SlotState::kFailed:
      return "failed";
    case SlotState::kInvalidated:
      return "invalidated";
  }
  return "unknown";
}

SlotWorker::SlotWorker(SlotConfig config, Options options)
    : config_(std::move(config)), options_(std::move(options)) {
  if (!options_.make_sink) {
    options_.make_sink = [](const SlotConfig& c) { return MakeSink(c.sink); };
  }
  sink_ = options_.make_sink(config_);
  sink_description_ = sink_->Describe();
  whole_txns_ = sink_->KeepsState();
  formatter_ = MakeFormatter(config_);
  buffer_capacity_ = static_cast<size_t>(std::min<uint64_t>(config_.buffer_size, 1 << 20));
  buffer_ = OutBuffer(buffer_capacity_);
  Heartbeat();
}

SlotWorker::~SlotWorker() {
  RequestStop();
  Join();
}

void SlotWorker::Start() {
  started_ = true;
  Heartbeat();  // it may have waited since it was made
  thread_ = std::thread([this] { Run(); });
}

void SlotWorker::RequestStop() {
  stop_.store(true, std::memory_order_release);
  wakeup_.Notify();
}

void SlotWorker::RequestReopen() {
  reopen_.store(true, std::memory_order_release);
  wakeup_.Notify();
}

void SlotWorker::NoteInvalidated() {
  invalidated_.store(true, std::memory_order_release);
  wakeup_.Notify();
}

void SlotWorker::NoteServerWalPosition(Lsn lsn, Clock::time_point read_at) {
  reported_wal_position_.store(lsn, std::memory_order_relaxed);
  reported_at_ns_.store(read_at.time_since_epoch().count(), std::memory_order_release);
}

Lsn SlotWorker::ReportedReading() const {
  Clock::time_point at{Clock::duration(reported_at_ns_.load(std::memory_order_acquire))};
  if (at < session_began_) return kInvalidLsn;
  return reported_wal_position_.load(std::memory_order_relaxed);
}

void SlotWorker::Join() {
  if (thread_.joinable()) thread_.join();
}

std::string SlotWorker::last_error() const {
  MutexLock l(&last_error_mu_);
  return last_error_;
}

void SlotWorker::LogProgress(Clock::time_point now) {
  next_progress_log_ = now + kProgressEvery;
  if (!LogEnabled(spdlog::level::debug)) return;
  Lsn wal_end = stats_.server_wal_end.load(std::memory_order_relaxed);
  Event(spdlog::level::debug, nullptr, Acked(),
        "progress: received " + FormatLsn(received_) + ", durable " +
            FormatLsn(tracker_.flushed()) + ", acknowledged " + FormatLsn(Acked()) +
            (wal_end > Acked() ? ", lag " + std::to_string(wal_end - Acked()) + " bytes"
                               : std::string(", no lag")) +
            "; " + std::to_string(messages_) + " messages, sink " +
            stats_.sink_state.load(std::memory_order_relaxed));
}

void SlotWorker::Heartbeat() {
  stats_.heartbeat_ns.store(Clock::now().time_since_epoch().count(), std::memory_order_relaxed);
}

bool SlotWorker::SleepInterruptibly(milliseconds d) {
  auto until = Clock::now() + d;
  for (;;) {
    Heartbeat();
    if (stop_.load(std::memory_order_acquire)) return false;
    auto now = Clock::now();
    if (now >= until) return true;
    struct pollfd pfd = {wakeup_.fd(), POLLIN, 0};
    int wait = static_cast<int>(std::min<int64_t>(MillisUntil(until, now), 1000));
    if (::poll(&pfd, 1, wait) > 0) wakeup_.Drain();
  }
}

void SlotWorker::Event(Level level, const char* message_id, Lsn lsn, const std::string& message) {
  Log(level, LogEvent{config_.name, lsn, message_id, {}}, message);
}

void SlotWorker::Run() {
  // The slot's name, as far as a thread name holds (15 bytes): what top -H,
  // ps -L and gdb show, so that a stuck thread is known by its slot.
  ::pthread_setname_np(::pthread_self(), config_.name.substr(0, 15).c_str());
  milliseconds backoff = kBackoffMin;
  Event(spdlog::level::info, msgid::kSlotStarted, kInvalidLsn,
        "started: plugin " + config_.plugin + " into " + sink_->Describe());
  Status result;
  if (Status s = sink_->Open(); !s.ok()) {
    // Not fatal by itself: the sink is opened again before each session.
    Event(spdlog::level::warn, nullptr, kInvalidLsn, sink_->Describe() + ": " + s.message());
    if (s.code() == Status::Code::kSlotFatal) result = s;
  }
  while (result.ok() && !stop_.load(std::memory_order_acquire)) {
    auto started = Clock::now();
    ReplicationConn conn(wakeup_.fd(), &stop_, &stats_.heartbeat_ns);
    Status s = Session(&conn);
    conn.Close();
    if (s.code() == Status::Code::kStopped) break;
    if (s.code() == Status::Code::kWouldBlock && restart_session_) {
      GiveMemoryBack();
      continue;
    }
    if (s.code() == Status::Code::kWouldBlock) {  // paused for the sink
      Status ws = WaitForSink();
      if (ws.code() == Status::Code::kStopped) break;
      if (ws.ok()) {
        backoff = kBackoffMin;
        continue;  // stream again, at once
      }
      if (ws.code() != Status::Code::kRetryable) {
        result = ws;
        break;
      }
      s = ws;
    }
    if (s.ok()) {  // reached --end-lsn
      stats_.state.store(SlotState::kDone);
      Event(spdlog::level::info, msgid::kSlotStopped, Acked(),
            "reached end position " + FormatLsn(*options_.end_lsn) + "; flushed " +
                FormatLsn(Acked()));
      break;
    }
    if (s.code() != Status::Code::kRetryable) {
      result = s;
      break;
    }
    stats_.state.store(SlotState::kReconnecting);
    stats_.reconnects.fetch_add(1, std::memory_order_relaxed);
    {
      MutexLock l(&last_error_mu_);
      last_error_ = s.message();
    }
    if (Clock::now() - started >= kStableSession) backoff = kBackoffMin;
    Event(spdlog::level::warn, msgid::kReconnecting, Acked(),
          s.message() + "; reconnecting in " + std::to_string(backoff.count()) + " ms" +
              (Acked() != kInvalidLsn ? " from " + FormatLsn(Acked()) : ""));
    auto retry_at = Clock::now() + backoff;
    if (Status ss = Settle(retry_at); !ss.ok()) {
      result = ss;
      break;
    }
    auto left = std::chrono::duration_cast<milliseconds>(retry_at - Clock::now());
    if (!SleepInterruptibly(std::max(left, milliseconds(0)))) break;
    backoff = std::min(backoff * 2, kBackoffMax);
  }
  Status cs = sink_->Close();
  if (!cs.ok() && result.ok()) result = cs.Prefixed(sink_->Describe());
  stats_.flushed_lsn.store(Acked());
  stats_.sink_state.store("closed");
  if (!result.ok()) {
    {
      MutexLock l(&last_error_mu_);
      last_error_ = result.message();
    }
    stats_.state.store(SlotState::kFailed);
    if (result.code() == Status::Code::kProcessFatal) {
      Event(spdlog::level::critical, msgid::kFatal, Acked(), result.message());
    } else {
      bool invalidated = result.code() == Status::Code::kSlotInvalidated;
      if (invalidated) stats_.state.store(SlotState::kInvalidated);
      Event(spdlog::level::err, invalidated ? msgid::kSlotInvalidated : msgid::kSlotFailed, Acked(),
            result.message() + "; this slot has stopped (the others go on)");
    }
  } else if (stats_.state.load() != SlotState::kDone) {
    stats_.state.store(SlotState::kStopped);
    Event(spdlog::level::info, msgid::kSlotStopped, Acked(),
          Acked() != kInvalidLsn ? "stopped cleanly; flushed " + FormatLsn(Acked())
                                 : std::string("stopped cleanly before streaming"));
  }
  error_ = result;
  finished_.store(true, std::memory_order_release);
  if (options_.on_exit) options_.on_exit();
}

// After a retryable failure: make durable what the sink accepted, let a pipe
// reader take what it can until `until`, then cut the sink back to the last
// acknowledged boundary and forget the rest (the server sends it again).
Status SlotWorker::Settle(Clock::time_point until) {
  // A sink that cannot take bytes back (stdout, a pipe with its reader)
  // must not be left with half a message: finish the one it is in, so that
  // the re-sent messages start on a boundary.
  if (!sink_->CanRetract()) {
    uint64_t boundary = tracker_.NextBoundary(sink_->accepted());
    while (sink_->accepted() < boundary && !buffer_.empty() && Clock::now() < until &&
           !stop_.load(std::memory_order_acquire)) {
      Heartbeat();
      size_t n = 0;
      size_t want =
          static_cast<size_t>(std::min<uint64_t>(boundary - sink_->accepted(), buffer_.size()));
      Status ws = sink_->Write(buffer_.data(), want, &n);
      buffer_.Consume(n);
      if (ws.code() == Status::Code::kWouldBlock) {
        Sink::Wait w = sink_->WaitSpec();
        struct pollfd pfd = {w.fd, w.events, 0};
        ::poll(&pfd, w.fd >= 0 ? 1 : 0, static_cast<int>(std::min<int64_t>(w.retry.count(), 100)));
      } else if (!ws.ok()) {
        break;
      }
    }
  }
  Status s = sink_->Sync();
  while (s.ok() && sink_->durable() < sink_->accepted() && sink_->RecheckAfter().count() > 0 &&
         Clock::now() < until && !stop_.load(std::memory_order_acquire)) {
    Heartbeat();
    ::poll(nullptr, 0, 20);
    s = sink_->Sync();
  }
  if (s.code() == Status::Code::kProcessFatal) return s;
  tracker_.Advance(sink_->durable());
  // A file is cut back to the last acknowledged boundary; what a stream
  // sink has taken stays taken (the re-sent copy follows: at-least-once).
  uint64_t keep = sink_->CanRetract() ? tracker_.SafeOffset() : sink_->accepted();
  if (whole_txns_) {
    // Record what is durable and whole; the file keeps exactly what its
    // record says (and the next session starts from there).
    if (s.ok()) {
      Status cs = Checkpoint(Clock::now(), true);
      if (!cs.ok() && cs.code() != Status::Code::kRetryable) return cs;
      if (!cs.ok()) {
        Event(spdlog::level::warn, nullptr, recorded_lsn_,
              cs.message() + "; cutting the file back to its last record");
      }
    }
    keep = recorded_offset_;
  }
  Status ds = sink_->Discard(keep);
  if (!ds.ok()) {
    return Status::SlotFatal("cannot cut " + sink_->Describe() +
                             " back to its last acknowledged position (" + ds.message() +
                             "); stopping this slot rather than append after a torn tail");
  }
  buffer_.Clear();
  if (whole_txns_) {
    tracker_.Restart(keep, recorded_lsn_);
  } else {
    tracker_.Reset(keep);
  }
  stats_.oldest_pending_ns.store(0, std::memory_order_relaxed);
  last_mark_offset_ = keep;
  has_pending_ = false;
  owing_ = false;  // the formatter is Reset before the next stream
  unsynced_ = false;
  reply_due_ = false;
  stats_.flushed_lsn.store(Acked());
  return Status::Ok();
}

Status SlotWorker::Session(ReplicationConn* conn) {
  stats_.state.store(SlotState::kConnecting);
  conn->set_error_context(ErrorContext{config_.name, config_.plugin, "", created_here_});
  Lsn start = kInvalidLsn;
  Status s = Prepare(conn, &start);
  if (!s.ok()) return conn->WithSlotCondition(s, config_.name);
  if (options_.end_lsn && Acked() >= *options_.end_lsn) return Status::Ok();
  formatter_->Reset();  // a new stream: no relation cache, no open transaction
  conn->set_error_context(ErrorContext{config_.name, config_.plugin, "", created_here_});
  s = conn->StartCopy(BuildStartReplication(config_.name, start, config_.options),
                      Clock::now() + kConnectTimeout);
  if (!s.ok()) return conn->WithSlotCondition(s, config_.name).Prefixed("START_REPLICATION");
  created_here_ = false;  // it streams: from here on it is an ordinary slot
  if (!announced_) {
    Event(spdlog::level::info, msgid::kConnected, start,
          "streaming from " + FormatLsn(start) + " into " + sink_->Describe() + " (plugin " +
              config_.plugin + ", connection " + RedactConninfo(config_.connection) + ")");
    announced_ = true;
  } else {
    Event(spdlog::level::info, msgid::kConnected, start,
          "streaming again from " + FormatLsn(start));
  }
  stats_.state.store(SlotState::kStreaming);
  s = conn->WithSlotCondition(Stream(conn), config_.name);
  if (LogEnabled(spdlog::level::debug)) {
    Event(spdlog::level::debug, nullptr, Acked(),
          "session ended (" + (s.ok() ? std::string("end position reached") : s.message()) +
              "): started at " + FormatLsn(start) + ", received up to " + FormatLsn(received_) +
              ", acknowledged " + FormatLsn(Acked()));
  }
  return s;
}

Status SlotWorker::Prepare(ReplicationConn* conn, Lsn* start) {
  std::vector<std::pair<std::string, std::string>> params;
  std::string err;
  if (!BuildReplicationParams(config_.connection, config_.name, &params, &err)) {
    return Status::SlotFatal("invalid connection string: " + err);
  }
  auto deadline = Clock::now() + kConnectTimeout;
  Status s = conn->Connect(params, deadline);
  if (!s.ok()) return s.Prefixed("cannot connect (" + RedactConninfo(config_.connection) + ")");
  if (Status so = sink_->Open(); !so.ok()) return so.Prefixed(sink_->Describe());

  session_began_ = Clock::now();  // readings taken before prove nothing here
  Result<Rows> ident = conn->Query("IDENTIFY_SYSTEM", deadline);
  if (!ident.ok()) return ident.status().Prefixed("IDENTIFY_SYSTEM");
  if (ident.value().empty() || ident.value()[0].size() < 4 || ident.value()[0][3].empty()) {
    return Status::SlotFatal(
        "the connection is not bound to a database (replication=database did not take)");
  }
  const std::string dbname = ident.value()[0][3];
  // The server answers a ping only between two of its own steps; while it
  // decodes a long run of changes it sends nothing it was not asked for
  // for up to wal_sender_timeout/2. A receive_timeout below the server's
  // own timeout is raised to it, so a busy server is not taken for dead.
  receive_timeout_ = config_.receive_timeout;
  if (receive_timeout_.count() > 0) {
    Result<Rows> shown = conn->Query("SHOW wal_sender_timeout", deadline);
    if (shown.ok() && !shown.value().empty() && !shown.value()[0].empty()) {
      std::optional<milliseconds> server = ParseServerDuration(shown.value()[0][0]);
      if (server && *server > receive_timeout_) {
        receive_timeout_ = *server;
        Event(spdlog::level::info, nullptr, kInvalidLsn,
              "receive_timeout " + std::to_string(config_.receive_timeout.count()) +
                  " ms is below the server's wal_sender_timeout (" + shown.value()[0][0] +
                  "): using " + std::to_string(receive_timeout_.count()) + " ms");
      }
    }
  }
  const std::string system_id = ident.value()[0][0];

  const std::string lookup =
      "SELECT slot_type, plugin, database, wal_status, confirmed_flush_lsn "
      "FROM pg_catalog.pg_replication_slots WHERE slot_name = " +
      QuoteLiteral(config_.name);
  Result<Rows> found = conn->Query(lookup, deadline);
  if (!found.ok()) return found.status().Prefixed("looking up the slot");
  if (found.value().empty()) {
    if (!config_.create) {
      return Status::SlotFatal(
          "replication slot \"" + config_.name +
          "\" does not exist in the server (set create: true to have pgslotd create it)");
    }
    Result<Rows> created =
        conn->Query(BuildCreateSlot(config_.name, config_.plugin) + " (SNAPSHOT 'nothing')",
                    deadline, SessionStep::kCreateSlot);
    if (created.ok()) {
      created_here_ = true;
      conn->set_error_context(ErrorContext{config_.name, config_.plugin, "", true});
      Event(spdlog::level::info, nullptr, kInvalidLsn,
            "created logical replication slot with plugin " + config_.plugin + " in database " +
                dbname);
    }
    // A failure may be another process creating it first: look again.
    found = conn->Query(lookup, deadline);
    if (!found.ok()) return found.status().Prefixed("looking up the slot");
    if (found.value().empty()) {
      return created.ok() ? Status::Retryable("the slot vanished right after creation")
                          : created.status().Prefixed("creating the slot");
    }
  }
  // The server's WAL end now, after the slot was read (a slot created just
  // now is ahead of the first IDENTIFY_SYSTEM): no position the slot or a
  // state record names may be beyond it.
  Result<Rows> now = conn->Query("IDENTIFY_SYSTEM", deadline);
  if (!now.ok()) return now.status().Prefixed("IDENTIFY_SYSTEM");
  std::optional<Lsn> xlogpos;
  if (!now.value().empty() && now.value()[0].size() >= 3) xlogpos = ParseLsn(now.value()[0][2]);
  if (!xlogpos) return Status::Retryable("IDENTIFY_SYSTEM gave no readable xlogpos");
  position_.Reset(*xlogpos);
  position_.Note(ReportedReading());
  const std::vector<std::string>& row = found.value()[0];
  if (row[0] != "logical") {
    return Status::SlotFatal("replication slot \"" + config_.name + "\" is a " + row[0] +
                             " slot, not a logical one");
  }
  if (row[1] != config_.plugin) {
    return Status::SlotFatal("replication slot \"" + config_.name + "\" uses plugin " + row[1] +
                             " but the config says " + config_.plugin);
  }
  if (row[2] != dbname) {
    return Status::SlotFatal("replication slot \"" + config_.name + "\" belongs to database " +
                             row[2] + " but the connection is to database " + dbname);
  }
  if (row[3] == "lost") {
    return Status::SlotInvalidated("replication slot \"" + config_.name +
                                   "\" has been invalidated by the server (wal_status lost): the "
                                   "changes it held are gone and an operator must recreate it");
  }
  std::optional<Lsn> confirmed;
  if (!row[4].empty()) {
    confirmed = ParseLsn(row[4]);
    if (!confirmed) return Status::Retryable("unreadable confirmed_flush_lsn " + row[4]);
    if (*confirmed > *xlogpos) {
      return Status::SlotFatal("replication slot \"" + config_.name + "\" says it has confirmed " +
                               FormatLsn(*confirmed) + ", beyond the server's WAL end " +
                               FormatLsn(*xlogpos) +
                               ": it was acknowledged past what the server has written (a forged "
                               "position, or a server restored from a backup); nothing streamed "
                               "from it could be trusted, so an operator must recreate it");
    }
  }
  skip_floor_ = kInvalidLsn;
  if (whole_txns_) {
    std::string note;
    bool warn = false;
    Sink::StateKey key{config_.state_directory + "/" + config_.name + ".state", system_id,
                       config_.name, confirmed.value_or(kInvalidLsn)};
    Result<Lsn> recorded = sink_->Recover(key, &note, &warn);
    if (!recorded.ok()) return recorded.status();
    if (!note.empty()) {
      Event(warn ? spdlog::level::warn : spdlog::level::info, nullptr, kInvalidLsn, note);
    }
    if (recorded.value() > *xlogpos) {
      return Status::SlotFatal(
          "the state record " + key.file + " says " + sink_->Describe() + " holds changes up to " +
          FormatLsn(recorded.value()) + ", beyond the server's WAL end " + FormatLsn(*xlogpos) +
          ": the record is not this server's (or the server was restored from a backup); nothing "
          "is skipped or acknowledged on its strength (move the file and its record aside to start "
          "again from the slot's position)");
    }
    if (recorded.value() != kInvalidLsn) {
      tracker_.Restart(sink_->accepted(), recorded.value());
      recorded_lsn_ = recorded.value();
      recorded_offset_ = sink_->accepted();
      skip_floor_ = recorded.value();
    } else {
      if (confirmed) tracker_.SetFloor(*confirmed);
      // A first record at once: from here on, a crash finds the file's
      // size and position.
      recorded_lsn_ = kInvalidLsn;
      recorded_offset_ = sink_->accepted();
      tracker_.Restart(sink_->accepted(), tracker_.flushed());
      if (Status cs = Checkpoint(Clock::now(), true); !cs.ok()) return cs;
    }
  } else {
    if (confirmed) tracker_.SetFloor(*confirmed);
    if (tracker_.flushed() > *xlogpos) ForgetEarlierServer(*xlogpos, confirmed);
  }
  *start = tracker_.flushed();
  received_ = std::max(received_, *start);
  stats_.flushed_lsn.store(Acked());
  return Status::Ok();
}

// A stream sink's acknowledgement from an earlier session is beyond this
// server's WAL end: the session before was with another server (a failover
// to one that is behind, a restore), or this one lost the end of its WAL.
// Starting from it would have the server skip what it writes up to there,
// so the slot starts from the server's own position instead: what the sink
// took after it may come again (a stream sink is at-least-once), nothing is
// skipped.
void SlotWorker::ForgetEarlierServer(Lsn wal_end, const std::optional<Lsn>& confirmed) {
  Lsn from = confirmed.value_or(kInvalidLsn);
  Event(spdlog::level::warn, nullptr, from,
        "acknowledged up to " + FormatLsn(tracker_.flushed()) +
            " in an earlier session, beyond this server's WAL end " + FormatLsn(wal_end) +
            " (another server, or one that lost the end of its WAL): streaming from the slot's "
            "own position " +
            FormatLsn(from) + " instead; changes after it may come again, none is skipped");
  tracker_.Restart(tracker_.SafeOffset(), from);
  received_ = from;
}

Status SlotWorker::HandleMessage(const char* buf, int len) {
  ServerMessage m;
  Status s = ParseServerMessage(buf, static_cast<size_t>(len), &m);
  if (!s.ok()) return s;
  const std::optional<Lsn>& end = options_.end_lsn;
  position_.Note(ReportedReading());
  if (m.kind == ServerMessage::Kind::kXLogData) {
    if (end && m.data_start > *end) {
      reached_end_ = true;
      return Status::Ok();
    }
    if (position_.NeedsReading(m.data_start)) {
      if (Status s = CheckClaim(m.data_start, "a change"); !s.ok()) return s;
    }
    uint64_t before = appended();
    bool was_in = formatter_->InTransaction();
    Status fs = m.payload.size() >= kWriteThrough && formatter_->PassesThrough()
                    ? WriteThrough(m.payload)
                    : formatter_->Format(m.payload, m.data_start, &buffer_);
    if (!fs.ok()) return fs;
    largest_message_ = std::max<uint64_t>(largest_message_, m.payload.size());
    received_ = std::max(received_, m.data_start);
    ++messages_;
    if (!was_in) unit_start_ = before;
    if (formatter_->Owes()) {
      // A commit replayed in pieces: what came before is safe at `before`;
      // this message counts only once all of its output is appended, and no
      // mark may fall inside that output (a cut-back there would keep half a
      // transaction).
      if (has_pending_) {
        last_mark_offset_ = before;
        tracker_.AddMark(before, pending_lsn_, Clock::now());
        has_pending_ = false;
      }
      owing_ = true;
      owed_lsn_ = m.data_start;
      return Status::Ok();
    }
    bool unit_done = whole_txns_ && !formatter_->InTransaction();
    if (unit_done) {
      Result<bool> dropped =
          SkipIfWritten(unit_start_, m.data_start, formatter_->EndedTransaction());
      if (!dropped.ok()) return dropped.status();
      if (dropped.value()) {
        if (end && m.data_start == *end) reached_end_ = true;
        return Status::Ok();
      }
    }
    // A message outside any transaction (a non-transactional logical
    // message) is known by its own start, which the server sends again
    // when restarted exactly there: a file records the position just past
    // it, so it is written once.
    Lsn unit_lsn = unit_done && !formatter_->EndedTransaction() ? m.data_start + 1 : m.data_start;
    if (!has_pending_) {
      has_pending_ = true;
      pending_lsn_ = unit_lsn;
    } else {
      pending_lsn_ = std::max(pending_lsn_, unit_lsn);
    }
    if (end && m.data_start == *end) reached_end_ = true;
    // Between transactions, a mark for each one: the places a file may be
    // cut back to and its state record may name.
    if (unit_done) PushDataMark(turn_now_);
    return Status::Ok();
  }
  // Keepalive: everything the server decoded before m.wal_end has reached
  // us; once the bytes before this point are durable, it may be
  // acknowledged, as far as the server's position is proven.
  if (position_.NeedsReading(m.wal_end)) {
    if (Status s = CheckClaim(m.wal_end, "a keepalive"); !s.ok()) return s;
  }
  auto now = Clock::now();
  PushDataMark(now);
  Lsn claim = end ? std::min(m.wal_end, *end) : m.wal_end;
  Lsn ackable = position_.Cap(claim);
  if (m.reply_requested && ackable < claim) {
    if (Status s = AnswerReplyRequest(claim, now); !s.ok()) return s;
    ackable = position_.Cap(claim);
  }
  // Inside a transaction, this point is not one a file may be cut back to;
  // the commit brings its own, higher, mark.
  if (!whole_txns_ || AtBoundary()) {
    tracker_.AddMark(appended(), ackable, now);
    keepalive_ = KeepaliveClaim{claim, appended(), ackable};
  }
  received_ = std::max(received_, m.wal_end);
  stats_.server_wal_end.store(m.wal_end, std::memory_order_relaxed);
  if (m.reply_requested) reply_due_ = true;
  if (end && m.wal_end >= *end) reached_end_ = true;
  return Status::Ok();
}

void SlotWorker::FollowReadings(Clock::time_point now) {
  position_.Note(ReportedReading());
  // An idle slot's last keepalive was capped at the reading of its time; a
  // newer reading lets it go further, as long as nothing came after it.
  if (keepalive_.claim <= keepalive_.acked || appended() != keepalive_.offset ||
      (whole_txns_ && !AtBoundary())) {
    return;
  }
  Lsn cap = position_.Cap(keepalive_.claim);
  if (cap <= keepalive_.acked) return;
  tracker_.AddMark(keepalive_.offset, cap, now);
  keepalive_.acked = cap;
}

// A logical walsender whose server shuts down (fast or smart) reads to the
// end of the WAL, sends that position, asks for a reply, and exits only once
// the position is acknowledged: it asks again after every reply. When WAL
// was written since the last reading (another database's, the server's own
// records), no reading proves that position, and a server that is shutting
// down takes no new connection to read it on. Left capped, the
// acknowledgement would hold the server's shutdown for ever; so the session
// ends instead: at once when the server refuses the reading with 57P03
// (cannot connect now), and after kReplyRequestsUnanswered when readings
// keep failing otherwise (a proxy in the way, a timeout) while the requests
// keep coming. The walsender exits, the server stops, and the next session
// starts from what was acknowledged. An honest server asks for a reply only
// every wal_sender_timeout / 2 otherwise, so a failed reading then (which
// the monitor's next one makes good) ends nothing.
Status SlotWorker::AnswerReplyRequest(Lsn claim, Clock::time_point now) {
  if (now < next_reply_reading_) return Status::Ok();
  std::string sqlstate;
  Result<Lsn> reading = ReadServerWalPosition(kReplyReadingTimeout, &sqlstate);
  next_reply_reading_ = Clock::now() + kReplyReadingEvery;
  if (reading.ok()) {
    position_.Note(reading.value());
    reply_readings_failing_since_.reset();
    return Status::Ok();
  }
  if (reading.status().code() == Status::Code::kStopped) return reading.status();
  if (!reply_readings_failing_since_ || now - last_failed_reply_reading_ > kReplyRequestsApart) {
    reply_readings_failing_since_ = now;
  }
  last_failed_reply_reading_ = now;
  if (sqlstate != "57P03" && now - *reply_readings_failing_since_ < kReplyRequestsUnanswered) {
    return Status::Ok();
  }
  return Status::Retryable(
      "the server waits for position " + FormatLsn(claim) +
      " to be acknowledged, beyond the last reading of its WAL position (" +
      FormatLsn(position_.proven()) + "), and reading it again failed (" +
      reading.status().message() +
      "): the session ends so that the server can shut down; nothing after the last "
      "acknowledged position is lost");
}

Result<Lsn> SlotWorker::ReadServerWalPosition(Clock::duration timeout, std::string* sqlstate) {
  std::vector<std::pair<std::string, std::string>> params;
  std::string err;
  if (!BuildMonitorParams(config_.connection, &params, &err)) {
    return Status::SlotFatal("invalid connection string: " + err);
  }
  ReplicationConn plain(wakeup_.fd(), &stop_, &stats_.heartbeat_ns);
  auto deadline = Clock::now() + timeout;
  Status s = plain.Connect(params, deadline);
  if (!s.ok()) {
    if (sqlstate) *sqlstate = plain.last_error().sqlstate;
    return s;
  }
  Result<Rows> rows = plain.Query("SELECT pg_catalog.pg_current_wal_lsn()", deadline);
  if (!rows.ok()) {
    if (sqlstate) *sqlstate = plain.last_error().sqlstate;
    return rows.status();
  }
  std::optional<Lsn> lsn;
  if (!rows.value().empty() && !rows.value()[0].empty()) lsn = ParseLsn(rows.value()[0][0]);
  if (!lsn) return Status::Retryable("pg_current_wal_lsn() gave no position");
  return *lsn;
}

Status SlotWorker::CheckClaim(Lsn claim, const char* what) {
  Result<Lsn> reading = ReadServerWalPosition(std::chrono::seconds(10));
  if (reading.status().code() == Status::Code::kStopped) return reading.status();
  if (reading.ok()) position_.Note(reading.value());
  if (!position_.NeedsReading(claim)) return Status::Ok();
  std::string message =
      std::string(what) + " from the server names position " + FormatLsn(claim) +
      ", more than 1 GiB beyond the server's WAL position as read on a plain connection (" +
      (reading.ok() ? "pg_current_wal_lsn() " + FormatLsn(reading.value())
                    : "unreadable: " + reading.status().message()) +
      "): nothing is acknowledged on its strength; the session ends";
  return Status::Retryable(message);
}

void SlotWorker::PushDataMark(Clock::time_point now) {
  if (!has_pending_ || (whole_txns_ && !AtBoundary())) return;
  last_mark_offset_ = appended();
  tracker_.AddMark(last_mark_offset_, pending_lsn_, now);
  has_pending_ = false;
}

Status SlotWorker::WriteToSink(const char* data, size_t len, size_t* n, Clock::time_point now) {
  *n = 0;
  Status s = sink_->Write(data, len, n);
  if (*n > 0) {
    stats_.bytes.fetch_add(*n, std::memory_order_relaxed);
    if (!unsynced_) {
      unsynced_ = true;
      unsynced_since_ = now;
    }
  }
  return s;
}

Status SlotWorker::WriteOut(Clock::time_point now) {
  while (!buffer_.empty()) {
    size_t n = 0;
    Status s = WriteToSink(buffer_.data(), buffer_.size(), &n, now);
    buffer_.Consume(n);
    if (!s.ok()) return s;
  }
  return Status::Ok();
}

Status SlotWorker::WriteThrough(std::string_view payload) {
  size_t done = 0;
  Status s = WriteOut(turn_now_);
  if (s.ok()) s = WriteToSink(payload.data(), payload.size(), &done, turn_now_);
  if (!s.ok() && s.code() != Status::Code::kWouldBlock) return s.Prefixed(sink_->Describe());
  buffer_.Append(payload.data() + done, payload.size() - done);
  buffer_.Append('\n');
  formatter_->Frame(payload);
  return Status::Ok();
}

Status SlotWorker::SyncSink(Clock::time_point now, bool force) {
  bool costly = sink_->SyncIsCostly();
  Status s;
  bool synced = false;
  if (!costly || force || config_.fsync_interval.count() == 0 ||
      (unsynced_ && now - unsynced_since_ >= config_.fsync_interval)) {
    s = sink_->Sync();
    synced = costly && s.ok();
    if (s.ok() && !sink_->SyncIsCostly()) unsynced_ = false;
  }
  tracker_.Advance(sink_->durable());
  // Right after a sync, the record follows at once (group commit: one
  // record per sync); a position moved only by keepalives is recorded at
  // most once per fsync_interval.
  if (s.ok() && whole_txns_) s = Checkpoint(now, force || synced);
  stats_.flushed_lsn.store(Acked(), std::memory_order_relaxed);
  return s;
}

Status SlotWorker::Checkpoint(Clock::time_point now, bool force) {
  if (!whole_txns_) return Status::Ok();
  Lsn lsn = tracker_.flushed();
  uint64_t offset = tracker_.SafeOffset();
  if (lsn == kInvalidLsn || (lsn == recorded_lsn_ && offset == recorded_offset_)) {
    return Status::Ok();
  }
  if (!force && config_.fsync_interval.count() > 0 &&
      now - last_checkpoint_ < config_.fsync_interval) {
    return Status::Ok();
  }
  Status s = sink_->Checkpoint(offset, lsn);
  if (!s.ok()) return s.Prefixed(sink_->Describe());
  recorded_lsn_ = lsn;
  recorded_offset_ = offset;
  last_checkpoint_ = now;
  return Status::Ok();
}

Status SlotWorker::DropSince(uint64_t start) {
  uint64_t accepted = sink_->accepted();
  if (start >= accepted) {
    buffer_.Truncate(static_cast<size_t>(start - accepted));
  } else {
    buffer_.Clear();
    Status s = sink_->Discard(start);
    if (!s.ok()) return s.Prefixed(sink_->Describe());
    tracker_.Truncate(start);
  }
  last_mark_offset_ = std::min(last_mark_offset_, start);
  has_pending_ = false;
  return Status::Ok();
}

Result<bool> SlotWorker::SkipIfWritten(uint64_t start, Lsn lsn, bool ended) {
  // Only commits are compared: they arrive in the order of their positions
  // (the end of the commit record, the same in every copy), so the first
  // one past the recorded position ends the check. Other units (a message
  // outside a transaction, a streamed block, a change of a plugin without
  // framing) have positions that need not grow, and the server does not
  // send them again below the start position anyway.
  if (skip_floor_ == kInvalidLsn || !ended) return false;
  if (lsn > skip_floor_) {
    skip_floor_ = kInvalidLsn;
    return false;
  }
  Status s = DropSince(start);
  if (!s.ok()) return s;
  if (skipped_++ == 0) {
    Event(spdlog::level::warn, nullptr, lsn,
          "the server sent again a transaction ending at " + FormatLsn(lsn) + ", at or below " +
              FormatLsn(skip_floor_) + " which " + sink_->Describe() +
              " already holds; it is not written twice");
  }
  return true;
}

Status SlotWorker::SwitchFile(Clock::time_point now) {
  switch_now_ = false;
  Status s = SyncSink(now, true);
  if (!s.ok()) return s;
  if (!AtBoundary() || !buffer_.empty() || tracker_.SafeOffset() != sink_->accepted() ||
      recorded_offset_ != sink_->accepted()) {
    // Not everything written is recorded yet: try again a little later.
    switch_retry_at_ = now + std::chrono::seconds(1);
    return Status::Ok();
  }
  bool reopen = reopen_pending_;
  s = reopen ? sink_->Reopen() : sink_->Rotate();
  if (!s.ok()) return s.Prefixed(sink_->Describe());
  reopen_pending_ = false;
  // The record now names the new file, at the same position.
  if (recorded_lsn_ != kInvalidLsn) {
    s = sink_->Checkpoint(recorded_offset_, recorded_lsn_);
    if (!s.ok()) return s.Prefixed(sink_->Describe());
    last_checkpoint_ = now;
  }
  Event(spdlog::level::info, nullptr, recorded_lsn_,
        (reopen ? "reopened " : "rotated: started a new ") + sink_->Describe() +
            (recorded_lsn_ != kInvalidLsn ? " at " + FormatLsn(recorded_lsn_) : std::string()));
  return Status::Ok();
}

Status SlotWorker::Stream(ReplicationConn* conn) {
  auto last_status = Clock::time_point();  // send one at once
  Lsn last_sent_flush = kInvalidLsn;
  bool flush_pending = false;
  reached_end_ = false;
  switch_now_ = false;
  skipped_ = 0;
  largest_message_ = 0;
  keepalive_ = KeepaliveClaim();
  last_received_ = Clock::now();
  ping_sent_ = false;
  bool wakeup_pending = true;
  ReadPacer pacer(Clock::now());
  for (;;) {
    Heartbeat();
    if (wakeup_pending) wakeup_.Drain();
    if (stop_.load(std::memory_order_acquire)) return Finish(conn, false);
    auto now = Clock::now();
    turn_now_ = now;
    FollowReadings(now);
    if (reopen_.exchange(false)) {
      if (whole_txns_) {
        reopen_pending_ = true;  // between transactions, below
      } else {
        Status s = SyncSink(now, true);
        if (s.ok()) s = sink_->Reopen();
        if (!s.ok()) return s.Prefixed(sink_->Describe());
        Event(spdlog::level::info, nullptr, kInvalidLsn, "reopened " + sink_->Describe());
      }
    }
    // An exactly-once file is rotated or reopened between transactions:
    // stop reading at a boundary, write and record everything, then switch.
    auto switch_due = [&] {
      return whole_txns_ && AtBoundary() && now >= switch_retry_at_ &&
             (reopen_pending_ || sink_->RotationDue(appended()));
    };
    if (!switch_now_ && switch_due()) switch_now_ = true;

    // 1. Drain everything libpq has, and read the socket again while it
    // keeps giving, up to a batch (or the memory limit): one write and one
    // poll per batch, not per message.
    // 0. A commit replayed in pieces comes first: one piece a turn, written
    // before the next, and no new message until it is all out.
    if (owing_ && buffer_.size() < config_.buffer_size) {
      size_t room = static_cast<size_t>(config_.buffer_size - buffer_.size());
      Status s = formatter_->Continue(&buffer_, std::min<size_t>(room, kWriteBatch));
      if (!s.ok()) return s;
      if (!formatter_->Owes()) {
        owing_ = false;
        Result<bool> dropped =
            whole_txns_ ? SkipIfWritten(unit_start_, owed_lsn_, formatter_->EndedTransaction())
                        : Result<bool>(false);
        if (!dropped.ok()) return dropped.status();
        if (!dropped.value()) {
          pending_lsn_ = has_pending_ ? std::max(pending_lsn_, owed_lsn_) : owed_lsn_;
          has_pending_ = true;
          PushDataMark(now);
        }
      }
    }
    uint64_t turn_bytes = 0;
    bool left_in_libpq = false;  // whole messages may wait in libpq, not in the socket
    if (!owing_ && !reached_end_ && !switch_now_ && buffer_.size() < config_.buffer_size) {
      for (;;) {
        Status s = conn->ConsumeInput();
        if (!s.ok()) return s;
        bool got = false;
        for (;;) {
          char* buf = nullptr;
          int len = 0;
          s = conn->GetCopyData(&buf, &len);
          if (!s.ok()) return s;
          if (len == 0) break;
          got = true;
          turn_bytes += static_cast<uint64_t>(len);
          s = HandleMessage(buf, len);
          PQfreemem(buf);
          if (!s.ok()) return s;
          if (switch_due()) switch_now_ = true;
          if (owing_ || reached_end_ || switch_now_) break;
          if (buffer_.size() >= config_.buffer_size) {
            left_in_libpq = true;  // read on as soon as the buffer has room
            break;
          }
          if (appended() - last_mark_offset_ >= kMarkEvery) PushDataMark(now);
        }
        if (got) {
          last_received_ = now;
          ping_sent_ = false;
        }
        if (!got || owing_ || reached_end_ || switch_now_ ||
            buffer_.size() >= std::min(config_.buffer_size, kWriteBatch)) {
          break;
        }
      }
      PushDataMark(now);
    }
    pacer.Received(now, turn_bytes);

    // 2. Write the batch; 3. sync on schedule; 4. advance the ack.
    uint64_t taken_before = sink_->accepted();
    Status ws = WriteOut(now);
    bool sink_blocked = ws.code() == Status::Code::kWouldBlock;
    if (!ws.ok() && !sink_blocked) return ws.Prefixed(sink_->Describe());
    // A sink that takes nothing for sink_stall_timeout ends the stream: the
    // socket must not stay unread while the server may want to end its
    // walsender (see PauseStream).
    if (!sink_blocked || sink_->accepted() > taken_before) {
      blocked_since_ = Clock::time_point();
    } else if (blocked_since_ == Clock::time_point()) {
      blocked_since_ = now;
    } else if (config_.sink_stall_timeout.count() > 0 &&
               now - blocked_since_ >= config_.sink_stall_timeout) {
      return PauseStream(conn, now);
    }
    Status ss = SyncSink(now, reached_end_);
    if (!ss.ok()) return ss;
    if (switch_now_ && buffer_.empty()) {
      if (Status s = SwitchFile(now); !s.ok()) return s;
    }
    stats_.received_lsn.store(received_, std::memory_order_relaxed);
    stats_.messages.store(messages_, std::memory_order_relaxed);
    stats_.oldest_pending_ns.store(
        tracker_.HasPending() ? tracker_.OldestPending().time_since_epoch().count() : 0,
        std::memory_order_relaxed);
    stats_.state.store(sink_blocked ? SlotState::kWaitingForSink : SlotState::kStreaming,
                       std::memory_order_relaxed);
    stats_.durable_lsn.store(tracker_.flushed(), std::memory_order_relaxed);
    stats_.sink_state.store(sink_blocked      ? sink_->WaitSpec().reason
                            : buffer_.empty() ? "idle"
                                              : "writing",
                            std::memory_order_relaxed);
    if (now >= next_progress_log_) LogProgress(now);

    // 5. Tell the server: at once when asked or when the flush moved, and
    // at least every status_interval whatever the sink does.
    Lsn flushed = Acked();
    // A connection that went silent without a reset (a frozen proxy, a cut
    // cable): while we read, the server speaks at least every
    // receive_timeout/2 once asked to (a status update with a reply
    // requested); past receive_timeout it is taken for dead.
    bool reading = !owing_ && !reached_end_ && !switch_now_ && buffer_.size() < config_.buffer_size;
    bool ping = false;
    if (!reading || receive_timeout_.count() == 0) {
      last_received_ = now;
    } else if (now - last_received_ >= receive_timeout_) {
      return Status::Retryable(
          "no message from the server for " +
          std::to_string(duration_cast<milliseconds>(now - last_received_).count()) +
          " ms (receive_timeout): the connection seems dead");
    } else if (!ping_sent_ && now - last_received_ >= receive_timeout_ / 2) {
      ping = true;
      ping_sent_ = true;
    }
    if (ping || reply_due_ || flushed != last_sent_flush ||
        now - last_status >= config_.status_interval) {
      Status s = conn->SendStatus(std::max(received_, flushed), flushed, ping);
      if (!s.ok()) return s;
      reply_due_ = false;
      last_sent_flush = flushed;
      last_status = now;
    }
    if (Status s = conn->Flush(&flush_pending); !s.ok()) return s;

    // 6. --end-lsn: done once everything received is written and durable.
    // The acknowledged position is what the marks give, never the end
    // position itself: a commit that straddles it was not written.
    bool all_acknowledged = !owing_ && buffer_.empty() && sink_->durable() == sink_->accepted() &&
                            !tracker_.HasPending();
    if (reached_end_ && all_acknowledged) return Finish(conn, true);
    // 6b. After a large message, once nothing is owed: a new session, so
    // that libpq's input buffer, grown to the message's size, is freed.
    if (largest_message_ >= kReleaseAfter && all_acknowledged &&
        (!whole_txns_ || recorded_offset_ == sink_->accepted())) {
      EndStream(conn, Clock::now() + kFinishTimeout);
      restart_session_ = true;
      return Status::WouldBlock("restart");
    }

    // 7. Wait for the server, the sink, a timer or a wakeup.
    struct pollfd fds[3];
    int nfds = 0;
    fds[nfds++] = {wakeup_.fd(), POLLIN, 0};
    short pg_events = 0;
    if (!reached_end_ && buffer_.size() < config_.buffer_size) pg_events |= POLLIN;
    if (flush_pending) pg_events |= POLLOUT;
    fds[nfds++] = {conn->socket(), pg_events, 0};
    int64_t timeout = MillisUntil(last_status + config_.status_interval, now);
    timeout = std::min<int64_t>(timeout, 1000);
    if (!buffer_.empty()) {
      Sink::Wait w = sink_->WaitSpec();
      if (w.fd >= 0) {
        fds[nfds++] = {w.fd, w.events, 0};
      } else {
        timeout = std::min<int64_t>(timeout, w.retry.count());
      }
    }
    if (unsynced_ && sink_->SyncIsCostly()) {
      timeout = std::min(timeout, MillisUntil(unsynced_since_ + config_.fsync_interval, now));
    }
    if (auto r = sink_->RecheckAfter(); r.count() > 0)
      timeout = std::min<int64_t>(timeout, r.count());
    if (reading && receive_timeout_.count() > 0) {
      auto next = last_received_ + (ping_sent_ ? receive_timeout_ : receive_timeout_ / 2);
      timeout = std::min(timeout, MillisUntil(next, now));
    }
    if (blocked_since_ != Clock::time_point() && config_.sink_stall_timeout.count() > 0) {
      timeout = std::min(timeout, MillisUntil(blocked_since_ + config_.sink_stall_timeout, now));
    }
    if (switch_now_) timeout = 0;  // the switch waits for nothing
    if (owing_ && buffer_.size() < config_.buffer_size) timeout = 0;  // more to replay
    // Messages libpq holds do not wake poll: with room again, read them now.
    if (left_in_libpq && reading) timeout = 0;
    if (auto wait = pacer.Wait();
        wait.count() > 0 && reading && timeout > 0 && !flush_pending && !sink_blocked) {
      // A fast stream: let the socket gather a batch first (see
      // read_pacer.h). A wakeup (stop, reload) cuts the wait short.
      struct timespec ts = {0, static_cast<long>(wait.count())};
      if (::ppoll(fds, 1, &ts, nullptr) > 0) timeout = 0;
    }
    if (::poll(fds, nfds, static_cast<int>(timeout)) < 0 && errno != EINTR) {
      return Status::Retryable(ErrnoMessage("poll", errno));
    }
    wakeup_pending = fds[0].revents != 0;
    // Bytes arriving count as the server speaking, even before they make a
    // whole message (a large one over a slow link).
    if (fds[1].revents & POLLIN) {
      last_received_ = Clock::now();
      ping_sent_ = false;
    }
    if ((fds[1].revents & (POLLHUP | POLLERR)) && !(pg_events & POLLIN)) {
      // Not reading now (buffer full or at the end), but the connection is
      // gone: say so rather than poll on a dead socket forever.
      Status s = conn->ConsumeInput();
      return s.ok() ? Status::Retryable("the connection to the server was lost") : s;
    }
  }
}

// Clean end of a session: write and sync what we have, report exactly the
// durable position, end the copy and let the server finish its side.
Status SlotWorker::Finish(ReplicationConn* conn, bool end_reached) {
  stats_.state.store(SlotState::kStopping);
  auto deadline = Clock::now() + kFinishTimeout;
  // A stream sink that has half a message gets the rest, for as long as
  // its reader keeps taking bytes (a reader that holds the pipe without
  // reading is given up on after a second); one that has taken nothing of
  // the next message stops at once. --end-lsn waits for everything.
  auto idle_until = Clock::now() + kFinishIdle;
  for (;;) {
    uint64_t before = sink_->accepted();
    Status ws = WriteOut(Clock::now());
    if (ws.ok()) break;
    auto now = Clock::now();
    if (sink_->accepted() > before) idle_until = now + kFinishIdle;
    bool mid_message = !sink_->CanRetract() && !tracker_.IsBoundary(sink_->accepted());
    if (ws.code() != Status::Code::kWouldBlock || now >= deadline ||
        (!end_reached && (!mid_message || now >= idle_until))) {
      break;
    }
    Sink::Wait w = sink_->WaitSpec();
    struct pollfd pfd = {w.fd, w.events, 0};
    ::poll(&pfd, w.fd >= 0 ? 1 : 0, static_cast<int>(std::min<int64_t>(w.retry.count(), 100)));
  }
  Status ss = SyncSink(Clock::now(), true);
  if (!ss.ok()) {
    // --end-lsn promises everything up to the end is durable: try again.
    // A stop need not: what failed is not acknowledged and comes again on
    // the next start (a pipe whose reader left, a state record that could
    // not be written), so end the stream cleanly all the same.
    if (end_reached || ss.code() != Status::Code::kRetryable) return ss;
    Event(spdlog::level::warn, nullptr, Acked(),
          sink_->Describe() + ": " + ss.message() +
              " (not acknowledged: sent again on the next start)");
  }
  if (whole_txns_ && sink_->accepted() > recorded_offset_) {
    // Part of a transaction (cut by the stop or the end position) does not
    // stay in the file at rest; the next run writes it whole.
    buffer_.Clear();
    if (Status ds = sink_->Discard(recorded_offset_); !ds.ok()) {
      Event(spdlog::level::warn, nullptr, recorded_lsn_,
            sink_->Describe() + ": " + ds.message() + " (the next start cuts it instead)");
    }
    tracker_.Restart(sink_->accepted(), recorded_lsn_);
  }
  EndStream(conn, Clock::now() + kFinishTimeout);
  return end_reached ? Status::Ok() : Status::Stopped();
}

void SlotWorker::EndStream(ReplicationConn* conn, Clock::time_point deadline) {
  Lsn flushed = Acked();
  stats_.flushed_lsn.store(flushed);
  Status s = conn->SendStatus(std::max(received_, flushed), flushed, false);
  if (s.ok()) s = conn->EndCopy(deadline);
  if (!s.ok()) {
    Event(spdlog::level::warn, nullptr, flushed,
          "ending the stream: " + s.message() + " (flushed " + FormatLsn(flushed) +
              " stays acknowledged on the next start)");
  }
}

Status SlotWorker::PauseStream(ReplicationConn* conn, Clock::time_point now) {
  if (Status ss = SyncSink(now, true); !ss.ok()) return ss;
  Event(spdlog::level::warn, nullptr, Acked(),
        sink_->Describe() + " has taken nothing for " +
            std::to_string(duration_cast<milliseconds>(now - blocked_since_).count()) + " ms (" +
            sink_->WaitSpec().reason +
            "): pausing the stream, so that the server is never kept waiting on it; it streams "
            "again from " +
            FormatLsn(Acked()) + " once the sink takes bytes");
  stats_.state.store(SlotState::kStopping);
  EndStream(conn, Clock::now() + kFinishTimeout);
  blocked_since_ = Clock::time_point();
  return Status::WouldBlock("paused");
}

void SlotWorker::GiveMemoryBack() {
  restart_session_ = false;
  if (buffer_.empty() && buffer_.capacity() > buffer_capacity_)
    buffer_ = OutBuffer(buffer_capacity_);
  Event(spdlog::level::info, nullptr, Acked(),
        "a message of " + std::to_string(largest_message_ >> 20) +
            " MiB has passed: starting the session again from " + FormatLsn(Acked()) +
            " to give back the memory it took (libpq keeps its input buffer as large as the "
            "largest message for as long as a connection lasts)");
  largest_message_ = 0;
}

Status SlotWorker::WaitForSink() {
  stats_.state.store(SlotState::kPaused);
  // What the sink has half taken it must get whole (a reader never sees
  // half a line); every other byte not taken is dropped, and the server
  // sends it again from the acknowledged position.
  uint64_t taken = sink_->accepted();
  uint64_t keep = 0;
  if (!sink_->CanRetract() && !tracker_.IsBoundary(taken)) {
    keep = std::min<uint64_t>(tracker_.NextBoundary(taken) - taken, buffer_.size());
  }
  buffer_.Truncate(static_cast<size_t>(keep));
  tracker_.DropAbove(taken + keep);
  has_pending_ = false;
  owing_ = false;
  last_mark_offset_ = std::min(last_mark_offset_, taken + keep);
  for (;;) {
    Heartbeat();
    if (stop_.load(std::memory_order_acquire)) return Status::Stopped();
    if (invalidated_.load(std::memory_order_acquire)) {
      return Status::SlotInvalidated(
          "the server has invalidated slot \"" + config_.name +
          "\" while it was paused (wal_status lost, read by the monitor): the changes it held are "
          "gone; an operator must recreate it (drop it and create it again)");
    }
    if (reopen_.exchange(false)) {
      if (Status s = sink_->Reopen(); !s.ok()) return s.Prefixed(sink_->Describe());
    }
    Status s = buffer_.empty() ? sink_->Probe() : WriteOut(Clock::now());
    if (s.ok() && buffer_.empty()) break;
    if (!s.ok() && s.code() != Status::Code::kWouldBlock) return s.Prefixed(sink_->Describe());
    Sink::Wait w = sink_->WaitSpec();
    struct pollfd fds[2] = {{wakeup_.fd(), POLLIN, 0}, {w.fd, w.events, 0}};
    int wait = static_cast<int>(std::min<int64_t>(w.fd >= 0 ? 1000 : w.retry.count(), 1000));
    if (::poll(fds, w.fd >= 0 ? 2 : 1, wait) > 0 && fds[0].revents) wakeup_.Drain();
  }
  if (Status ss = SyncSink(Clock::now(), true); !ss.ok()) return ss;
  Event(spdlog::level::info, nullptr, Acked(),
        sink_->Describe() + " takes bytes again: streaming again from " + FormatLsn(Acked()));
  return Status::Ok();
}

}  // namespace pgslotd
