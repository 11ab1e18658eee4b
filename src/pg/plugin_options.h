// The plugin options a session sends with START_REPLICATION: the slot's own
// (options: in the config), completed for pgoutput decoded to JSON with the
// options that cost the database host least.
//
// For plugin pgoutput with format json, an option the slot does not give is
// added:
//   proto_version  2 when the server is PostgreSQL 14 or later, else 1;
//   streaming      on when the effective proto_version is 2 or more and the
//                  server is 14 or later (never next to proto_version 1,
//                  which the server refuses).
//   messages       true when the slot takes a snapshot and the server is
//                  PostgreSQL 15 or later (its watermarks are logical
//                  decoding messages, never written to the sink).
// Streaming in-progress transactions spares the walsender its spill files
// (docs/performance.md); pgslotd keeps the streamed changes in its own spool
// until the commit. What the slot gives always wins, and other plugins and
// format raw get exactly the slot's options.
#pragma once

#include <string>
#include <utility>
#include <vector>

#include "config/config.h"

namespace pgslotd {

struct SessionOptions {
  std::vector<std::pair<std::string, std::string>> options;  // the slot's, then the added
  // How the session decodes, for the log: "pgoutput protocol 2, streaming
  // in-progress transactions", or the plugin's name for other plugins.
  std::string protocol;
};

// `server_version` as PQserverVersion reports it (150004 for 15.4).
SessionOptions EffectiveOptions(const SlotConfig& slot, int server_version);

// The publications of a pgoutput slot's publication_names, split and folded
// as the server does ("a, \"B c\"" gives a and B c).
std::vector<std::string> PublicationNames(const SlotConfig& slot);

}  // namespace pgslotd
