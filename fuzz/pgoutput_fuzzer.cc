// libFuzzer target for the json (pgoutput) formatter.
//
// Input: a sequence of pgoutput messages, each framed as a 2-byte
// big-endian length followed by that many bytes (a length running past the
// end takes what is left). Each message is copied into a heap block of
// exactly its size, so that AddressSanitizer catches any read past its end,
// and fed to one PgoutputFormatter (include_transactions on, a temporary
// spool directory, a 64-byte memory limit so that streamed changes go
// through spool files). LSNs increase as a server's would.
//
// Beyond "no crash, no sanitizer report", every call is checked against the
// Formatter contract: an error is kRetryable with a "pgoutput: " message and
// appends nothing; the output is whole lines, each one valid JSON object.
// After an error the formatter is Reset, as the worker does before a new
// stream; at the end of the input it is Reset and must hold no spool data.
// The spool directory is made under $TMPDIR (else /tmp) and removed at exit.
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <memory>
#include <string>
#include <string_view>

#include "decode/json.h"
#include "decode/pgoutput_formatter.h"
#include "util/out_buffer.h"

namespace {

pgslotd::PgoutputFormatter* g_formatter = nullptr;
std::string* g_json_stack = nullptr;
std::string* g_dir = nullptr;  // holds the spool directory

// At a normal exit: the formatter removes its spool files, then the
// directories go.
void CleanUp() {
  delete g_formatter;
  g_formatter = nullptr;
  ::rmdir((*g_dir + "/spool").c_str());
  ::rmdir(g_dir->c_str());
}

[[noreturn]] void Fail(const char* what, std::string_view detail) {
  std::fprintf(stderr, "pgoutput_fuzzer: %s: %.*s\n", what, static_cast<int>(detail.size()),
               detail.data());
  std::abort();
}

// Every record must be one line, the records must cover every byte, and
// a key must be a valid JSON object.
void CheckRecords(const pgslotd::RecordBuffer& out) {
  uint64_t at = out.offset();
  for (size_t i = 0; i < out.record_count(); ++i) {
    pgslotd::Record r = out.record(i);
    if (r.info->end <= at) Fail("an empty record", "");
    std::string_view whole(out.data() + (at - out.offset()), r.info->end - at);
    if (whole.back() != '\n' || whole.find('\n') != whole.size() - 1) Fail("not one line", whole);
    if (!r.key.empty() &&
        (r.key.front() != '{' || !pgslotd::json::IsValidDocument(r.key, g_json_stack))) {
      Fail("key not a JSON object", r.key);
    }
    at = r.info->end;
  }
  if (at != out.offset() + out.size()) Fail("bytes outside records", "");
}

// Every byte appended must form complete lines of valid JSON objects.
void CheckOutput(const pgslotd::RecordBuffer& out) {
  CheckRecords(out);
  std::string_view all(out.data(), out.size());
  if (!all.empty() && all.back() != '\n') Fail("output does not end with a newline", all);
  size_t start = 0;
  while (start < all.size()) {
    size_t nl = all.find('\n', start);
    std::string_view line = all.substr(start, nl - start);
    if (line.empty() || line.front() != '{' || line.back() != '}') Fail("not an object", line);
    if (!pgslotd::json::IsValidDocument(line, g_json_stack)) Fail("invalid JSON", line);
    start = nl + 1;
  }
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int* /*argc*/, char*** /*argv*/) {
  const char* tmp = std::getenv("TMPDIR");
  g_dir = new std::string(std::string(tmp && *tmp ? tmp : "/tmp") + "/pgoutput-fuzzer-XXXXXX");
  if (!::mkdtemp(g_dir->data())) {
    std::perror("mkdtemp");
    std::abort();
  }
  std::atexit(CleanUp);
  pgslotd::JsonOptions options;
  options.include_transactions = true;
  options.spool_dir = *g_dir + "/spool";
  options.spool_memory = 64;
  options.slot_name = "fuzz";
  g_formatter = new pgslotd::PgoutputFormatter(options);
  g_json_stack = new std::string();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static pgslotd::RecordBuffer out(4096);
  out.set_wants_keys(true);
  pgslotd::Lsn lsn = 0x1000000;
  size_t pos = 0;
  while (size - pos >= 2) {
    size_t len = static_cast<size_t>(data[pos]) << 8 | data[pos + 1];
    pos += 2;
    if (len > size - pos) len = size - pos;
    std::unique_ptr<char[]> msg(new char[len]);
    if (len > 0) std::memcpy(msg.get(), data + pos, len);
    pos += len;

    pgslotd::Status s = g_formatter->Format(std::string_view(msg.get(), len), lsn, &out);
    if (!s.ok()) {
      if (s.code() != pgslotd::Status::Code::kRetryable) Fail("not kRetryable", s.message());
      if (s.message().rfind("pgoutput: ", 0) != 0) Fail("unexpected message", s.message());
      // Spool read failures are the one documented partial case; the
      // fuzzer never causes them.
      if (!out.empty()) Fail("an error appended output", s.message());
      g_formatter->Reset();
    }
    CheckOutput(out);
    out.Clear();
    lsn += 16 + len;
  }
  g_formatter->Reset();
  if (g_formatter->spool().memory_used() != 0 || g_formatter->spool().files_open() != 0) {
    Fail("Reset left spool data", "");
  }
  return 0;
}
