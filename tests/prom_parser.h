// A strict parser for the Prometheus text exposition format (version
// 0.0.4), for tests: every line must be a well-formed HELP, TYPE, or sample
// line; a family's TYPE comes before its samples and only once; metric and
// label names follow the format's rules; values are floats; each line ends
// with "\n". Returns false with *err naming the line on any deviation.
#pragma once

#include <cmath>
#include <cstdlib>
#include <map>
#include <regex>
#include <set>
#include <string>

namespace pgslotd::test {

struct PromSample {
  std::string name;
  std::map<std::string, std::string> labels;
  double value = 0;
};

inline bool ParsePrometheusText(const std::string& text, std::vector<PromSample>* samples,
                                std::map<std::string, std::string>* types, std::string* err) {
  static const std::regex kHelp(R"(# HELP ([a-zA-Z_:][a-zA-Z0-9_:]*) (.*))");
  static const std::regex kType(
      R"(# TYPE ([a-zA-Z_:][a-zA-Z0-9_:]*) (counter|gauge|histogram|summary|untyped))");
  static const std::regex kSample(
      R"(([a-zA-Z_:][a-zA-Z0-9_:]*)(\{([^}]*)\})? ([^ ]+)( -?[0-9]+)?)");
  static const std::regex kLabel(R"(([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\\n]|\\[\\"n])*)\"(,|$))");
  if (!text.empty() && text.back() != '\n') {
    *err = "the text does not end with a newline";
    return false;
  }
  std::set<std::string> seen_samples_of;
  size_t start = 0;
  int line_no = 0;
  while (start < text.size()) {
    size_t end = text.find('\n', start);
    std::string line = text.substr(start, end - start);
    start = end + 1;
    ++line_no;
    std::smatch m;
    auto fail = [&](const std::string& why) {
      *err = "line " + std::to_string(line_no) + ": " + why + ": " + line;
      return false;
    };
    if (line.empty()) return fail("empty line");
    if (line.rfind("# HELP ", 0) == 0) {
      if (!std::regex_match(line, m, kHelp)) return fail("malformed HELP");
      continue;
    }
    if (line.rfind("# TYPE ", 0) == 0) {
      if (!std::regex_match(line, m, kType)) return fail("malformed TYPE");
      if (types->count(m[1])) return fail("second TYPE for one family");
      if (seen_samples_of.count(m[1])) return fail("TYPE after samples");
      (*types)[m[1]] = m[2];
      continue;
    }
    if (line[0] == '#') return fail("unknown comment");
    if (!std::regex_match(line, m, kSample)) return fail("malformed sample");
    PromSample s;
    s.name = m[1];
    std::string labels = m[3];
    while (!labels.empty()) {
      std::smatch lm;
      if (!std::regex_search(labels, lm, kLabel) || lm.position(0) != 0) {
        return fail("malformed labels");
      }
      if (s.labels.count(lm[1])) return fail("duplicate label");
      s.labels[lm[1]] = lm[2];
      labels = lm.suffix();
    }
    std::string v = m[4];
    char* endp = nullptr;
    s.value = std::strtod(v.c_str(), &endp);
    if (v != "NaN" && v != "+Inf" && v != "-Inf" && (endp == v.c_str() || *endp != '\0')) {
      return fail("value is not a float");
    }
    seen_samples_of.insert(s.name);
    samples->push_back(std::move(s));
  }
  return true;
}

}  // namespace pgslotd::test
