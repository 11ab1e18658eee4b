// The librdkafka side of a kafka sink's config: its producer settings and
// its topic template. Used by the sink and by the config loader's checks
// (the loader creates the configuration object, so that an unknown or bad
// property is a config error that --check reports).
#pragma once

#include <string>
#include <utility>
#include <vector>

#include "config/config.h"

struct rd_kafka_conf_s;

namespace pgslotd {

// The `topic` template of a kafka sink, or its default: "{slot}" for raw,
// "{slot}.{schema}.{table}" for json.
std::string TopicTemplate(const SlotConfig& config);

// A producer configuration for `config`'s kafka sink: bootstrap.servers,
// what pgslotd's guarantees need (acks=all, enable.idempotence=true), its
// defaults unless the operator sets them (queue.buffering.max.kbytes,
// partitioner murmur2_random), then properties_file's lines and
// properties, in that order. Null with *err naming the property and what
// librdkafka said of it (never a value: they may be secrets).
// Without `with_file`, properties_file is left out.
rd_kafka_conf_s* MakeProducerConf(const SlotConfig& config, std::string* err,
                                  bool with_file = true);

// A configuration for the client that reads pgslotd's committed positions
// back (sink/kafka_position.h): the same brokers and operator settings
// (security, timeouts), none of the producer's, and isolation.level
// read_committed. Null with *err as above.
rd_kafka_conf_s* MakeReaderConf(const SlotConfig& config, std::string* err);

// The transactional.id of `config`'s kafka sink on the server whose system
// identifier is `system_id`: transactional_id, or
// pgslotd-<system_id>-<slot>.
std::string TransactionalId(const SlotConfig& config, const std::string& system_id);

// Checks `config`'s kafka sink as far as it can without a broker: the topic
// template and every property, by creating the producer's configuration;
// with `check_paths` (--check) also properties_file (readable, by no one
// else: it may hold secrets) and its properties. Returns what is wrong (""
// when nothing) and sets *key to the sink key it concerns.
std::string CheckKafkaSink(const SlotConfig& config, bool check_paths, const char** key);

// What is wrong with properties_file `path` (it cannot be read, or others
// may read it), or "".
std::string PropertiesFileProblem(const std::string& path);

// Reads a Java-style properties file (key=value lines, # and ! comments)
// into *properties; false with *err on a line it cannot read.
bool ReadPropertiesFile(const std::string& path,
                        std::vector<std::pair<std::string, std::string>>* properties,
                        std::string* err);

}  // namespace pgslotd
