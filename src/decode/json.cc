#include "decode/json.h"

#include <array>

#include "util/out_buffer.h"

namespace pgslotd::json {

namespace {

constexpr char kHexDigits[] = "0123456789abcdef";

// Bytes that may be copied into a JSON string as they are: printable ASCII
// other than '"' and '\'. Bytes >= 0x80 are checked as UTF-8 separately.
constexpr std::array<bool, 256> MakePlainTable() {
  std::array<bool, 256> t{};
  for (int c = 0x20; c < 0x80; ++c) t[c] = true;
  t['"'] = false;
  t['\\'] = false;
  return t;
}
constexpr std::array<bool, 256> kPlain = MakePlainTable();

bool IsContinuation(unsigned char c) { return (c & 0xC0) == 0x80; }

bool IsJsonSpace(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

bool IsDigit(char c) { return c >= '0' && c <= '9'; }

bool IsHex(char c) { return IsDigit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F'); }

template <typename Out>
void AppendControlEscape(unsigned char c, Out* out) {
  switch (c) {
    case '"':
      out->Append("\\\"", 2);
      return;
    case '\\':
      out->Append("\\\\", 2);
      return;
    case '\b':
      out->Append("\\b", 2);
      return;
    case '\f':
      out->Append("\\f", 2);
      return;
    case '\n':
      out->Append("\\n", 2);
      return;
    case '\r':
      out->Append("\\r", 2);
      return;
    case '\t':
      out->Append("\\t", 2);
      return;
    default:
      break;
  }
  char buf[6] = {'\\', 'u', '0', '0', kHexDigits[c >> 4], kHexDigits[c & 0xF]};
  out->Append(buf, sizeof buf);
}

// Advances *p past one JSON number at the start of [*p, end). False if there
// is none there.
bool ScanNumber(const char** p, const char* end) {
  const char* q = *p;
  if (q < end && *q == '-') ++q;
  if (q == end) return false;
  if (*q == '0') {
    ++q;
  } else if (*q >= '1' && *q <= '9') {
    while (q < end && IsDigit(*q)) ++q;
  } else {
    return false;
  }
  if (q < end && *q == '.') {
    ++q;
    if (q == end || !IsDigit(*q)) return false;
    while (q < end && IsDigit(*q)) ++q;
  }
  if (q < end && (*q == 'e' || *q == 'E')) {
    ++q;
    if (q < end && (*q == '+' || *q == '-')) ++q;
    if (q == end || !IsDigit(*q)) return false;
    while (q < end && IsDigit(*q)) ++q;
  }
  *p = q;
  return true;
}

// Advances *p (at a '"') past one JSON string: valid escapes, no raw
// control characters, well-formed UTF-8.
bool ScanString(const char** p, const char* end) {
  const char* q = *p + 1;
  while (q < end) {
    unsigned char c = static_cast<unsigned char>(*q);
    if (c == '"') {
      *p = q + 1;
      return true;
    }
    if (c < 0x20) return false;
    if (c == '\\') {
      if (end - q < 2) return false;
      char e = q[1];
      if (e == 'u') {
        if (end - q < 6) return false;
        for (int i = 2; i < 6; ++i) {
          if (!IsHex(q[i])) return false;
        }
        q += 6;
      } else if (e == '"' || e == '\\' || e == '/' || e == 'b' || e == 'f' || e == 'n' ||
                 e == 'r' || e == 't') {
        q += 2;
      } else {
        return false;
      }
    } else if (c < 0x80) {
      ++q;
    } else {
      size_t len = Utf8SequenceLength(reinterpret_cast<const unsigned char*>(q),
                                      static_cast<size_t>(end - q));
      if (len == 0) return false;
      q += len;
    }
  }
  return false;
}

// Advances *p past `word` if [*p, end) starts with it.
bool ScanWord(const char** p, const char* end, std::string_view word) {
  if (static_cast<size_t>(end - *p) < word.size()) return false;
  if (std::string_view(*p, word.size()) != word) return false;
  *p += word.size();
  return true;
}

// Days since 1970-01-01 to a proleptic Gregorian date.
void CivilFromDays(int64_t days, int64_t* year, int* month, int* day) {
  // Count from 2000-03-01: every 400-year cycle from a 1 March has the same
  // 146097 days, and putting February last makes the leap day the final day
  // of its year.
  constexpr int64_t kDaysTo20000301 = 11017;
  constexpr int64_t kCycle = 146097;
  int64_t z = days - kDaysTo20000301;
  int64_t cycles = z / kCycle;
  if (z % kCycle < 0) --cycles;
  z -= cycles * kCycle;  // [0, 146096]
  int64_t y = 2000 + 400 * cycles;
  int64_t centuries = z / 36524;
  if (centuries > 3) centuries = 3;  // the cycle's last day (a 29 February)
  z -= centuries * 36524;
  int64_t quads = z / 1461;
  z -= quads * 1461;
  int64_t years = z / 365;
  if (years > 3) years = 3;  // the quad's last day (a 29 February)
  z -= years * 365;
  y += 100 * centuries + 4 * quads + years;
  // Month starts counted from 1 March.
  static constexpr int kStart[12] = {0, 31, 61, 92, 122, 153, 184, 214, 245, 275, 306, 337};
  int m = 11;
  while (z < kStart[m]) --m;
  *day = static_cast<int>(z - kStart[m]) + 1;
  *month = m < 10 ? m + 3 : m - 9;
  if (m >= 10) ++y;  // January and February belong to the next year
  *year = y;
}

void Put2(int v, char* p) {
  p[0] = static_cast<char>('0' + v / 10);
  p[1] = static_cast<char>('0' + v % 10);
}

}  // namespace

size_t Utf8SequenceLength(const unsigned char* p, size_t n) {
  if (n == 0) return 0;
  unsigned char c = p[0];
  if (c < 0x80) return 1;
  if (c < 0xC2) return 0;  // continuation byte or overlong 2-byte lead
  if (c < 0xE0) return n >= 2 && IsContinuation(p[1]) ? 2 : 0;
  if (c < 0xF0) {
    if (n < 3 || !IsContinuation(p[1]) || !IsContinuation(p[2])) return 0;
    if (c == 0xE0 && p[1] < 0xA0) return 0;   // overlong
    if (c == 0xED && p[1] >= 0xA0) return 0;  // UTF-16 surrogates
    return 3;
  }
  if (c < 0xF5) {
    if (n < 4 || !IsContinuation(p[1]) || !IsContinuation(p[2]) || !IsContinuation(p[3])) return 0;
    if (c == 0xF0 && p[1] < 0x90) return 0;   // overlong
    if (c == 0xF4 && p[1] >= 0x90) return 0;  // above U+10FFFF
    return 4;
  }
  return 0;
}

bool IsValidUtf8(std::string_view s) {
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  size_t n = s.size();
  size_t i = 0;
  while (i < n) {
    if (p[i] < 0x80) {
      ++i;
      continue;
    }
    size_t len = Utf8SequenceLength(p + i, n - i);
    if (len == 0) return false;
    i += len;
  }
  return true;
}

template <typename Out>
void AppendEscaped(std::string_view s, Out* out) {
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  size_t n = s.size();
  size_t run = 0;  // start of the bytes not yet appended
  size_t i = 0;
  while (i < n) {
    unsigned char c = p[i];
    if (kPlain[c]) {
      ++i;
      continue;
    }
    if (c >= 0x80) {
      size_t len = Utf8SequenceLength(p + i, n - i);
      if (len > 0) {
        i += len;
        continue;
      }
    }
    out->Append(s.data() + run, i - run);
    if (c >= 0x80) {
      out->Append("\\ufffd", 6);
    } else {
      AppendControlEscape(c, out);
    }
    run = ++i;
  }
  out->Append(s.data() + run, n - run);
}

template <typename Out>
void AppendString(std::string_view s, Out* out) {
  out->Append('"');
  AppendEscaped(s, out);
  out->Append('"');
}

template <typename Out>
void AppendStringOrLatin1(std::string_view s, Out* out) {
  if (IsValidUtf8(s)) {
    AppendString(s, out);
    return;
  }
  out->Append('"');
  size_t run = 0;
  for (size_t i = 0; i < s.size(); ++i) {
    unsigned char c = static_cast<unsigned char>(s[i]);
    if (kPlain[c]) continue;
    out->Append(s.data() + run, i - run);
    if (c >= 0x80) {
      char buf[6] = {'\\', 'u', '0', '0', kHexDigits[c >> 4], kHexDigits[c & 0xF]};
      out->Append(buf, sizeof buf);
    } else {
      AppendControlEscape(c, out);
    }
    run = i + 1;
  }
  out->Append(s.data() + run, s.size() - run);
  out->Append('"');
}

template <typename Out>
void AppendHexString(std::string_view bytes, Out* out) {
  out->Append("\"\\\\x", 4);
  char buf[64];
  size_t used = 0;
  for (char ch : bytes) {
    unsigned char c = static_cast<unsigned char>(ch);
    buf[used++] = kHexDigits[c >> 4];
    buf[used++] = kHexDigits[c & 0xF];
    if (used == sizeof buf) {
      out->Append(buf, used);
      used = 0;
    }
  }
  out->Append(buf, used);
  out->Append('"');
}

bool IsNumber(std::string_view s) {
  const char* p = s.data();
  const char* end = p + s.size();
  return ScanNumber(&p, end) && p == end;
}

bool IsValidDocument(std::string_view s, std::string* stack) {
  enum class Expect { kValue, kKey, kAfterValue };
  stack->clear();
  const char* p = s.data();
  const char* end = p + s.size();
  Expect expect = Expect::kValue;
  for (;;) {
    while (p < end && IsJsonSpace(*p)) ++p;
    switch (expect) {
      case Expect::kValue:
        if (p == end) return false;
        if (*p == '{' || *p == '[') {
          char open = *p++;
          char close = open == '{' ? '}' : ']';
          while (p < end && IsJsonSpace(*p)) ++p;
          if (p < end && *p == close) {
            ++p;
            expect = Expect::kAfterValue;
          } else {
            stack->push_back(open);
            expect = open == '{' ? Expect::kKey : Expect::kValue;
          }
        } else if (*p == '"') {
          if (!ScanString(&p, end)) return false;
          expect = Expect::kAfterValue;
        } else if (ScanWord(&p, end, "true") || ScanWord(&p, end, "false") ||
                   ScanWord(&p, end, "null") || ScanNumber(&p, end)) {
          expect = Expect::kAfterValue;
        } else {
          return false;
        }
        break;
      case Expect::kKey:
        if (p == end || *p != '"' || !ScanString(&p, end)) return false;
        while (p < end && IsJsonSpace(*p)) ++p;
        if (p == end || *p != ':') return false;
        ++p;
        expect = Expect::kValue;
        break;
      case Expect::kAfterValue:
        if (stack->empty()) return p == end;
        if (p == end) return false;
        if (*p == ',') {
          ++p;
          expect = stack->back() == '{' ? Expect::kKey : Expect::kValue;
        } else if ((*p == '}' && stack->back() == '{') || (*p == ']' && stack->back() == '[')) {
          ++p;
          stack->pop_back();
        } else {
          return false;
        }
        break;
    }
  }
}

bool IsNullDocument(std::string_view s) {
  size_t begin = 0;
  size_t end = s.size();
  while (begin < end && IsJsonSpace(s[begin])) ++begin;
  while (end > begin && IsJsonSpace(s[end - 1])) --end;
  return s.substr(begin, end - begin) == "null";
}

template <typename Out>
void AppendDocument(std::string_view s, Out* out) {
  size_t run = 0;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] != '\n' && s[i] != '\r') continue;
    out->Append(s.data() + run, i - run);
    out->Append(' ');
    run = i + 1;
  }
  out->Append(s.data() + run, s.size() - run);
}

