// Small JSON writing helpers for the pgoutput formatter: string escaping with
// UTF-8 validation, number and document validation, LSN and timestamp text.
//
// Every writer appends to an `Out` that has Append(const char*, size_t) and
// Append(char): OutBuffer, or StringOut for building cached fragments. None
// of them allocates beyond what the output itself needs.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "pg/lsn.h"

namespace pgslotd::json {

// Adapts a std::string to the Out interface.
struct StringOut {
  std::string* s;
  void Append(const char* p, size_t n) { s->append(p, n); }
  void Append(char c) { s->push_back(c); }
};

// The length of the well-formed UTF-8 sequence that starts `p` (1 to 4), or
// 0 if the bytes there are not one (overlong forms, surrogates, code points
// above U+10FFFF and truncated sequences are all rejected).
size_t Utf8SequenceLength(const unsigned char* p, size_t n);

// Whether all of `s` is well-formed UTF-8.
bool IsValidUtf8(std::string_view s);

// Appends the JSON escaped form of `s` without quotes: '"' and '\' are
// escaped, control characters become \b \f \n \r \t or \u00XX, well-formed
// UTF-8 passes through as is, and every byte that is not part of a
// well-formed UTF-8 sequence becomes \ufffd.
template <typename Out>
void AppendEscaped(std::string_view s, Out* out);

// AppendEscaped between quotes.
template <typename Out>
void AppendString(std::string_view s, Out* out);

// Like AppendString when `s` is well-formed UTF-8; otherwise every byte is
// read as a Latin-1 character (bytes 0x80..0xFF become \u0080..\u00ff), so
// that no byte is lost.
template <typename Out>
void AppendStringOrLatin1(std::string_view s, Out* out);

// Appends `"\\x<hex>"`: PostgreSQL's bytea hex text as a JSON string.
template <typename Out>
void AppendHexString(std::string_view bytes, Out* out);

// Whether `s` is exactly one JSON number (RFC 8259 grammar).
bool IsNumber(std::string_view s);

// Whether `s` is one JSON value, optionally surrounded by whitespace, whose
// strings are well-formed UTF-8. Nesting depth is bounded only by `s`:
// `stack` (reused scratch storage) holds the open containers.
bool IsValidDocument(std::string_view s, std::string* stack);

// Whether `s` is the document `null` itself, optionally surrounded by
// whitespace (json keeps the whitespace it was given): not a document that
// holds a null inside, and not SQL NULL, which has no text at all.
bool IsNullDocument(std::string_view s);

// Appends a valid document (see IsValidDocument) unchanged except that line
// breaks (\n, \r, which valid JSON can only hold between tokens) become
// spaces, so that the output stays one line.
template <typename Out>
void AppendDocument(std::string_view s, Out* out);

// Room for FormatLsnTo and FormatTimestampTo.
constexpr size_t kLsnBufferSize = 20;
constexpr size_t kTimestampBufferSize = 40;

// Writes "X/Y" as FormatLsn does; returns its length.
size_t FormatLsnTo(Lsn lsn, char* buf);

// Writes a PostgreSQL timestamp (microseconds since 2000-01-01 00:00:00 UTC)
// as RFC 3339 UTC with six fractional digits, e.g.
// "2026-11-25T07:35:10.123456Z"; returns its length. Years outside
// 0000..9999 (only reachable from garbage input) are written with as many
// digits as they need and a '-' sign when negative.
size_t FormatTimestampTo(int64_t pg_micros, char* buf);

// Writes the decimal form of `v`; returns its length (buf >= 21 bytes).
size_t FormatUnsigned(uint64_t v, char* buf);

}  // namespace pgslotd::json
