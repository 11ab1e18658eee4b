#include "slot/read_loop.h"

#include <poll.h>

#include <algorithm>
#include <cerrno>

#include "util/clock.h"
#include "util/log.h"

namespace pgslotd {

namespace {

using std::chrono::duration_cast;
using std::chrono::milliseconds;

constexpr milliseconds kFinishTimeout{5000};
// At a stop, how long a reader may take nothing before the rest of a
// message it has half taken is given up on.
constexpr milliseconds kFinishIdle{1000};
constexpr std::chrono::seconds kProgressEvery{10};
// How often the state directory is looked at for snapshot requests (besides
// the control socket's word).
constexpr std::chrono::seconds kRequestScanInterval{10};
// Bytes gathered before writing while the server keeps sending.
constexpr uint64_t kWriteBatch = 1 << 20;
// A raw message at least this large is written to the sink from libpq's
// buffer, not copied into the slot's.
constexpr size_t kWriteThrough = 1 << 20;
// After a message at least this large the session is started again, which
// gives back the memory libpq held for it.
constexpr uint64_t kReleaseAfter = 16 << 20;

}  // namespace

const char* StreamEndName(StreamEnd end) {
  switch (end) {
    case StreamEnd::kStopped:
      return "stopped";
    case StreamEnd::kEndReached:
      return "end position reached";
    case StreamEnd::kPausedForSink:
      return "paused for the sink";
    case StreamEnd::kRestart:
      return "restarting to give memory back";
  }
  return "ended";
}

ReadLoop::ReadLoop(SlotPipeline* pipeline, ClaimCheck* claims, Session session)
    : pipeline_(*pipeline),
      config_(pipeline->config()),
      writer_(pipeline->writer()),
      formatter_(pipeline->formatter()),
      policy_(pipeline->policy()),
      exactly_once_(pipeline->exactly_once()),
      stats_(*pipeline->stats()),
      claims_(*claims),
      session_(session),
      conn_(*session.conn),
      snapshot_(session.snapshot),
      pacer_(Clock::now()),
      last_received_(Clock::now()) {}

Result<StreamEnd> ReadLoop::Run() {
  for (;;) {
    pipeline_.Heartbeat();
    if (wakeup_pending_) session_.wakeup->Drain();
    if (session_.stop->load(std::memory_order_acquire)) return Finish(false);
    auto now = Clock::now();
    turn_now_ = now;
    // 0. Reopen or switch files; a commit replayed in pieces comes first.
    if (Status s = BeginTurn(now); !s.ok()) return s;
    if (Status s = ContinueOutput(now); !s.ok()) return s;
    // 1. Drain what libpq and the socket have, up to a batch.
    if (Status s = Drain(now); !s.ok()) return s;
    // 2. Write the batch; 3. sync on schedule; 4. let the ack follow.
    if (Status s = WriteAndSync(now); !s.ok()) return s;
    if (stalled_) return PauseStream(now);
    PublishStats(now);
    // 5. Tell the server.
    if (Status s = ReportToServer(now); !s.ok()) return s;
    // 6. The end position, or a restart after a large message.
    if (std::optional<Result<StreamEnd>> end = SessionEnds()) return *end;
    // 7. Wait for the server, the sink, a timer or a wakeup.
    if (Status s = WaitForEvents(now); !s.ok()) return s;
  }
}

ReadLoop::Hold ReadLoop::ReadHold() const {
  if (policy_.in_pieces()) return Hold::kReplaying;
  if (reached_end_) return Hold::kEndReached;
  if (switch_now_) return Hold::kSwitchingFile;
  if (writer_.buffered().size() >= config_.buffer_size) return Hold::kBufferFull;
  return Hold::kReading;
}

Status ReadLoop::BeginTurn(Clock::time_point now) {
  policy_.server().Note(Reading());
  policy_.FollowReadings(writer_.appended(), now);
  if (session_.reopen->exchange(false)) {
    if (exactly_once_) {
      exactly_once_->RequestReopen();  // between transactions, below
    } else {
      Status s = pipeline_.SyncSink(now, true);
      if (s.ok()) s = writer_.sink()->Reopen();
      if (!s.ok()) return s.Prefixed(writer_.sink()->Describe());
      pipeline_.Event(spdlog::level::info, nullptr, kInvalidLsn,
                      "reopened " + writer_.sink()->Describe());
    }
  }
  // An exactly-once file is rotated or reopened between transactions:
  // stop reading at a boundary, write and record everything, then switch.
  if (exactly_once_ && exactly_once_->SwitchDue(now)) switch_now_ = true;
  SnapshotTurn();
  return Status::Ok();
}

void ReadLoop::SnapshotTurn() {
  // Requests are looked for every 10 s too: a command that could not
  // reach the control socket says the daemon takes them at its start.
  if (session_.snapshot_wanted != nullptr && turn_now_ >= next_request_scan_) {
    session_.snapshot_wanted->store(true, std::memory_order_relaxed);
    next_request_scan_ = turn_now_ + kRequestScanInterval;
  }
  if (session_.snapshot_wanted != nullptr &&
      session_.snapshot_wanted->load(std::memory_order_relaxed) &&
      session_.snapshot_wanted->exchange(false, std::memory_order_acquire)) {
    snapshot_ = session_.take_snapshot_requests();
  }
  SnapshotDriver* snapshot = snapshot_;
  if (snapshot == nullptr) return;
  snapshot->StreamAt(pipeline_.received);
  // What a cut-back keeps: a file its record; a stream sink what it took.
  snapshot->Settled(exactly_once_ ? policy_.recorded().offset : writer_.sink()->accepted());
  if (session_.request_files != nullptr && session_.request_files->pending()) {
    std::vector<std::string> gone = session_.request_files->Settle(
        exactly_once_ != nullptr, exactly_once_ ? exactly_once_->records() : 0,
        snapshot->finished());
    if (!gone.empty()) snapshot->RequestFilesGone(gone);
  }
  bool between = !formatter_.InTransaction() && !formatter_.HasMoreOutput() &&
                 !policy_.in_pieces() && pipeline_.received != kInvalidLsn;
  if (!snapshot->Turn(session_.json, writer_.buffer(), between, turn_now_)) return;
  snapshot->Wrote(writer_.appended());
  // No position of their own: an exactly-once sink records them with the
  // position before them; otherwise the next message or keepalive the
  // policy is told of covers them, so nothing is acknowledged before they
  // are durable (and nothing beyond what the stream has proven).
  writer_.buffer()->MarkUnitEnd();
  policy_.Positionless(writer_.appended(), turn_now_);
}

Status ReadLoop::ContinueOutput(Clock::time_point now) {
  // One piece a turn, written before the next, and no new message until
  // it is all out.
  if (!policy_.in_pieces() || writer_.buffered().size() >= config_.buffer_size) {
    return Status::Ok();
  }
  size_t room = static_cast<size_t>(config_.buffer_size - writer_.buffered().size());
  Status s = formatter_.Continue(writer_.buffer(), std::min<size_t>(room, kWriteBatch));
  if (!s.ok() || formatter_.HasMoreOutput()) return s;
  s = OutputComplete(unfinished_lsn_);
  policy_.EndOfBatch(writer_.appended(), now);
  return s;
}

// Drains everything libpq has, and reads the socket again while it keeps
// giving, up to a batch (or the memory limit): one write and one poll per
// batch, not per message.
Status ReadLoop::Drain(Clock::time_point now) {
  uint64_t turn_bytes = 0;
  left_in_libpq_ = false;
  if (ReadHold() == Hold::kReading) {
    for (;;) {
      if (Status s = conn_.ConsumeInput(); !s.ok()) return s;
      bool got = false;
      for (;;) {
        char* buf = nullptr;
        int len = 0;
        if (Status s = conn_.GetCopyData(&buf, &len); !s.ok()) return s;
        if (len == 0) break;
        got = true;
        turn_bytes += static_cast<uint64_t>(len);
        Status s = HandleMessage(buf, len);
        PQfreemem(buf);
        if (!s.ok()) return s;
        if (exactly_once_ && exactly_once_->SwitchDue(now)) switch_now_ = true;
        Hold hold = ReadHold();
        // With room again, read on at once: libpq's messages do not wake poll.
        if (hold == Hold::kBufferFull) left_in_libpq_ = true;
        if (hold != Hold::kReading) break;
      }
      if (got) {
        last_received_ = now;
        ping_sent_ = false;
      }
      if (!got || ReadHold() != Hold::kReading ||
          writer_.buffered().size() >= std::min(config_.buffer_size, kWriteBatch)) {
        break;
      }
    }
    policy_.EndOfBatch(writer_.appended(), now);
  }
  pacer_.Received(now, turn_bytes);
  return Status::Ok();
}

Status ReadLoop::HandleMessage(const char* buf, int len) {
  ServerMessage m;
  if (Status s = ParseServerMessage(buf, static_cast<size_t>(len), &m); !s.ok()) return s;
  policy_.server().Note(Reading());
  return m.kind == ServerMessage::Kind::kXLogData ? HandleData(m) : HandleKeepalive(m);
}

Status ReadLoop::HandleData(const ServerMessage& m) {
  const std::optional<Lsn>& end = session_.end_lsn;
  if (end && m.data_start > *end) {
    reached_end_ = true;
    return Status::Ok();
  }
  if (policy_.server().NeedsReading(m.data_start)) {
    if (Status s = claims_.CheckClaim(m.data_start, "a change"); !s.ok()) return s;
  }
  SnapshotTurn();
  uint64_t before = writer_.appended();
  bool was_in = formatter_.InTransaction();
  Status fs;
  if (m.payload.size() >= kWriteThrough && formatter_.PassesThrough() &&
      writer_.CanWriteThrough()) {
    fs = writer_.WriteThrough(m.payload, m.data_start, turn_now_);
    formatter_.Frame(m.payload);
  } else {
    fs = formatter_.Format(m.payload, m.data_start, writer_.buffer());
  }
  if (!fs.ok()) return fs;
  largest_message_ = std::max<uint64_t>(largest_message_, m.payload.size());
  pipeline_.received = std::max(pipeline_.received, m.data_start);
  ++pipeline_.messages;
  if (!was_in) unit_start_ = before;
  if (formatter_.HasMoreOutput()) {
    policy_.InPieces(before, turn_now_);
    unfinished_lsn_ = m.data_start;
    return Status::Ok();
  }
  Status s = OutputComplete(m.data_start);
  // A chunk whose watermark this was goes out at once, and the next is
  // asked for, rather than at the next message or turn.
  if (s.ok()) SnapshotTurn();
  return s;
}

Status ReadLoop::OutputComplete(Lsn lsn) {
  AckPolicy::TxnState state{formatter_.InTransaction(), formatter_.EndedTransaction()};
  const std::optional<Lsn>& end = session_.end_lsn;
  if (end && lsn == *end) reached_end_ = true;
  if (exactly_once_ && !state.in_transaction &&
      exactly_once_->AlreadyWritten(lsn, state.ended_transaction)) {
    policy_.Dropped(unit_start_);
    return writer_.DropSince(unit_start_);
  }
  if (!state.in_transaction) writer_.buffer()->MarkUnitEnd();
  policy_.Data(lsn, writer_.appended(), state, turn_now_);
  return Status::Ok();
}

// Keepalive: everything the server decoded before m.wal_end has reached us;
// once the output before this point is durable, it may be acknowledged, as
// far as the server's position is proven.
Status ReadLoop::HandleKeepalive(const ServerMessage& m) {
  const std::optional<Lsn>& end = session_.end_lsn;
  if (policy_.server().NeedsReading(m.wal_end)) {
    if (Status s = claims_.CheckClaim(m.wal_end, "a keepalive"); !s.ok()) return s;
  }
  auto now = Clock::now();
  Lsn claim = end ? std::min(m.wal_end, *end) : m.wal_end;
  if (m.reply_requested && policy_.server().Cap(claim) < claim) {
    if (Status s = claims_.AnswerReplyRequest(claim, now); !s.ok()) return s;
  }
  policy_.Keepalive(claim, writer_.appended(), now);
  pipeline_.received = std::max(pipeline_.received, m.wal_end);
  stats_.server_wal_end.store(m.wal_end, std::memory_order_relaxed);
  if (m.reply_requested) reply_due_ = true;
  if (end && m.wal_end >= *end) reached_end_ = true;
  return Status::Ok();
}

Status ReadLoop::WriteAndSync(Clock::time_point now) {
  uint64_t taken_before = writer_.sink()->accepted();
  if (Status ws = writer_.Write(now); !ws.ok()) return ws.Prefixed(writer_.sink()->Describe());
  sink_blocked_ = writer_.Blocked();
  // A sink that takes nothing for sink_stall_timeout ends the stream: the
  // socket must not stay unread while the server may want to end its
  // walsender (see PauseStream).
  if (!sink_blocked_ || writer_.sink()->accepted() > taken_before) {
    blocked_since_ = Clock::time_point();
  } else if (blocked_since_ == Clock::time_point()) {
    blocked_since_ = now;
  } else if (config_.sink_stall_timeout.count() > 0 &&
             now - blocked_since_ >= config_.sink_stall_timeout) {
    stalled_ = true;
    return Status::Ok();
  }
  if (Status s = pipeline_.SyncSink(now, reached_end_); !s.ok()) return s;
  if (switch_now_ && writer_.buffered().empty()) {
    switch_now_ = false;
    if (Status s = pipeline_.SyncSink(now, true); !s.ok()) return s;
    if (Status s = exactly_once_->Switch(now); !s.ok()) return s;
  }
  return Status::Ok();
}

void ReadLoop::PublishStats(Clock::time_point now) {
  bool blocked = sink_blocked_;
  stats_.received_lsn.store(pipeline_.received, std::memory_order_relaxed);
  stats_.messages.store(pipeline_.messages, std::memory_order_relaxed);
  stats_.oldest_pending_ns.store(
      policy_.HasPending() ? policy_.OldestPending().time_since_epoch().count() : 0,
      std::memory_order_relaxed);
  stats_.state.store(blocked ? SlotState::kWaitingForSink : SlotState::kStreaming,
                     std::memory_order_relaxed);
  stats_.durable_lsn.store(policy_.durable_lsn(), std::memory_order_relaxed);
  stats_.sink_state.store(blocked                      ? writer_.sink()->WaitSpec().reason
                          : writer_.buffered().empty() ? "idle"
                                                       : "writing",
                          std::memory_order_relaxed);
  PublishSinkFigures();
  if (now >= next_progress_log_) LogProgress(now);
}

void ReadLoop::PublishSinkFigures() {
  if (snapshot_) {
    SnapshotDriver::Figures f = snapshot_->figures();
    stats_.snapshot_rows.store(f.rows_total, std::memory_order_relaxed);
    stats_.snapshot_tables_done.store(f.tables_done, std::memory_order_relaxed);
    stats_.snapshot_tables_left.store(f.tables_left, std::memory_order_relaxed);
    stats_.snapshot_table_estimate.store(f.table_estimate, std::memory_order_relaxed);
    {
      MutexLock lock(&stats_.snapshot_mu);
      stats_.snapshot_table = f.table;
    }
    stats_.has_snapshot.store(true, std::memory_order_relaxed);
  }
  Formatter::SpoolFigures spool;
  if (pipeline_.formatter().GetSpoolFigures(&spool)) {
    stats_.spool_memory_bytes.store(spool.memory_bytes, std::memory_order_relaxed);
    stats_.spool_disk_bytes.store(spool.disk_bytes, std::memory_order_relaxed);
    stats_.has_spool.store(true, std::memory_order_relaxed);
  }
  Sink::Figures f;
  if (!writer_.sink()->GetFigures(&f)) return;
  stats_.sink_in_flight.store(f.in_flight, std::memory_order_relaxed);
  stats_.sink_delivery_errors.store(f.delivery_errors, std::memory_order_relaxed);
  stats_.sink_transactions_committed.store(f.transactions_committed, std::memory_order_relaxed);
  stats_.sink_transactions_aborted.store(f.transactions_aborted, std::memory_order_relaxed);
  stats_.sink_brokers_down.store(f.brokers_down, std::memory_order_relaxed);
  stats_.has_sink_figures.store(true, std::memory_order_relaxed);
}

// At once when asked or when the acknowledgement moved, and at least every
// status_interval whatever the sink does. A connection that went silent
// without a reset (a frozen proxy, a cut cable): while we read, the server
// speaks at least every receive_timeout/2 once asked to (a status update
// with a reply requested); past receive_timeout it is taken for dead.
Status ReadLoop::ReportToServer(Clock::time_point now) {
  Lsn flushed = pipeline_.Acked();
  bool ping = false;
  if (ReadHold() != Hold::kReading || session_.receive_timeout.count() == 0) {
    last_received_ = now;
  } else if (now - last_received_ >= session_.receive_timeout) {
    return Status::Retryable(
        "no message from the server for " +
        std::to_string(duration_cast<milliseconds>(now - last_received_).count()) +
        " ms (receive_timeout): the connection seems dead");
  } else if (!ping_sent_ && now - last_received_ >= session_.receive_timeout / 2) {
    ping = true;
    ping_sent_ = true;
  }
  if (ping || reply_due_ || flushed != last_sent_flush_ ||
      now - last_status_ >= config_.status_interval) {
    if (Status s = conn_.SendStatus(std::max(pipeline_.received, flushed), flushed, ping);
        !s.ok()) {
      return s;
    }
    reply_due_ = false;
    last_sent_flush_ = flushed;
    last_status_ = now;
  }
  return conn_.Flush(&flush_pending_);
}

std::optional<Result<StreamEnd>> ReadLoop::SessionEnds() {
  // --end-lsn: done once everything received is written and durable. The
  // acknowledged position is what the ack policy allows, never the end position
  // itself: a commit that straddles it was not written.
  bool all_acknowledged = !policy_.in_pieces() && pipeline_.AllDurable() && !policy_.HasPending();
  if (reached_end_ && all_acknowledged) return Finish(true);
  // After a large message, once no output is unfinished: a new session, so that
  // libpq's input buffer, grown to the message's size, is freed.
  if (largest_message_ >= kReleaseAfter && all_acknowledged &&
      (!exactly_once_ || policy_.recorded().offset == writer_.sink()->accepted())) {
    EndStream(Clock::now() + kFinishTimeout);
    return Result<StreamEnd>(StreamEnd::kRestart);
  }
  return std::nullopt;
}

int64_t ReadLoop::PollTimeout(Clock::time_point now) const {
  int64_t timeout =
      std::min<int64_t>(MillisUntil(last_status_ + config_.status_interval, now), 1000);
  if (!writer_.buffered().empty()) {
    Sink::Wait w = writer_.sink()->WaitSpec();
    if (w.fd < 0) timeout = std::min<int64_t>(timeout, w.retry.count());
  }
  if (Clock::time_point due = writer_.SyncDue(); due != Clock::time_point::max()) {
    timeout = std::min(timeout, MillisUntil(due, now));
  }
  if (auto r = writer_.sink()->RecheckAfter(); r.count() > 0) {
    timeout = std::min<int64_t>(timeout, r.count());
  }
  Hold hold = ReadHold();
  if (hold == Hold::kReading && session_.receive_timeout.count() > 0) {
    auto next =
        last_received_ + (ping_sent_ ? session_.receive_timeout : session_.receive_timeout / 2);
    timeout = std::min(timeout, MillisUntil(next, now));
  }
  if (blocked_since_ != Clock::time_point() && config_.sink_stall_timeout.count() > 0) {
    timeout = std::min(timeout, MillisUntil(blocked_since_ + config_.sink_stall_timeout, now));
  }
  if (hold == Hold::kSwitchingFile) timeout = 0;  // the switch waits for nothing
  if (policy_.in_pieces() && writer_.buffered().size() < config_.buffer_size) {
    timeout = 0;  // more to replay
  }
  // Messages libpq holds do not wake poll: with room again, read them now.
  if (left_in_libpq_ && hold == Hold::kReading) timeout = 0;
  return timeout;
}

Status ReadLoop::WaitForEvents(Clock::time_point now) {
  struct pollfd fds[4];
  int nfds = 0;
  fds[nfds++] = {session_.wakeup->fd(), POLLIN, 0};
  short pg_events = 0;
  if (!reached_end_ && writer_.buffered().size() < config_.buffer_size) pg_events |= POLLIN;
  if (flush_pending_) pg_events |= POLLOUT;
  fds[nfds++] = {conn_.socket(), pg_events, 0};
  if (!writer_.buffered().empty()) {
    Sink::Wait w = writer_.sink()->WaitSpec();
    if (w.fd >= 0) fds[nfds++] = {w.fd, w.events, 0};
  }
  // A delivery report wakes the loop: its acknowledgement goes out at once.
  if (int fd = writer_.sink()->CompletionFd(); fd >= 0) fds[nfds++] = {fd, POLLIN, 0};
  int64_t timeout = PollTimeout(now);
  if (auto wait = pacer_.Wait(); wait.count() > 0 && ReadHold() == Hold::kReading && timeout > 0 &&
                                 !flush_pending_ && !sink_blocked_) {
    // A fast stream: let the socket gather a batch first (see
    // read_pacer.h). A wakeup (stop, reload) cuts the wait short.
    struct timespec ts = {0, static_cast<long>(wait.count())};
    if (::ppoll(fds, 1, &ts, nullptr) > 0) timeout = 0;
  }
  if (::poll(fds, nfds, static_cast<int>(timeout)) < 0 && errno != EINTR) {
    return Status::Retryable(ErrnoMessage("poll", errno));
  }
  wakeup_pending_ = fds[0].revents != 0;
  // Bytes arriving count as the server speaking, even before they make a
  // whole message (a large one over a slow link).
  if (fds[1].revents & POLLIN) {
    last_received_ = Clock::now();
    ping_sent_ = false;
  }
  if ((fds[1].revents & (POLLHUP | POLLERR)) && !(pg_events & POLLIN)) {
    // Not reading now (buffer full or at the end), but the connection is
    // gone: say so rather than poll on a dead socket forever.
    Status s = conn_.ConsumeInput();
    return s.ok() ? Status::Retryable("the connection to the server was lost") : s;
  }
  return Status::Ok();
}

// Clean end of a session: write and sync what we have, report exactly the
// durable position, end the copy and let the server finish its side.
Result<StreamEnd> ReadLoop::Finish(bool end_reached) {
  stats_.state.store(SlotState::kStopping);
  auto deadline = Clock::now() + kFinishTimeout;
  // A stream sink that has half a message gets the rest, for as long as
  // its reader keeps taking bytes (a reader that holds the pipe without
  // reading is given up on after a second); one that has taken nothing of
  // the next message stops at once. --end-lsn waits for everything.
  auto idle_until = Clock::now() + kFinishIdle;
  for (;;) {
    uint64_t before = writer_.sink()->accepted();
    Status ws = writer_.Write(Clock::now());
    if (ws.ok() && !writer_.Blocked()) break;
    auto now = Clock::now();
    if (writer_.sink()->accepted() > before) idle_until = now + kFinishIdle;
    bool mid_message =
        !writer_.sink()->CanRetract() && !policy_.IsBoundary(writer_.sink()->accepted());
    if (!ws.ok() || now >= deadline || (!end_reached && (!mid_message || now >= idle_until))) {
      break;
    }
    writer_.WaitForSinkBriefly();
  }
  if (Status ss = SyncForFinish(deadline); !ss.ok()) {
    // --end-lsn promises everything up to the end is durable: try again.
    // A stop need not: what failed is not acknowledged and comes again on
    // the next start (a pipe whose reader left, a state record that could
    // not be written), so end the stream cleanly all the same.
    if (end_reached || ss.code() != Status::Code::kRetryable) return ss;
    pipeline_.Event(spdlog::level::warn, nullptr, pipeline_.Acked(),
                    writer_.sink()->Describe() + ": " + ss.message() +
                        " (not acknowledged: sent again on the next start)");
  }
  // Part of a transaction (cut by the stop or the end position) does not
  // stay in the file at rest; the next run writes it whole.
  if (exactly_once_) exactly_once_->DropUnrecorded();
  EndStream(Clock::now() + kFinishTimeout);
  return end_reached ? StreamEnd::kEndReached : StreamEnd::kStopped;
}

// A sink that learns what is durable later (delivery reports; a Kafka
// transaction's commit) gets until `deadline` to record everything it
// took, when that ends at a boundary; a transaction cut by the stop is
// left to the next run.
Status ReadLoop::SyncForFinish(Clock::time_point deadline) {
  Status s = pipeline_.SyncSink(Clock::now(), true);
  Sink* sink = writer_.sink();
  auto pending = [&] {
    uint64_t accepted = sink->accepted();
    return !pipeline_.AllDurable() || (exactly_once_ && policy_.SafeOffset() == accepted &&
                                       policy_.recorded().offset < accepted);
  };
  while (s.ok() && sink->CompletionFd() >= 0 && pending() && Clock::now() < deadline) {
    pipeline_.Heartbeat();
    struct pollfd pfd = {sink->CompletionFd(), POLLIN, 0};
    ::poll(&pfd, 1, 20);
    s = pipeline_.SyncSink(Clock::now(), true);
  }
  return s;
}

void ReadLoop::EndStream(Clock::time_point deadline) {
  Lsn flushed = pipeline_.Acked();
  stats_.flushed_lsn.store(flushed);
  Status s = conn_.SendStatus(std::max(pipeline_.received, flushed), flushed, false);
  if (s.ok()) s = conn_.EndCopy(deadline);
  if (!s.ok()) {
    pipeline_.Event(spdlog::level::warn, nullptr, flushed,
                    "ending the stream: " + s.message() + " (flushed " + FormatLsn(flushed) +
                        " stays acknowledged on the next start)");
  }
}

Result<StreamEnd> ReadLoop::PauseStream(Clock::time_point now) {
  if (Status ss = pipeline_.SyncSink(now, true); !ss.ok()) return ss;
  pipeline_.Event(
      spdlog::level::warn, nullptr, pipeline_.Acked(),
      writer_.sink()->Describe() + " has taken nothing for " +
          std::to_string(duration_cast<milliseconds>(now - blocked_since_).count()) + " ms (" +
          writer_.sink()->WaitSpec().reason +
          "): pausing the stream, so that the server is never kept waiting on it; it streams "
          "again from " +
          FormatLsn(pipeline_.Acked()) + " once the sink takes bytes");
  stats_.state.store(SlotState::kStopping);
  EndStream(Clock::now() + kFinishTimeout);
  blocked_since_ = Clock::time_point();
  return StreamEnd::kPausedForSink;
}

void ReadLoop::LogProgress(Clock::time_point now) {
  next_progress_log_ = now + kProgressEvery;
  if (!LogEnabled(spdlog::level::debug)) return;
  Lsn wal_end = stats_.server_wal_end.load(std::memory_order_relaxed);
  Lsn acked = pipeline_.Acked();
  pipeline_.Event(spdlog::level::debug, nullptr, acked,
                  "progress: received " + FormatLsn(pipeline_.received) + ", durable " +
                      FormatLsn(policy_.durable_lsn()) + ", acknowledged " + FormatLsn(acked) +
                      (wal_end > acked ? ", lag " + std::to_string(wal_end - acked) + " bytes"
                                       : std::string(", no lag")) +
                      "; " + std::to_string(pipeline_.messages) + " messages, sink " +
                      stats_.sink_state.load(std::memory_order_relaxed));
}

}  // namespace pgslotd
