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

void SnapshotDriver::Request(std::vector<TableName> tables) {
  requests_.push_back(std::move(tables));
}

bool SnapshotDriver::Turn(PgoutputFormatter* formatter, RecordBuffer* out, bool can_write,
                          Clock::time_point now) {
  TakeAnswer(now);
  bool wrote = false;
  TableName table = current_;
  if (can_write) {
    if (start_due_) {
      WriteLine("start", out);
      start_due_ = false;
      wrote = true;
    }
    if (pass_.ChunkDue()) {
      uint64_t before = out->size();
      uint64_t rows = pass_.WriteDue(out);
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
  if (wrote) {
    wrote_ = true;
    wrote_table_ = table;
  }
  return wrote;
}

void SnapshotDriver::Wrote(uint64_t offset) {
  if (!wrote_) return;
  wrote_ = false;
  if (!written_.empty() && written_.back().second == wrote_table_) {
    written_.back().first = offset;
  } else {
    written_.emplace_back(offset, wrote_table_);
  }
}

void SnapshotDriver::Rewind(uint64_t offset) {
  wrote_ = false;
  size_t kept = 0;
  while (kept < written_.size() && written_[kept].first <= offset) ++kept;
  std::vector<TableName> again;
  for (size_t i = kept; i < written_.size(); ++i) again.push_back(written_[i].second);
  written_.clear();
  if (again.empty()) return;
  working_ = true;
  if (state_ != State::kIdle && again.back() != current_) again.push_back(current_);
  Log(Level::warn, LogEvent{slot_, kInvalidLsn, nullptr, {}},
      "snapshot: lines of table " + Qualified(again.front()) +
          " were lost with the failed session; reading it again from its start");
  pass_.EndTable();
  discard_answer_ = reads_->busy();
  state_ = State::kIdle;
  start_due_ = false;
  failed_.clear();
  rows_ = 0;
  tables_.insert(tables_.begin(), again.begin(), again.end());
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
      if (described_.key_columns.empty()) {
        Fail("table " + Qualified(current_) +
             " has no primary key and no unique index over NOT NULL columns: its rows cannot be "
             "read in chunks; give it a primary key");
        break;
      }
      state_ = State::kBeginning;
      break;
    case State::kBeginning:
      start_due_ = true;
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
  failures_ = 0;  // each table has its own tries
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
      if (!given_up_) {
        Log(Level::info, LogEvent{slot_, kInvalidLsn, nullptr, {}},
            "snapshot done: " + std::to_string(rows_total_) + " rows of " +
                std::to_string(tables_done_) + " tables");
      }
      given_up_ = false;
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
  SnapshotAsk ask;  // empty until something is asked: this runs per message
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
        pass_.StartTable(described_, {}, formatter);
        started_ = now;
        Log(Level::info, LogEvent{slot_, kInvalidLsn, nullptr, {}},
            "snapshot of table " + Qualified(current_) + " starts");
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
  out->EndRecord(info);
}

SnapshotDriver::Figures SnapshotDriver::figures() const {
  Figures f;
  if (state_ != State::kIdle) f.table = Qualified(current_);
  f.rows = rows_;
  f.rows_total = rows_total_;
  f.tables_done = tables_done_;
  f.tables_left = tables_.size() + (state_ != State::kIdle ? 1 : 0);
  return f;
}

}  // namespace pgslotd
