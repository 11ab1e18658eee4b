#include "snapshot/snapshot_driver.h"

#include <algorithm>
#include <cstdio>

#include "decode/json.h"
#include "util/log.h"

namespace pgslotd {

namespace {

// A failed read is asked again after this long; a table whose reads keep
// failing this many times running is given up.
constexpr std::chrono::seconds kRetryDelay{1};
constexpr int kMaxFailures = 10;
// A table whose chunks' watermarks miss the stream this many times running
// fails.
constexpr int kMaxWatermarksMissed = 3;

std::string Qualified(const SnapshotDriver::TableName& t) { return t.first + "." + t.second; }

void Put(OutBuffer* o, std::string_view s) { o->Append(s.data(), s.size()); }

void PutString(OutBuffer* o, std::string_view s) {
  std::string escaped;
  json::StringOut out{&escaped};
  json::AppendString(s, &out);
  Put(o, escaped);
}

}  // namespace

SnapshotDriver::SnapshotDriver(std::string slot, std::vector<std::string> publications,
                               uint32_t chunk_rows, SnapshotReads* reads)
    : slot_(slot),
      publications_(std::move(publications)),
      chunk_rows_(chunk_rows),
      reads_(reads),
      pass_(std::move(slot), chunk_rows) {}

void SnapshotDriver::Request(std::vector<TableName> tables, const std::string& request_id) {
  // Queued after everything: every remembered progress holds it too.
  auto add = [&](SnapshotProgress* p) {
    if (tables.empty()) p->queue.emplace_back();
    p->queue.insert(p->queue.end(), tables.begin(), tables.end());
    if (!request_id.empty()) p->requests.push_back(request_id);
  };
  add(&base_);
  for (auto& entry : history_) add(&entry.second);
  requests_.push_back(std::move(tables));
  if (!request_id.empty()) request_ids_.push_back(request_id);
}

bool SnapshotDriver::HoldsRequest(const std::string& request_id) const {
  return std::find(request_ids_.begin(), request_ids_.end(), request_id) != request_ids_.end();
}

void SnapshotDriver::RequestFilesGone(const std::vector<std::string>& ids) {
  for (const std::string& id : ids) {
    if (std::find(gone_ids_.begin(), gone_ids_.end(), id) == gone_ids_.end()) {
      gone_ids_.push_back(id);
    }
  }
  if (!working_) DropGoneIds();
}

void SnapshotDriver::DropGoneIds() {
  auto drop = [this](std::vector<std::string>* list) {
    list->erase(std::remove_if(list->begin(), list->end(),
                               [this](const std::string& id) {
                                 return std::find(gone_ids_.begin(), gone_ids_.end(), id) !=
                                        gone_ids_.end();
                               }),
                list->end());
  };
  drop(&request_ids_);
  drop(&base_.requests);
  for (auto& entry : history_) drop(&entry.second.requests);
  gone_ids_.clear();
}

void SnapshotDriver::Resume(const SnapshotProgress& progress) {
  Restore(progress);
  base_ = progress;
  history_.clear();
  if (!working_) DropGoneIds();
}

SnapshotProgress SnapshotDriver::Progress() const {
  SnapshotProgress p;
  if (state_ == State::kListing) {
    p.queue.emplace_back();
  } else if (state_ != State::kIdle) {
    p.queue.push_back(current_);
  }
  p.queue.insert(p.queue.end(), tables_.begin(), tables_.end());
  for (const std::vector<TableName>& r : requests_) {
    if (r.empty()) p.queue.emplace_back();
    p.queue.insert(p.queue.end(), r.begin(), r.end());
  }
  if (state_ != State::kIdle && state_ != State::kListing && start_written_) {
    p.started = true;
    p.rows = rows_;
    p.after_key = pass_.active() ? pass_.last_key() : resume_after_;
    p.ranges_done = pass_.active() ? pass_.ranges_done() : resume_ranges_done_;
    p.read_again = pass_.active() ? pass_.PendingKeys() : resume_keys_;
  }
  p.tables_done = tables_done_;
  p.rows_total = rows_total_;
  p.requests = request_ids_;
  return p;
}

const SnapshotProgress& SnapshotDriver::RememberedAt(uint64_t offset) const {
  const SnapshotProgress* p = &base_;
  for (const auto& entry : history_) {
    if (entry.first > offset) break;
    p = &entry.second;
  }
  return *p;
}

std::string SnapshotDriver::ProgressAt(uint64_t offset) const {
  const SnapshotProgress& p = RememberedAt(offset);
  return p.empty() && p.requests.empty() ? std::string() : SerializeSnapshotProgress(p);
}

void SnapshotDriver::Settled(uint64_t offset) {
  while (!history_.empty() && history_.front().first <= offset) {
    base_ = std::move(history_.front().second);
    history_.pop_front();
  }
}

void SnapshotDriver::Restore(const SnapshotProgress& progress) {
  pass_.EndTable();
  discard_answer_ = reads_->busy();
  state_ = State::kIdle;
  tables_.clear();
  requests_.clear();
  start_due_ = false;
  start_written_ = false;
  failed_.clear();
  failures_ = 0;
  rows_ = 0;
  resume_after_.clear();
  resume_ranges_done_ = false;
  resume_keys_.clear();
  tables_done_ = progress.tables_done;
  rows_total_ = progress.rows_total;
  request_ids_ = progress.requests;
  // Tables before the first "all" are the request being served; each
  // "all", and the tables after it, a request of its own.
  for (const SnapshotProgress::Item& item : progress.queue) {
    if (item.first.empty()) {
      requests_.emplace_back();
    } else if (requests_.empty()) {
      tables_.push_back(item);
    } else {
      requests_.push_back({item});
    }
  }
  working_ = !progress.queue.empty();
  if (progress.started && !tables_.empty()) {
    current_ = tables_.front();
    tables_.pop_front();
    state_ = State::kDescribing;
    start_written_ = true;
    rows_ = progress.rows;
    resume_after_ = progress.after_key;
    resume_ranges_done_ = progress.ranges_done;
    resume_keys_ = progress.read_again;
  }
}

bool SnapshotDriver::Turn(PgoutputFormatter* formatter, RecordBuffer* out, bool can_write,
                          Clock::time_point now) {
  TakeAnswer(now);
  bool wrote = false;
  if (can_write) {
    if (start_due_) {
      WriteLine("start", out);
      start_due_ = false;
      start_written_ = true;
      wrote = true;
    }
    if (pass_.ChunkDue()) {
      watermarks_missed_ = 0;
      uint64_t before = out->size();
      uint64_t rows = pass_.WriteDue(out);
      if (pass_.TakeWrittenDespiteChanges()) {
        Log(Level::warn, LogEvent{slot_, kInvalidLsn, nullptr, {}},
            "snapshot of table " + Qualified(current_) +
                " (no key, read whole): changed while it was read, 3 times running; its rows are "
                "written as read: changes made while it was read may appear twice, or be undone "
                "by its read lines");
      }
      rows_ += rows;
      rows_total_ += rows;
      wrote = wrote || out->size() != before;
    }
    if (state_ == State::kFinishing) {
      if (failed_.empty()) {
        WriteLine("end", out);
        Log(Level::info, LogEvent{slot_, kInvalidLsn, nullptr, {}},
            "snapshot of table " + Qualified(current_) + " done: " + std::to_string(rows_) +
                " rows in " +
                std::to_string(
                    std::chrono::duration_cast<std::chrono::milliseconds>(now - started_).count()) +
                " ms");
      } else {
        WriteLine("failed", out);
      }
      wrote = true;
      NextTable();
    }
  }
  AskNext(formatter, can_write, now);
  wrote_ = wrote_ || wrote;
  return wrote;
}

void SnapshotDriver::StreamAt(Lsn received) {
  if (state_ != State::kReading || !pass_.WatermarkMissed(received)) return;
  if (++watermarks_missed_ >= kMaxWatermarksMissed) {
    Fail("the watermarks of its chunks do not reach the slot's stream (" +
         std::to_string(kMaxWatermarksMissed) +
         " running): the snapshot's connection reaches another server than the slot's "
         "(several hosts in connection?)");
    return;
  }
  Log(Level::warn, LogEvent{slot_, received, nullptr, {}},
      "snapshot: the watermark of a chunk of table " + Qualified(current_) +
          " did not come, and the stream is past where the server wrote it (a failover?): "
          "reading the chunk again");
}

void SnapshotDriver::Wrote(uint64_t offset) {
  if (!wrote_) return;
  wrote_ = false;
  if (!history_.empty() && history_.back().first == offset) history_.pop_back();
  history_.emplace_back(offset, Progress());
}

void SnapshotDriver::ProgressChangedSilently() {
  if (wrote_) return;  // Wrote takes the progress with the lines
  (history_.empty() ? base_ : history_.back().second) = Progress();
}

void SnapshotDriver::Rewind(uint64_t offset) {
  wrote_ = false;
  if (history_.empty() || history_.back().first <= offset) return;  // nothing lost
  SnapshotProgress kept = RememberedAt(offset);
  while (!history_.empty() && history_.back().first > offset) history_.pop_back();
  std::string where = "from its start";
  if (kept.started) {
    where = "after the " + std::to_string(kept.rows) + " rows the output kept";
  }
  Restore(kept);
  if (!working_) DropGoneIds();
  if (kept.empty()) return;
  const std::string next = kept.queue.front().first.empty()
                               ? std::string("listing the tables")
                               : "table " + Qualified(kept.queue.front()) + " " + where;
  Log(Level::warn, LogEvent{slot_, kInvalidLsn, nullptr, {}},
      "snapshot: lines were lost with the failed session; going on with " + next);
}

void SnapshotDriver::TakeAnswer(Clock::time_point now) {
  if (!reads_->busy()) return;
  std::optional<SnapshotAnswer> answer = reads_->TakeAnswer();
  if (!answer) return;
  if (discard_answer_) {
    discard_answer_ = false;
    return;
  }
  if (answer->kind != SnapshotAsk::Kind::kClose) Answered(std::move(*answer), now);
}

void SnapshotDriver::Answered(SnapshotAnswer answer, Clock::time_point now) {
  if (!answer.status.ok()) {
    bool retry = answer.status.code() == Status::Code::kRetryable && ++failures_ < kMaxFailures;
    last_error_ = answer.status.message();
    if (state_ == State::kReading) pass_.Failed();
    if (retry) {
      Log(Level::warn, LogEvent{slot_, kInvalidLsn, nullptr, {}},
          "snapshot: " + answer.status.message() + " (trying again)");
      retry_at_ = now + kRetryDelay;  // then asked again as it was
      return;
    }
    if (state_ == State::kListing) {
      Log(Level::err, LogEvent{slot_, kInvalidLsn, nullptr, {}},
          "snapshot given up: " + answer.status.message());
      state_ = State::kIdle;
      given_up_ = true;
      return;
    }
    Fail(answer.status.message());
    return;
  }
  failures_ = 0;
  switch (state_) {
    case State::kListing:
      for (auto& t : answer.tables) tables_.push_back(std::move(t));
      state_ = State::kIdle;
      NextTable();
      break;
    case State::kDescribing:
      described_ = std::move(answer.described);
      if (described_.key_columns.empty() && !read_keyless_whole_) {
        Fail("table " + Qualified(current_) +
             " has no primary key and no unique index over NOT NULL columns: its rows cannot be "
             "read in chunks; give it a primary key, or set snapshot_keyless: read_whole to read "
             "it whole");
        break;
      }
      if (described_.key_columns.empty()) {
        Log(Level::info, LogEvent{slot_, kInvalidLsn, nullptr, {}},
            "snapshot: table " + Qualified(current_) +
                " has no key: it is read whole, in one chunk (snapshot_keyless: read_whole)");
      }
      state_ = State::kBeginning;
      break;
    case State::kBeginning:
      start_due_ = !start_written_;  // a resumed pass has its start line
      state_ = State::kReading;
      break;
    case State::kReading:
      pass_.Answered(std::move(answer.chunk));
      break;
    default:
      break;
  }
}

void SnapshotDriver::Fail(const std::string& error) {
  failed_ = error.empty() ? "unknown error" : error;
  Log(Level::err, LogEvent{slot_, kInvalidLsn, nullptr, {}},
      "snapshot of table " + Qualified(current_) + " failed after " + std::to_string(rows_) +
          " rows: " + failed_);
  if (pass_.active()) {  // its progress, until the failed line is written
    resume_after_ = pass_.last_key();
    resume_ranges_done_ = pass_.ranges_done();
    resume_keys_ = pass_.PendingKeys();
  }
  pass_.EndTable();
  state_ = State::kFinishing;
}

void SnapshotDriver::NextTable() {
  if (state_ == State::kFinishing) {
    pass_.EndTable();
    ++tables_done_;
    state_ = State::kIdle;
  }
  failed_.clear();
  rows_ = 0;
  start_written_ = false;
  resume_after_.clear();
  resume_ranges_done_ = false;
  resume_keys_.clear();
  failures_ = 0;  // each table has its own tries
  watermarks_missed_ = 0;
  if (state_ != State::kIdle) return;
  if (tables_.empty()) return;
  current_ = tables_.front();
  tables_.pop_front();
  state_ = State::kDescribing;
}

void SnapshotDriver::AskNext(PgoutputFormatter* formatter, bool between, Clock::time_point now) {
  if (reads_->busy() || now < retry_at_) return;
  if (state_ == State::kIdle) {
    if (!tables_.empty()) NextTable();
    if (state_ == State::kIdle && requests_.empty() && working_) {
      working_ = false;
      DropGoneIds();
      if (!given_up_) {
        Log(Level::info, LogEvent{slot_, kInvalidLsn, nullptr, {}},
            "snapshot done: " + std::to_string(rows_total_) + " rows of " +
                std::to_string(tables_done_) + " tables");
      }
      given_up_ = false;
      ProgressChangedSilently();
      SnapshotAsk close;
      close.kind = SnapshotAsk::Kind::kClose;
      reads_->Ask(std::move(close));
      return;
    }
    if (state_ == State::kIdle && !requests_.empty()) {
      working_ = true;
      std::vector<TableName> tables = std::move(requests_.front());
      requests_.pop_front();
      if (!tables.empty()) {
        tables_.insert(tables_.end(), tables.begin(), tables.end());
        NextTable();
      } else {
        state_ = State::kListing;
      }
    }
  }
  // Nothing to ask: return before making an ask (this runs per message,
  // and a slot that may take snapshots has a driver while none runs).
  if (state_ == State::kIdle || state_ == State::kFinishing) return;
  SnapshotAsk ask;
  switch (state_) {
    case State::kListing:
      ask.kind = SnapshotAsk::Kind::kListTables;
      ask.publications = publications_;
      break;
    case State::kDescribing:
      ask.kind = SnapshotAsk::Kind::kDescribe;
      ask.publications = publications_;
      ask.schema = current_.first;
      ask.table = current_.second;
      break;
    case State::kBeginning:
      // Watch the table from here on, then wait for what committed before.
      if (!pass_.active()) {
        if (!between) return;  // no transaction may be half seen
        pass_.StartTable(described_, resume_after_, formatter);
        pass_.ReadAgain(resume_keys_, resume_ranges_done_);
        started_ = now;
        Log(Level::info, LogEvent{slot_, kInvalidLsn, nullptr, {}},
            "snapshot of table " + Qualified(current_) +
                (start_written_ ? " goes on after its first " + std::to_string(rows_) + " rows"
                                : std::string(" starts")));
      }
      ask.kind = SnapshotAsk::Kind::kBeginPass;
      ask.recently_committed = pass_.RecentlyCommitted();
      break;
    case State::kReading: {
      if (pass_.TableDone()) {
        state_ = State::kFinishing;
        return;
      }
      if (pass_.outstanding()) return;
      Result<ChunkRequest> request = pass_.NextRequest();
      if (!request.ok()) {
        retry_at_ = now + kRetryDelay;
        return;
      }
      ask.kind = SnapshotAsk::Kind::kRead;
      ask.described = described_;
      ask.chunk = std::move(request.value());
      ask.chunk_rows = chunk_rows_;
      break;
    }
    default:
      return;
  }
  reads_->Ask(std::move(ask));
}

void SnapshotDriver::WriteLine(const char* event, RecordBuffer* out) {
  OutBuffer* o = out->bytes();
  Put(o, "{\"op\":\"snapshot\",\"event\":\"");
  Put(o, event);
  Put(o, "\",\"schema\":");
  PutString(o, current_.first);
  Put(o, ",\"table\":");
  PutString(o, current_.second);
  if (std::string_view(event) != "start") {
    Put(o, ",\"rows\":");
    Put(o, std::to_string(rows_));
  }
  if (!failed_.empty()) {
    Put(o, ",\"error\":");
    PutString(o, failed_);
  }
  Put(o, "}\n");
  RecordInfo info;
  info.kind = RecordKind::kMessage;
  // The table's (a Kafka sink's topic), without a key (its partition 0).
  info.table = out->InternTable(current_.first, current_.second);
  out->EndRecord(info);
}

SnapshotDriver::Figures SnapshotDriver::figures() const {
  Figures f;
  if (state_ != State::kIdle) f.table = Qualified(current_);
  // described_ is the current table's from its description on.
  if (state_ == State::kBeginning || state_ == State::kReading || state_ == State::kFinishing) {
    f.table_estimate = described_.estimated_rows;
  }
  f.rows = rows_;
  f.rows_total = rows_total_;
  f.tables_done = tables_done_;
  f.tables_left = tables_.size() + (state_ != State::kIdle ? 1 : 0);
  return f;
}

}  // namespace pgslotd
