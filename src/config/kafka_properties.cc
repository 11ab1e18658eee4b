#include "config/kafka_properties.h"

#include <librdkafka/rdkafka.h>
#include <sys/stat.h>

#include <cstring>
#include <fstream>

namespace pgslotd {

namespace {

// Settings pgslotd's guarantees rest on: the operator cannot change them.
constexpr const char* kFixed[][2] = {
    {"acks", "all"},
    {"enable.idempotence", "true"},
};

// What the reader of committed positions needs: only what committed
// transactions hold, and to know where the partition ends.
constexpr const char* kReaderFixed[][2] = {
    {"isolation.level", "read_committed"},
    {"enable.partition.eof", "true"},
    {"enable.auto.commit", "false"},
};

// pgslotd's defaults, unless the operator sets them.
constexpr const char* kDefaults[][2] = {
    {"queue.buffering.max.kbytes", "32768"},
    {"partitioner", "murmur2_random"},
    {"client.id", "pgslotd"},
};

// Whether the value of property `name` may be a secret, which no message
// may show (librdkafka's own messages quote a value they refuse).
bool MayBeSecret(const std::string& name) {
  for (const char* word : {"password", "secret", "key", "token", "jaas"}) {
    if (name.find(word) != std::string::npos) return true;
  }
  return false;
}

bool Set(rd_kafka_conf_t* conf, const std::string& name, const std::string& value,
         std::string* err) {
  char errstr[512];
  rd_kafka_conf_res_t res =
      rd_kafka_conf_set(conf, name.c_str(), value.c_str(), errstr, sizeof(errstr));
  if (res == RD_KAFKA_CONF_OK) return true;
  if (res == RD_KAFKA_CONF_UNKNOWN) {
    *err = "unknown Kafka property " + name + " (librdkafka 2.0's CONFIGURATION.md lists them)";
  } else if (MayBeSecret(name)) {
    *err = "Kafka property " + name + ": invalid value";
  } else {
    *err = "Kafka property " + name + ": " + errstr;
  }
  return false;
}

// What is wrong with a topic template, or "".
std::string TopicTemplateProblem(const std::string& text) {
  for (size_t i = 0; i < text.size(); ++i) {
    char c = text[i];
    if (c == '{') {
      size_t close = text.find('}', i);
      std::string name =
          close == std::string::npos ? text.substr(i) : text.substr(i, close - i + 1);
      if (name != "{slot}" && name != "{schema}" && name != "{table}") {
        return "unknown placeholder " + name + " in topic (use {slot}, {schema} and {table})";
      }
      i = close;
      continue;
    }
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '_' || c == '-';
    if (!ok) {
      return std::string("topic has the character '") + c +
             "', which Kafka topic names cannot hold (use a-z, A-Z, 0-9, '.', '_' and '-')";
    }
  }
  return "";
}

std::string Trim(const std::string& s) {
  size_t b = s.find_first_not_of(" \t\r");
  if (b == std::string::npos) return "";
  size_t e = s.find_last_not_of(" \t\r");
  return s.substr(b, e - b + 1);
}

}  // namespace

std::string PropertiesFileProblem(const std::string& path) {
  struct stat st;
  if (stat(path.c_str(), &st) != 0) return "cannot read " + path;
  if ((st.st_mode & 077) != 0) {
    return path + " may be read by others (it may hold secrets): chmod 600 it";
  }
  return "";
}

std::string CheckKafkaSink(const SlotConfig& config, bool check_paths, const char** key) {
  const SinkConfig& k = config.sink;
  *key = "topic";
  std::string problem = TopicTemplateProblem(TopicTemplate(config));
  if (!problem.empty()) return problem;
  std::string bare = TopicTemplate(config);
  for (const char* name : {"{schema}", "{table}"}) {
    for (size_t at = bare.find(name); at != std::string::npos; at = bare.find(name)) {
      bare.erase(at, std::strlen(name));
    }
  }
  if (bare.find_first_not_of('.') == std::string::npos) {
    return "topic leaves records without a table (begin and commit lines, messages, truncates) "
           "no name: add {slot} or a fixed part";
  }
  if (config.format != OutputFormat::kJson &&
      TopicTemplate(config).find("{table}") != std::string::npos) {
    return "topic names {table}, but only format json knows each record's table";
  }
  if (config.format != OutputFormat::kJson &&
      TopicTemplate(config).find("{schema}") != std::string::npos) {
    return "topic names {schema}, but only format json knows each record's table";
  }
  *key = "position_topic";
  if (k.position_topic.find('{') != std::string::npos)
    return "position_topic takes no placeholders";
  problem = TopicTemplateProblem(k.position_topic);
  if (!problem.empty()) return "position_" + problem;
  if (!k.exactly_once && !k.transactional_id.empty()) {
    *key = "transactional_id";
    return "transactional_id is for exactly_once: true (an at-least-once producer has none)";
  }
  bool with_file = check_paths && !k.properties_file.empty();
  if (with_file) {
    *key = "properties_file";
    problem = PropertiesFileProblem(k.properties_file);
    if (!problem.empty()) return problem;
  }
  // The properties alone, then with the file's.
  *key = "properties";
  std::string err;
  rd_kafka_conf_t* conf = MakeProducerConf(config, &err, false);
  if (conf == nullptr) return err;
  rd_kafka_conf_destroy(conf);
  if (!with_file) return "";
  *key = "properties_file";
  conf = MakeProducerConf(config, &err, true);
  if (conf == nullptr)
    return err.rfind(k.properties_file, 0) == 0 ? err : k.properties_file + ": " + err;
  rd_kafka_conf_destroy(conf);
  return "";
}

std::string TopicTemplate(const SlotConfig& config) {
  if (!config.sink.topic.empty()) return config.sink.topic;
  return config.format == OutputFormat::kJson ? "{slot}.{schema}.{table}" : "{slot}";
}

bool ReadPropertiesFile(const std::string& path,
                        std::vector<std::pair<std::string, std::string>>* properties,
                        std::string* err) {
  std::ifstream in(path);
  if (!in) {
    *err = "cannot read " + path;
    return false;
  }
  std::string line;
  for (int number = 1; std::getline(in, line); ++number) {
    std::string t = Trim(line);
    if (t.empty() || t[0] == '#' || t[0] == '!') continue;
    size_t eq = t.find('=');
    if (eq == std::string::npos || Trim(t.substr(0, eq)).empty()) {
      *err = path + ":" + std::to_string(number) + ": not a key=value line";
      return false;
    }
    properties->emplace_back(Trim(t.substr(0, eq)), Trim(t.substr(eq + 1)));
  }
  return true;
}

namespace {

// The operator's properties: properties_file's lines (`with_file`), then
// `properties`. False with *err when the file cannot be read.
bool GivenProperties(const SinkConfig& k, bool with_file,
                     std::vector<std::pair<std::string, std::string>>* given, std::string* err) {
  if (with_file && !k.properties_file.empty() &&
      !ReadPropertiesFile(k.properties_file, given, err)) {
    return false;
  }
  given->insert(given->end(), k.properties.begin(), k.properties.end());
  for (const auto& g : *given) {
    if (g.first == "transactional.id") {
      *err = "Kafka property transactional.id: set the sink's transactional_id instead";
      return false;
    }
  }
  return true;
}

bool IsProducerSetting(const std::string& name) {
  for (const auto& f : kFixed) {
    if (name == f[0]) return true;
  }
  for (const auto& d : kDefaults) {
    if (name == d[0] && name != "client.id") return true;
  }
  return false;
}

}  // namespace

std::string TransactionalId(const SlotConfig& config, const std::string& system_id) {
  if (!config.sink.transactional_id.empty()) return config.sink.transactional_id;
  return "pgslotd-" + system_id + "-" + config.name;
}

rd_kafka_conf_s* MakeReaderConf(const SlotConfig& config, std::string* err) {
  std::vector<std::pair<std::string, std::string>> given;
  if (!GivenProperties(config.sink, true, &given, err)) return nullptr;
  rd_kafka_conf_t* conf = rd_kafka_conf_new();
  bool ok = Set(conf, "bootstrap.servers", config.sink.brokers, err) &&
            Set(conf, "client.id", "pgslotd", err);
  for (const auto& g : given) {
    if (!IsProducerSetting(g.first)) ok = ok && Set(conf, g.first, g.second, err);
  }
  for (const auto& f : kReaderFixed) ok = ok && Set(conf, f[0], f[1], err);
  if (!ok) {
    rd_kafka_conf_destroy(conf);
    return nullptr;
  }
  return conf;
}

rd_kafka_conf_s* MakeProducerConf(const SlotConfig& config, std::string* err, bool with_file) {
  const SinkConfig& k = config.sink;
  std::vector<std::pair<std::string, std::string>> given;
  if (!GivenProperties(k, with_file, &given, err)) return nullptr;
  rd_kafka_conf_t* conf = rd_kafka_conf_new();
  bool ok = Set(conf, "bootstrap.servers", k.brokers, err);
  for (const auto& d : kDefaults) {
    bool set = false;
    for (const auto& g : given) set = set || g.first == d[0];
    if (!set) ok = ok && Set(conf, d[0], d[1], err);
  }
  for (const auto& g : given) {
    for (const auto& f : kFixed) {
      if (ok && g.first == f[0] && g.second != f[1]) {
        *err = "Kafka property " + g.first + ": pgslotd needs it to be " + f[1];
        ok = false;
      }
    }
    ok = ok && Set(conf, g.first, g.second, err);
  }
  for (const auto& f : kFixed) ok = ok && Set(conf, f[0], f[1], err);
  if (!ok) {
    rd_kafka_conf_destroy(conf);
    return nullptr;
  }
  return conf;
}

}  // namespace pgslotd