size_t FormatUnsigned(uint64_t v, char* buf) {
  char tmp[20];
  size_t n = 0;
  do {
    tmp[n++] = static_cast<char>('0' + v % 10);
    v /= 10;
  } while (v != 0);
  for (size_t i = 0; i < n; ++i) buf[i] = tmp[n - 1 - i];
  return n;
}

size_t FormatLsnTo(Lsn lsn, char* buf) {
  size_t n = 0;
  auto put_hex = [&](uint32_t v) {
    char tmp[8];
    size_t k = 0;
    do {
      tmp[k++] = "0123456789ABCDEF"[v & 0xF];
      v >>= 4;
    } while (v != 0);
    while (k > 0) buf[n++] = tmp[--k];
  };
  put_hex(static_cast<uint32_t>(lsn >> 32));
  buf[n++] = '/';
  put_hex(static_cast<uint32_t>(lsn));
  return n;
}

size_t FormatTimestampTo(int64_t pg_micros, char* buf) {
  constexpr int64_t kMicrosPerDay = 86400LL * 1000000;
  constexpr int64_t kDays1970To2000 = 10957;
  int64_t days = pg_micros / kMicrosPerDay;
  int64_t rem = pg_micros % kMicrosPerDay;
  if (rem < 0) {
    rem += kMicrosPerDay;
    --days;
  }
  int64_t year;
  int month;
  int day;
  CivilFromDays(days + kDays1970To2000, &year, &month, &day);
  size_t n = 0;
  if (year >= 0 && year <= 9999) {
    int y = static_cast<int>(year);
    Put2(y / 100, buf);
    Put2(y % 100, buf + 2);
    n = 4;
  } else {
    uint64_t magnitude = year < 0 ? 0 - static_cast<uint64_t>(year) : static_cast<uint64_t>(year);
    if (year < 0) buf[n++] = '-';
    n += FormatUnsigned(magnitude, buf + n);
  }
  int64_t secs = rem / 1000000;
  int64_t micros = rem % 1000000;
  buf[n++] = '-';
  Put2(month, buf + n);
  n += 2;
  buf[n++] = '-';
  Put2(day, buf + n);
  n += 2;
  buf[n++] = 'T';
  Put2(static_cast<int>(secs / 3600), buf + n);
  n += 2;
  buf[n++] = ':';
  Put2(static_cast<int>(secs / 60 % 60), buf + n);
  n += 2;
  buf[n++] = ':';
  Put2(static_cast<int>(secs % 60), buf + n);
  n += 2;
  buf[n++] = '.';
  for (int i = 5; i >= 0; --i) {
    buf[n + i] = static_cast<char>('0' + micros % 10);
    micros /= 10;
  }
  n += 6;
  buf[n++] = 'Z';
  return n;
}

template void AppendEscaped(std::string_view, OutBuffer*);
template void AppendEscaped(std::string_view, StringOut*);
template void AppendString(std::string_view, OutBuffer*);
template void AppendString(std::string_view, StringOut*);
template void AppendStringOrLatin1(std::string_view, OutBuffer*);
template void AppendStringOrLatin1(std::string_view, StringOut*);
template void AppendHexString(std::string_view, OutBuffer*);
template void AppendHexString(std::string_view, StringOut*);
template void AppendDocument(std::string_view, OutBuffer*);
template void AppendDocument(std::string_view, StringOut*);

}  // namespace pgslotd::json
