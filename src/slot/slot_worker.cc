#include "slot/slot_worker.h"

#include <poll.h>
#include <pthread.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>

#include "pg/conninfo.h"
#include "pg/plugin_options.h"
#include "pg/quote.h"
#include "pg/replication_conn.h"
#include "pg/slot_session.h"
#include "slot/read_loop.h"
#include "util/clock.h"
#include "util/log.h"

namespace pgslotd {

namespace {

using std::chrono::duration_cast;
using std::chrono::milliseconds;

constexpr milliseconds kBackoffMin{100};
constexpr milliseconds kBackoffMax{30000};
constexpr milliseconds kConnectTimeout{30000};
constexpr std::chrono::seconds kStableSession{30};

std::unique_ptr<Sink> MakeConfiguredSink(const SlotConfig& config,
                                         const SlotWorker::SinkFactory& factory) {
  return factory ? factory(config) : MakeSink(config);
}

}  // namespace

SlotWorker::SlotWorker(SlotConfig config, Options options)
    : config_(std::move(config)),
      options_(std::move(options)),
      primary_keys_(config_, wakeup_.fd(), &stop_, &stats_.heartbeat_ns),
      pipeline_(config_, MakeConfiguredSink(config_, options_.make_sink), &stats_, &primary_keys_),
      claims_(config_, &pipeline_.policy().server(), wakeup_.fd(), &stop_, &stats_.heartbeat_ns),
      backoff_(kBackoffMin),
      request_files_(config_.state_directory, config_.name) {
  sink_description_ = sink()->Describe();
  pipeline_.Heartbeat();
}

SlotWorker::~SlotWorker() {
  RequestStop();
  Join();
}

void SlotWorker::Start() {
  started_ = true;
  pipeline_.Heartbeat();  // it may have waited since it was made
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

void SlotWorker::RequestSnapshot() {
  snapshot_wanted_.store(true, std::memory_order_release);
  wakeup_.Notify();
}

void SlotWorker::NoteInvalidated() {
  invalidated_.store(true, std::memory_order_release);
  wakeup_.Notify();
}

void SlotWorker::NoteServerWalPosition(Lsn lsn, Clock::time_point read_at) {
  reading_.Note(lsn, read_at);
}

void SlotWorker::Join() {
  if (thread_.joinable()) thread_.join();
}

std::string SlotWorker::last_error() const {
  MutexLock l(&last_error_mu_);
  return last_error_;
}

void SlotWorker::SetLastError(const std::string& message) {
  MutexLock l(&last_error_mu_);
  last_error_ = message;
}

bool SlotWorker::SleepInterruptibly(milliseconds d) {
  auto until = Clock::now() + d;
  for (;;) {
    pipeline_.Heartbeat();
    if (stop_.load(std::memory_order_acquire)) return false;
    auto now = Clock::now();
    if (now >= until) return true;
    struct pollfd pfd = {wakeup_.fd(), POLLIN, 0};
    int wait = static_cast<int>(std::min<int64_t>(MillisUntil(until, now), 1000));
    if (::poll(&pfd, 1, wait) > 0) wakeup_.Drain();
  }
}

// --- Run: the phases ---------------------------------------------------

void SlotWorker::Run() {
  // The slot's name, as far as a thread name holds (15 bytes): what top -H,
  // ps -L and gdb show, so that a stuck thread is known by its slot.
  ::pthread_setname_np(::pthread_self(), config_.name.substr(0, 15).c_str());
  pipeline_.Event(spdlog::level::info, msgid::kSlotStarted, kInvalidLsn,
                  "started: plugin " + config_.plugin + " into " + sink()->Describe());
  Phase phase = Phase::kStreaming;
  if (Status s = sink()->Open(); !s.ok()) {
    // Not fatal by itself: the sink is opened again before each session.
    pipeline_.Event(spdlog::level::warn, nullptr, kInvalidLsn,
                    sink()->Describe() + ": " + s.message());
    if (s.code() == Status::Code::kSlotFatal) {
      outcome_ = s;
      phase = Phase::kStopping;
    }
  }
  while (phase != Phase::kStopping) {
    switch (phase) {
      case Phase::kStreaming:
        phase = StreamSession();
        break;
      case Phase::kPausedForSink:
        phase = AwaitSink();
        break;
      case Phase::kBackingOff:
        phase = BackOff();
        break;
      case Phase::kRestarting:
        GiveMemoryBack();
        phase = Phase::kStreaming;
        break;
      case Phase::kStopping:
        break;
    }
  }
  Conclude(outcome_);
}

SlotWorker::Phase SlotWorker::StreamSession() {
  if (stop_.load(std::memory_order_acquire)) {
    outcome_ = Status::Ok();
    return Phase::kStopping;
  }
  auto started = Clock::now();
  ReplicationConn conn(wakeup_.fd(), &stop_, &stats_.heartbeat_ns);
  Result<StreamEnd> end = Session(&conn);
  conn.Close();
  if (Clock::now() - started >= kStableSession) backoff_ = kBackoffMin;
  return AfterSession(end);
}

SlotWorker::Phase SlotWorker::AfterSession(const Result<StreamEnd>& end) {
  outcome_ = end.status();
  if (!end.ok()) {
    if (outcome_.code() != Status::Code::kRetryable) return Phase::kStopping;
    if (!stop_.load(std::memory_order_acquire)) return Phase::kBackingOff;
    outcome_ = Status::Ok();  // a stop request interrupted it
    return Phase::kStopping;
  }
  switch (end.value()) {
    case StreamEnd::kEndReached:
      stats_.state.store(SlotState::kDone);
      pipeline_.Event(spdlog::level::info, msgid::kSlotStopped, Acked(),
                      "reached end position " + FormatLsn(*options_.end_lsn) + "; flushed " +
                          FormatLsn(Acked()));
      return Phase::kStopping;
    case StreamEnd::kStopped:
      return Phase::kStopping;
    case StreamEnd::kPausedForSink:
      return Phase::kPausedForSink;
    case StreamEnd::kRestart:
      return Phase::kRestarting;
  }
  return Phase::kStopping;
}

SlotWorker::Phase SlotWorker::AwaitSink() {
  Result<bool> takes = WaitForSink();
  if (!takes.ok()) return AfterSession(takes.status());
  if (!takes.value()) return AfterSession(StreamEnd::kStopped);
  backoff_ = kBackoffMin;
  return Phase::kStreaming;  // stream again, at once
}

SlotWorker::Phase SlotWorker::BackOff() {
  stats_.state.store(SlotState::kReconnecting);
  stats_.reconnects.fetch_add(1, std::memory_order_relaxed);
  SetLastError(outcome_.message());
  pipeline_.Event(spdlog::level::warn, msgid::kReconnecting, Acked(),
                  outcome_.message() + "; reconnecting in " + std::to_string(backoff_.count()) +
                      " ms" + (Acked() != kInvalidLsn ? " from " + FormatLsn(Acked()) : ""));
  auto retry_at = Clock::now() + backoff_;
  if (Status s = CutBackAfterFailure(retry_at); !s.ok()) {
    outcome_ = s;
    return Phase::kStopping;
  }
  auto left = duration_cast<milliseconds>(retry_at - Clock::now());
  if (!SleepInterruptibly(std::max(left, milliseconds(0)))) {
    outcome_ = Status::Ok();
    return Phase::kStopping;
  }
  backoff_ = std::min(backoff_ * 2, kBackoffMax);
  return Phase::kStreaming;
}

void SlotWorker::Conclude(Status result) {
  SettleSnapshotRequests();
  Status cs = sink()->Close();
  if (!cs.ok() && result.ok()) result = cs.Prefixed(sink()->Describe());
  stats_.flushed_lsn.store(Acked());
  stats_.sink_state.store("closed");
  if (!result.ok()) {
    SetLastError(result.message());
    stats_.state.store(SlotState::kFailed);
    if (result.code() == Status::Code::kProcessFatal) {
      pipeline_.Event(spdlog::level::critical, msgid::kFatal, Acked(), result.message());
    } else {
      bool invalidated = result.code() == Status::Code::kSlotInvalidated;
      if (invalidated) stats_.state.store(SlotState::kInvalidated);
      pipeline_.Event(spdlog::level::err,
                      invalidated ? msgid::kSlotInvalidated : msgid::kSlotFailed, Acked(),
                      result.message() + "; this slot has stopped (the others go on)");
    }
  } else if (stats_.state.load() != SlotState::kDone) {
    stats_.state.store(SlotState::kStopped);
    pipeline_.Event(spdlog::level::info, msgid::kSlotStopped, Acked(),
                    Acked() != kInvalidLsn ? "stopped cleanly; flushed " + FormatLsn(Acked())
                                           : std::string("stopped cleanly before streaming"));
  }
  error_ = result;
  finished_.store(true, std::memory_order_release);
  if (options_.on_exit) options_.on_exit();
}

// --- A session: set-up ---------------------------------------------------

Result<StreamEnd> SlotWorker::Session(ReplicationConn* conn) {
  SettleSnapshotRequests();
  stats_.state.store(SlotState::kConnecting);
  conn->set_error_context(ErrorContext{config_.name, config_.plugin, "", created_here_});
  Lsn start = kInvalidLsn;
  Status s = Prepare(conn, &start);
  if (!s.ok()) return conn->WithSlotCondition(s, config_.name);
  if (options_.end_lsn && Acked() >= *options_.end_lsn) return StreamEnd::kEndReached;
  pipeline_.formatter().Reset();  // a new stream: no relation cache, no open transaction
  pipeline_.policy().NewStream();
  if (ExactlyOnce* e = pipeline_.exactly_once()) e->NewSession();
  conn->set_error_context(ErrorContext{config_.name, config_.plugin, "", created_here_});
  SessionOptions plugin = EffectiveOptions(config_, conn->server_version());
  s = conn->StartCopy(BuildStartReplication(config_.name, start, plugin.options),
                      Clock::now() + kConnectTimeout);
  if (!s.ok()) return conn->WithSlotCondition(s, config_.name).Prefixed("START_REPLICATION");
  created_here_ = false;  // it streams: from here on it is an ordinary slot
  if (!announced_) {
    pipeline_.Event(spdlog::level::info, msgid::kConnected, start,
                    "streaming from " + FormatLsn(start) + " into " + sink()->Describe() +
                        " (plugin " + plugin.protocol + "; connection " +
                        RedactConninfo(config_.connection) + ")");
    announced_ = true;
  } else {
    pipeline_.Event(spdlog::level::info, msgid::kConnected, start,
                    "streaming again from " + FormatLsn(start) + " (" + plugin.protocol + ")");
  }
  stats_.state.store(SlotState::kStreaming);
  ReadLoop::Session session{conn,      &wakeup_,       &stop_,           &reopen_,
                            &reading_, session_began_, options_.end_lsn, receive_timeout_};
  session.snapshot = snapshot_.get();
  session.json = dynamic_cast<PgoutputFormatter*>(&pipeline_.formatter());
  if (config_.snapshot != SnapshotMode::kNever) {
    session.snapshot_wanted = &snapshot_wanted_;
    session.take_snapshot_requests = [this] { return TakeSnapshotRequests(); };
    session.request_files = &request_files_;
  }
  ReadLoop loop(&pipeline_, &claims_, session);
  Result<StreamEnd> end = loop.Run();
  SettleSnapshotRequests();  // the last record (a stop's) may hold them
  largest_message_ = loop.largest_message();
  if (!end.ok()) end = conn->WithSlotCondition(end.status(), config_.name);
  if (LogEnabled(spdlog::level::debug)) {
    pipeline_.Event(
        spdlog::level::debug, nullptr, Acked(),
        "session ended (" +
            (end.ok() ? std::string(StreamEndName(end.value())) : end.status().message()) +
            "): started at " + FormatLsn(start) + ", received up to " +
            FormatLsn(pipeline_.received) + ", acknowledged " + FormatLsn(Acked()));
  }
  return end;
}

Status SlotWorker::Prepare(ReplicationConn* conn, Lsn* start) {
  auto deadline = Clock::now() + kConnectTimeout;
  if (Status s = ConnectForReplication(conn, config_, deadline); !s.ok()) return s;
  if (Status so = sink()->Open(); !so.ok()) return so.Prefixed(sink()->Describe());
  session_began_ = Clock::now();  // readings taken before prove nothing here
  Result<SlotSession> session = LookUpSlot(conn, config_, deadline);
  if (!session.ok()) return session.status();
  const SlotSession& slot = session.value();
  if (slot.created) created_here_ = true;
  server_version_ = conn->server_version();
  // A sink that keeps its position takes its snapshot when it has none
  // recorded (below); a stream sink when pgslotd creates the slot.
  const bool keeps_position = pipeline_.exactly_once() != nullptr;
  if (config_.snapshot == SnapshotMode::kInitial && slot.created && !keeps_position) {
    StartSnapshot(nullptr);
  } else if (config_.snapshot == SnapshotMode::kInitial && !created_here_ && !announced_ &&
             !keeps_position) {
    pipeline_.Event(spdlog::level::info, nullptr, kInvalidLsn,
                    "snapshot: initial: the slot existed already, so no snapshot is taken (it "
                    "is taken when pgslotd creates the slot)");
  }
  receive_timeout_ = slot.receive_timeout;
  pipeline_.policy().server().Reset(slot.wal_end);
  pipeline_.policy().server().Note(reading_.TakenSince(session_began_));
  if (ExactlyOnce* e = pipeline_.exactly_once()) {
    // Another consumer streams the slot (a standby's pgslotd waits here):
    // the sink's record is not this process's to apply while it does (a
    // Kafka sink would fence the other's producer).
    if (slot.active_pid && sink()->exactly_once()->RecoverTouchesShared()) {
      return SlotInUse(*slot.active_pid);
    }
    if (Status s = RecoverWithSnapshot(e, slot); !s.ok()) return s;
  } else {
    if (slot.confirmed) pipeline_.policy().RaiseFloor(*slot.confirmed);
    if (pipeline_.policy().durable_lsn() > slot.wal_end)
      ForgetEarlierServer(slot.wal_end, slot.confirmed);
  }
  if (config_.snapshot != SnapshotMode::kNever) {
    // The driver watches the stream from the session's start, whether or
    // not a snapshot is under way: a request that comes while it streams
    // finds the commits it has seen (SnapshotPass::RecentlyCommitted).
    if (server_version_ >= 150000 &&
        dynamic_cast<PgoutputFormatter*>(&pipeline_.formatter()) != nullptr) {
      MakeSnapshotDriver();
    }
    TakeSnapshotRequests();
  } else if (!announced_ && request_files_.AnyWaiting()) {
    pipeline_.Event(spdlog::level::warn, nullptr, kInvalidLsn,
                    "snapshot requests wait in " + config_.state_directory +
                        " (pgslotd --snapshot), but the slot has snapshot: never; set snapshot: "
                        "on_request to carry them out, or delete the files");
  }
  *start = pipeline_.policy().durable_lsn();
  pipeline_.received = std::max(pipeline_.received, *start);
  stats_.flushed_lsn.store(Acked());
  return Status::Ok();
}

namespace {

// Where a resumed snapshot goes on, for the log.
std::string ResumePoint(const SnapshotProgress& p) {
  const SnapshotProgress::Item& next = p.queue.front();
  if (next.first.empty()) return "listing the tables of the publications";
  std::string where = "table " + next.first + "." + next.second;
  if (p.started) where += " after its first " + std::to_string(p.rows) + " rows";
  if (p.queue.size() > 1) where += ", then " + std::to_string(p.queue.size() - 1) + " more queued";
  return where;
}

}  // namespace

// A sink that keeps its position: its record says where the output stands,
// and how far a snapshot it holds part of has come. Without a record the
// output is new: snapshot: initial starts, and its request is in the first
// record.
Status SlotWorker::RecoverWithSnapshot(ExactlyOnce* e, const SlotSession& slot) {
  bool applied = false;
  if (Status s = e->Recover(slot, &applied); !s.ok()) return s;
  if (!applied) {
    // A new output (the first, or one whose file and record were moved
    // aside while the slot ran): what the driver remembers was another's,
    // and its request files are taken again.
    if (snapshot_) {
      snapshot_->Resume(SnapshotProgress());
      request_files_.Reset();
    }
    if (config_.snapshot == SnapshotMode::kInitial) StartSnapshot(nullptr);
    return e->RecordStart();
  }
  const std::string recorded = sink()->exactly_once()->RecoveredSnapshotProgress();
  if (snapshot_ && e->recorded_ahead()) return ResumeFromAheadRecord(recorded);
  if (snapshot_ || recorded.empty()) return Status::Ok();  // in this run, the driver goes on
  SnapshotProgress progress;
  if (Status s = ParseRecordedProgress(recorded, &progress); !s.ok()) return s;
  if (progress.empty()) {
    // Only request files a crash may have left, whose snapshot is done:
    // TakeSnapshotRequests deletes them.
    if (config_.snapshot != SnapshotMode::kNever && server_version_ >= 150000 &&
        MakeSnapshotDriver()) {
      snapshot_->Resume(progress);
    }
    return Status::Ok();
  }
  if (config_.snapshot == SnapshotMode::kNever) {
    // Its watermarks need messages, which snapshot: never does not ask for.
    pipeline_.Event(spdlog::level::warn, nullptr, kInvalidLsn,
                    "snapshot: " + sink()->Describe() +
                        " holds part of a snapshot, which is abandoned (the slot has snapshot: "
                        "never now): a table it had started stays without its end line");
    return Status::Ok();
  }
  StartSnapshot(&progress);
  // One that cannot go on in this run (logged) stays recorded for a later.
  if (!snapshot_) e->HoldProgress(recorded);
  return Status::Ok();
}

Status SlotWorker::ParseRecordedProgress(const std::string& text, SnapshotProgress* progress) {
  std::string err;
  if (ParseSnapshotProgress(text, progress, &err)) return Status::Ok();
  const bool file = config_.sink.type == SinkType::kFile;
  return Status::SlotFatal(
      "the snapshot progress recorded for " + sink()->Describe() +
      (file ? " (" + config_.state_directory + "/" + config_.name + ".state)" : std::string()) +
      ": " + err +
      (file ? "; move the file and its record aside to start again"
            : "; set position_topic to a new topic to start again"));
}

// The sink's record is beyond what this run saw recorded (a Kafka commit
// whose outcome was unknown when the last session failed went through), so
// the driver, rewound to what the run knew, is behind the output: it goes
// on from the record's progress instead, as a new run would, and takes the
// request files again (those the progress holds are not queued twice).
Status SlotWorker::ResumeFromAheadRecord(const std::string& recorded) {
  SnapshotProgress progress;
  if (Status s = ParseRecordedProgress(recorded, &progress); !s.ok()) return s;
  snapshot_->Resume(progress);
  request_files_.Reset();
  if (!progress.empty()) {
    pipeline_.Event(
        spdlog::level::info, nullptr, kInvalidLsn,
        "snapshot: going on from where " + sink()->Describe() + " ends: " + ResumePoint(progress));
  }
  return Status::Ok();
}

bool SlotWorker::MakeSnapshotDriver() {
  if (snapshot_) return true;
  if (server_version_ < 150000) {
    pipeline_.Event(spdlog::level::err, nullptr, kInvalidLsn,
                    "snapshot not taken: it needs PostgreSQL 15 or later (column lists and row "
                    "filters in pg_publication_tables), and the server is " +
                        std::to_string(server_version_ / 10000));
    return false;
  }
  auto* json = dynamic_cast<PgoutputFormatter*>(&pipeline_.formatter());
  std::vector<std::pair<std::string, std::string>> params;
  std::string err;
  if (json == nullptr || !BuildSnapshotParams(config_.connection, config_.name, &params, &err)) {
    pipeline_.Event(spdlog::level::err, nullptr, kInvalidLsn, "snapshot not taken: " + err);
    return false;
  }
  snapshot_reads_ = std::make_unique<SnapshotReaderThread>(std::move(params), &wakeup_);
  snapshot_ = std::make_unique<SnapshotDriver>(config_.name, PublicationNames(config_),
                                               static_cast<uint32_t>(config_.snapshot_chunk_rows),
                                               snapshot_reads_.get());
  snapshot_->set_read_keyless_whole(config_.snapshot_keyless == SnapshotKeyless::kReadWhole);
  json->set_observer(snapshot_->observer());
  if (ExactlyOnce* e = pipeline_.exactly_once()) e->set_snapshot(snapshot_.get());
  return true;
}

void SlotWorker::StartSnapshot(const SnapshotProgress* resume) {
  if (!MakeSnapshotDriver()) return;
  if (resume != nullptr) {
    snapshot_->Resume(*resume);
    pipeline_.Event(
        spdlog::level::info, nullptr, kInvalidLsn,
        "snapshot: going on from where " + sink()->Describe() + " ends: " + ResumePoint(*resume));
    return;
  }
  snapshot_->Request({});
  pipeline_.Event(
      spdlog::level::info, nullptr, kInvalidLsn,
      std::string("snapshot: reading every table of the slot's publications (") +
          (pipeline_.exactly_once() ? "no position is recorded for " + sink()->Describe()
                                    : std::string("the slot is new")) +
          ")");
}

namespace {

std::string DescribeRequest(const std::vector<QualifiedTable>& tables) {
  if (tables.empty()) return "every table of the slot's publications";
  std::string list = tables.size() == 1 ? "table " : "tables ";
  for (size_t i = 0; i < tables.size(); ++i) {
    list += (i ? ", " : "") + tables[i].first + "." + tables[i].second;
  }
  return list;
}

}  // namespace

SnapshotDriver* SlotWorker::TakeSnapshotRequests() {
  std::vector<std::string> errors;
  std::vector<SnapshotRequestFiles::Request> taken;
  if (request_files_.AnyWaiting() && MakeSnapshotDriver()) taken = request_files_.TakeNew(&errors);
  for (const std::string& e : errors) {
    pipeline_.Event(spdlog::level::err, nullptr, kInvalidLsn, e);
  }
  // Files a record names that are gone (deleted before a crash, or by an
  // operator): the progress stops naming them.
  if (snapshot_ && !snapshot_->request_ids().empty()) {
    std::vector<std::string> missing = request_files_.Missing(snapshot_->request_ids());
    if (!missing.empty()) snapshot_->RequestFilesGone(missing);
  }
  ExactlyOnce* e = pipeline_.exactly_once();
  for (SnapshotRequestFiles::Request& r : taken) {
    if (snapshot_->HoldsRequest(r.id)) {  // a record names it: queued already, or done
      if (request_files_.Forget(r)) snapshot_->RequestFilesGone({r.id});
      continue;
    }
    pipeline_.Event(spdlog::level::info, nullptr, kInvalidLsn,
                    "snapshot requested (" + r.path + "): reading " + DescribeRequest(r.tables) +
                        (snapshot_->active() ? " after what is queued" : std::string()));
    snapshot_->Request(std::move(r.tables), r.id);
    request_files_.Queued(r, e ? e->records() : 0);
  }
  return snapshot_.get();
}

void SlotWorker::SettleSnapshotRequests() {
  if (!snapshot_ || !request_files_.pending()) return;
  ExactlyOnce* e = pipeline_.exactly_once();
  std::vector<std::string> gone =
      request_files_.Settle(e != nullptr, e ? e->records() : 0, snapshot_->finished());
  if (!gone.empty()) snapshot_->RequestFilesGone(gone);
}

Status SlotWorker::SlotInUse(int pid) const {
  return Status::Retryable("slot \"" + config_.name +
                           "\" is in use by another process (walsender pid " + std::to_string(pid) +
                           ": another pgslotd, a standby's, or pg_recvlogical): retrying until it "
                           "is free");
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
  pipeline_.Event(
      spdlog::level::warn, nullptr, from,
      "acknowledged up to " + FormatLsn(pipeline_.policy().durable_lsn()) +
          " in an earlier session, beyond this server's WAL end " + FormatLsn(wal_end) +
          " (another server, or one that lost the end of its WAL): streaming from the slot's "
          "own position " +
          FormatLsn(from) + " instead; changes after it may come again, none is skipped");
  pipeline_.policy().Restart(pipeline_.policy().SafeOffset(), from);
  pipeline_.received = from;
}

// After a retryable failure: make durable what the sink accepted, let a pipe
// reader take what it can until `until`, then cut the sink back to the last
// acknowledged boundary and forget the rest (the server sends it again).
Status SlotWorker::CutBackAfterFailure(Clock::time_point until) {
  // A sink that cannot take bytes back (stdout, a pipe with its reader)
  // must not be left with half a message: finish the one it is in, so that
  // the re-sent messages start on a boundary.
  if (!sink()->CanRetract()) {
    pipeline_.writer().WriteUpTo(pipeline_.policy().NextBoundary(sink()->accepted()), until, &stop_,
                                 &stats_.heartbeat_ns);
  }
  Status s = pipeline_.SyncUntilDurable(until, &stop_);
  if (s.code() == Status::Code::kProcessFatal) return s;
  // A file is cut back to the last acknowledged boundary; what a stream
  // sink has taken stays taken (the re-sent copy follows: at-least-once).
  uint64_t keep = sink()->CanRetract() ? pipeline_.policy().SafeOffset() : sink()->accepted();
  if (ExactlyOnce* e = pipeline_.exactly_once()) {
    Result<uint64_t> recorded = e->RecordBeforeCutBack(s.ok(), Clock::now());
    if (!recorded.ok()) return recorded.status();
    keep = recorded.value();
  }
  // A snapshot's lines past `keep` are not sent again by the server.
  if (snapshot_) snapshot_->Rewind(keep);
  if (Status ds = pipeline_.writer().CutBack(keep); !ds.ok()) {
    return Status::SlotFatal("cannot cut " + sink()->Describe() +
                             " back to its last acknowledged position (" + ds.message() +
                             "); stopping this slot rather than append after a torn tail");
  }
  pipeline_.policy().Restart(keep, pipeline_.exactly_once() ? pipeline_.policy().recorded().lsn
                                                            : pipeline_.policy().durable_lsn());
  stats_.oldest_pending_ns.store(0, std::memory_order_relaxed);
  stats_.flushed_lsn.store(Acked());
  return Status::Ok();
}

void SlotWorker::GiveMemoryBack() {
  pipeline_.writer().ShrinkBuffer();
  pipeline_.Event(
      spdlog::level::info, nullptr, Acked(),
      "a message of " + std::to_string(largest_message_ >> 20) +
          " MiB has passed: starting the session again from " + FormatLsn(Acked()) +
          " to give back the memory it took (libpq keeps its input buffer as large as the "
          "largest message for as long as a connection lasts)");
  largest_message_ = 0;
}

// What the sink has half taken it must get whole (a reader never sees half
// a line); every other byte not taken is dropped, and the server sends it
// again from the acknowledged position.
void SlotWorker::KeepOnlyHalfTaken() {
  uint64_t taken = sink()->accepted();
  uint64_t keep = 0;
  if (!sink()->CanRetract() && !pipeline_.policy().IsBoundary(taken)) {
    keep = std::min<uint64_t>(pipeline_.policy().NextBoundary(taken) - taken,
                              pipeline_.writer().buffered().size());
  }
  pipeline_.writer().KeepBuffered(keep);
  pipeline_.policy().Unwritten(taken + keep);
  // The server sends its changes again; a snapshot's lines it must redo.
  if (snapshot_) snapshot_->Rewind(taken + keep);
}

Result<bool> SlotWorker::WaitForSink() {
  stats_.state.store(SlotState::kPaused);
  KeepOnlyHalfTaken();
  for (;;) {
    pipeline_.Heartbeat();
    if (stop_.load(std::memory_order_acquire)) return false;
    if (invalidated_.load(std::memory_order_acquire)) {
      return Status::SlotInvalidated(
          "the server has invalidated slot \"" + config_.name +
          "\" while it was paused (wal_status lost, read by the monitor): the changes it held are "
          "gone; an operator must recreate it (drop it and create it again)");
    }
    if (reopen_.exchange(false)) {
      if (Status s = sink()->Reopen(); !s.ok()) return s.Prefixed(sink()->Describe());
    }
    // The sink's own progress while paused (delivery reports, a Kafka
    // commit under way, a pipe reader) needs its syncs served too.
    if (Status ss = pipeline_.SyncSink(Clock::now(), false); !ss.ok()) return ss;
    Result<bool> takes = SinkTakesBytes();
    if (!takes.ok()) return takes.status().Prefixed(sink()->Describe());
    if (takes.value()) break;
    Sink::Wait w = sink()->WaitSpec();
    struct pollfd fds[2] = {{wakeup_.fd(), POLLIN, 0}, {w.fd, w.events, 0}};
    int wait = static_cast<int>(std::min<int64_t>(w.fd >= 0 ? 1000 : w.retry.count(), 1000));
    if (::poll(fds, w.fd >= 0 ? 2 : 1, wait) > 0 && fds[0].revents) wakeup_.Drain();
  }
  if (Status ss = pipeline_.SyncSink(Clock::now(), true); !ss.ok()) return ss;
  pipeline_.Event(
      spdlog::level::info, nullptr, Acked(),
      sink()->Describe() + " takes bytes again: streaming again from " + FormatLsn(Acked()));
  return true;
}

Result<bool> SlotWorker::SinkTakesBytes() {
  SinkWriter& writer = pipeline_.writer();
  if (writer.buffered().empty()) return sink()->Probe();
  if (Status s = writer.Write(Clock::now()); !s.ok()) return s;
  return !writer.Blocked();
}

}  // namespace pgslotd
