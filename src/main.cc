// pgslotd: parses flags, loads the config, runs the supervisor. Nothing else.
#include <getopt.h>

#include <algorithm>
#include <cstdio>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "config/config.h"
#include "daemon/control_socket.h"
#include "daemon/supervisor.h"
#include "pg/lsn.h"
#include "snapshot/snapshot_request.h"
#include "util/log.h"
#include "version.h"

namespace {

constexpr int kExitUsage = 64;       // EX_USAGE
constexpr int kExitCantCreate = 73;  // EX_CANTCREAT
constexpr int kExitConfig = 78;      // EX_CONFIG

void PrintHelp() {
  std::printf(
      "Usage: pgslotd --config PATH [--check] [--end-lsn LSN] [--log-target T]\n"
      "       pgslotd --config PATH --status [--json]\n"
      "       pgslotd --config PATH --snapshot SLOT [--table SCHEMA.TABLE]...\n"
      "\n"
      "Streams PostgreSQL logical replication slots into stdout, files and named\n"
      "pipes, acknowledging each position only once its sink has made it durable.\n"
      "\n"
      "  -c, --config PATH   the YAML configuration (see man pgslotd.yaml and\n"
      "                      /usr/share/doc/pgslotd/config.md, docs/config.md in\n"
      "                      the source tree)\n"
      "      --check         validate the configuration (and the directories it\n"
      "                      names) and exit: 0 if valid, 78 with every error on\n"
      "                      stderr if not\n"
      "      --status        ask the daemon running this configuration how its\n"
      "                      slots are (through its control socket; no database\n"
      "                      access needed) and print one line per slot\n"
      "      --json          with --status: print the same as JSON\n"
      "      --snapshot SLOT ask the daemon to read the rows of SLOT's tables\n"
      "                      again (snapshot: initial or on_request), interleaved\n"
      "                      with its stream; exits 0 once the request is durable\n"
      "                      (a daemon that is down takes it when it starts)\n"
      "      --table SCHEMA.TABLE\n"
      "                      with --snapshot: only this table (repeatable;\n"
      "                      default: every table of the slot's publications)\n"
      "      --end-lsn LSN   stream until every slot has durably written and\n"
      "                      acknowledged everything up to LSN (X/Y), then exit 0\n"
      "      --log-target T  auto (the default: journald when stderr is the journal\n"
      "                      stream systemd gave us), stderr or journal\n"
      "      --version       print the version and exit\n"
      "  -h, --help          print this help and exit\n"
      "\n"
      "Signals: SIGTERM/SIGINT stop cleanly; SIGHUP reloads the configuration\n"
      "(unchanged slots keep streaming) and reopens sink files.\n"
      "Exit codes: 0 clean, 1 fatal error, 64 bad usage, 73 cannot write a snapshot\n"
      "request, 78 configuration error.\n");
}

// --status: asks the daemon of `config` through its control socket.
int PrintStatus(const pgslotd::Config& config, bool json) {
  pgslotd::Result<std::string> answer = pgslotd::AskDaemon(
      config.control_socket, json ? "status json" : "status", std::chrono::milliseconds(1500));
  if (!answer.ok()) {
    std::fprintf(stderr,
                 "pgslotd: cannot reach the pgslotd running %s: %s (is it running? it listens on "
                 "%s from its start)\n",
                 config.path.c_str(), answer.status().message().c_str(),
                 config.control_socket.c_str());
    return 1;
  }
  std::fwrite(answer.value().data(), 1, answer.value().size(), stdout);
  return answer.value().rfind("error:", 0) == 0 ? 1 : 0;
}

// --snapshot: writes the request where the slot's worker finds it, then
// tells the running daemon, if any.
int RequestSnapshot(const pgslotd::Config& config, const std::string& slot,
                    const std::vector<pgslotd::QualifiedTable>& tables) {
  const pgslotd::SlotConfig* found = nullptr;
  for (const pgslotd::SlotConfig& s : config.slots) {
    if (s.name == slot) found = &s;
  }
  if (found == nullptr) {
    std::fprintf(stderr, "pgslotd: --snapshot: %s has no slot named \"%s\"\n", config.path.c_str(),
                 slot.c_str());
    return kExitUsage;
  }
  if (found->snapshot == pgslotd::SnapshotMode::kNever) {
    std::fprintf(stderr,
                 "pgslotd: --snapshot: slot %s has snapshot: never in %s; set snapshot: "
                 "on_request (format json) and reload pgslotd, then ask again\n",
                 slot.c_str(), config.path.c_str());
    return kExitConfig;
  }
  std::string warning;
  pgslotd::Result<std::string> path =
      pgslotd::WriteSnapshotRequest(found->state_directory, slot, tables, &warning);
  if (!path.ok()) {
    std::fprintf(stderr, "pgslotd: --snapshot: %s\n", path.status().message().c_str());
    return kExitCantCreate;
  }
  if (!warning.empty()) std::fprintf(stderr, "pgslotd: --snapshot: %s\n", warning.c_str());
  std::printf("pgslotd: snapshot of slot %s requested (%s)\n", slot.c_str(), path.value().c_str());
  pgslotd::Result<std::string> answer = pgslotd::AskDaemon(
      config.control_socket, "snapshot " + slot, std::chrono::milliseconds(5000));
  if (!answer.ok()) {
    std::printf(
        "cannot reach a running pgslotd (%s): one that runs takes the request within 10 "
        "seconds, one that is down when it starts\n",
        answer.status().message().c_str());
  } else {
    std::fwrite(answer.value().data(), 1, answer.value().size(), stdout);
  }
  return 0;
}

// What the command line asks for.
struct Flags {
  std::string config_path;
  bool check = false;
  bool status = false;
  bool json = false;
  std::optional<pgslotd::Lsn> end_lsn;
  std::string log_target = "auto";
  std::optional<std::string> snapshot_slot;     // --snapshot
  std::vector<pgslotd::QualifiedTable> tables;  // --table
};

// Reads the options into *flags. Returns the exit code when the program is
// done (--help, --version, bad usage), nullopt to go on.
std::optional<int> ReadOptions(int argc, char** argv, Flags* flags) {
  enum {
    kOptCheck = 1000,
    kOptEndLsn,
    kOptVersion,
    kOptLogTarget,
    kOptStatus,
    kOptJson,
    kOptSnapshot,
    kOptTable
  };
  static const struct option kOptions[] = {
      {"config", required_argument, nullptr, 'c'},
      {"check", no_argument, nullptr, kOptCheck},
      {"status", no_argument, nullptr, kOptStatus},
      {"json", no_argument, nullptr, kOptJson},
      {"snapshot", required_argument, nullptr, kOptSnapshot},
      {"table", required_argument, nullptr, kOptTable},
      {"end-lsn", required_argument, nullptr, kOptEndLsn},
      {"version", no_argument, nullptr, kOptVersion},
      {"log-target", required_argument, nullptr, kOptLogTarget},
      {"help", no_argument, nullptr, 'h'},
      {nullptr, 0, nullptr, 0},
  };
  int opt;
  while ((opt = getopt_long(argc, argv, "c:h", kOptions, nullptr)) != -1) {
    switch (opt) {
      case 'c':
        flags->config_path = optarg;
        break;
      case kOptCheck:
        flags->check = true;
        break;
      case kOptStatus:
        flags->status = true;
        break;
      case kOptJson:
        flags->json = true;
        break;
      case kOptSnapshot:
        flags->snapshot_slot = optarg;
        break;
      case kOptTable: {
        pgslotd::QualifiedTable table;
        std::string err;
        if (!pgslotd::ParseQualifiedTable(optarg, &table, &err)) {
          std::fprintf(stderr, "pgslotd: --table %s\n", err.c_str());
          return kExitUsage;
        }
        if (std::find(flags->tables.begin(), flags->tables.end(), table) == flags->tables.end()) {
          flags->tables.push_back(std::move(table));
        }
        break;
      }
      case kOptEndLsn:
        flags->end_lsn = pgslotd::ParseLsn(optarg);
        if (!flags->end_lsn) {
          std::fprintf(stderr, "pgslotd: --end-lsn: \"%s\" is not an LSN (expected X/Y in hex)\n",
                       optarg);
          return kExitUsage;
        }
        break;
      case kOptLogTarget:
        flags->log_target = optarg;
        break;
      case kOptVersion:
        std::printf("pgslotd %s\n", PGSLOTD_VERSION);
        return 0;
      case 'h':
        PrintHelp();
        return 0;
      default:
        std::fprintf(stderr, "Try 'pgslotd --help' for more information.\n");
        return kExitUsage;
    }
  }
  return std::nullopt;
}

// Reads the command line into *flags, as ReadOptions, and checks that its
// parts go together.
std::optional<int> ReadFlags(int argc, char** argv, Flags* flags) {
  if (std::optional<int> done = ReadOptions(argc, argv, flags)) return done;
  const char* problem = nullptr;
  if (optind < argc) {
    std::fprintf(stderr, "pgslotd: unexpected argument \"%s\"\n", argv[optind]);
    return kExitUsage;
  } else if (flags->config_path.empty()) {
    problem = "--config PATH is required (try 'pgslotd --help')";
  } else if (flags->json && !flags->status) {
    problem = "--json goes with --status";
  } else if (flags->status && (flags->check || flags->end_lsn)) {
    problem = "--status goes with neither --check nor --end-lsn";
  } else if (!flags->tables.empty() && !flags->snapshot_slot) {
    problem = "--table goes with --snapshot SLOT";
  } else if (flags->snapshot_slot && (flags->check || flags->end_lsn || flags->status)) {
    problem = "--snapshot goes with neither --check, --status nor --end-lsn";
  }
  if (problem == nullptr) return std::nullopt;
  std::fprintf(stderr, "pgslotd: %s\n", problem);
  return kExitUsage;
}

// Loads the config file into *config, printing its warnings, and its errors
// when it does not load.
bool Load(const Flags& flags, pgslotd::Config* config) {
  std::vector<pgslotd::ConfigError> errors, warnings;
  pgslotd::LoadOptions load_options;
  load_options.check_paths = flags.check;
  load_options.warn_world_writable = !flags.status && !flags.snapshot_slot;
  bool loaded = pgslotd::LoadConfig(flags.config_path, config, &errors, load_options, &warnings);
  for (const auto& w : warnings) std::fprintf(stderr, "%s\n", w.ToString().c_str());
  if (loaded) return true;
  for (const auto& e : errors) std::fprintf(stderr, "%s\n", e.ToString().c_str());
  std::fprintf(stderr, "pgslotd: %zu error%s in %s\n", errors.size(), errors.size() == 1 ? "" : "s",
               flags.config_path.c_str());
  return false;
}

// Sets up logging and runs the supervisor until it stops.
int RunDaemon(pgslotd::Config config, const Flags& flags) {
  pgslotd::LogTarget target;
  if (!pgslotd::ParseLogTarget(flags.log_target, &target)) {
    std::fprintf(stderr, "pgslotd: --log-target: \"%s\" is not auto, stderr or journal\n",
                 flags.log_target.c_str());
    return kExitUsage;
  }
  if (!pgslotd::SetupLogging(config.log_level, target)) {
    std::fprintf(stderr, "pgslotd: cannot log to %s at level %s\n", flags.log_target.c_str(),
                 config.log_level.c_str());
    return kExitConfig;
  }
  pgslotd::BlockSignals();  // before any thread starts
  pgslotd::Supervisor::Options options;
  options.end_lsn = flags.end_lsn;
  pgslotd::Supervisor supervisor(std::move(config), options);
  return supervisor.Run();
}

}  // namespace

int main(int argc, char** argv) {
  Flags flags;
  if (std::optional<int> done = ReadFlags(argc, argv, &flags)) return *done;
  pgslotd::Config config;
  if (!Load(flags, &config)) return kExitConfig;
  if (flags.check) {
    std::fprintf(stderr, "%s: config OK: %zu slot%s\n", flags.config_path.c_str(),
                 config.slots.size(), config.slots.size() == 1 ? "" : "s");
    return 0;
  }
  if (flags.status) return PrintStatus(config, flags.json);
  if (flags.snapshot_slot) return RequestSnapshot(config, *flags.snapshot_slot, flags.tables);
  return RunDaemon(std::move(config), flags);
}
