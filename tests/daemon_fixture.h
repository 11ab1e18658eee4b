// Shared pieces of the integration tests that run the real daemon binary
// against the real cluster of PgCluster::Shared().
#pragma once

#include <gtest/gtest.h>

#include <string>
#include <utility>
#include <vector>

#include "pg_cluster.h"
#include "test_util.h"

namespace pgslotd::test {

using Options = std::vector<std::pair<std::string, std::string>>;

class DaemonTest : public ::testing::Test {
 protected:
  void SetUp() override {
    pg_ = PgCluster::Shared();
    dir_ = std::make_unique<TempDir>("pgslotd-it");
  }

  // Writes `yaml` as the config file and returns its path.
  std::string WriteConfig(const std::string& yaml, const std::string& name = "pgslotd.yaml") {
    std::string path = dir_->File(name);
    WriteFile(path, yaml);
    return path;
  }

  // A slot entry for a config (indented for the `slots:` list).
  static std::string SlotYaml(const std::string& name, const std::string& sink_yaml,
                              const std::string& extra = "",
                              const std::string& plugin = "test_decoding") {
    return "  - name: " + name + "\n    plugin: " + plugin + "\n    sink: " + sink_yaml + "\n" +
           extra;
  }

  // A config's top-level part: the shared cluster's connection to `db`,
  // status_interval 1s, the test's temporary directory as state_directory,
  // then `extra` (top-level keys, each line ending in '\n') and "slots:".
  std::string Header(const std::string& db = "postgres", const std::string& extra = "") {
    return HeaderWith(pg_->Conninfo(db), extra);
  }
  // The same with `conninfo` as the connection (another user, a password,
  // a private cluster). Every config a test hands to pgslotd names its own
  // state_directory: Subprocess refuses to start pgslotd otherwise.
  std::string HeaderWith(const std::string& conninfo, const std::string& extra = "") {
    return "connection: \"" + conninfo + "\"\nstatus_interval: 1s\n" + Dirs() + extra + "slots:\n";
  }

  // The test's own state and runtime directories (the defaults are the
  // system's /var/lib/pgslotd and /run/pgslotd), as config lines.
  std::string Dirs() const {
    return "state_directory: " + dir_->path() + "\nruntime_directory: " + dir_->path() + "\n";
  }

  // Runs the daemon with --end-lsn and waits for it; returns the exit code.
  int RunUntil(const std::string& config, const std::string& end_lsn, Subprocess* p,
               const Subprocess::Options& opts = Subprocess::Options(),
               std::chrono::milliseconds timeout = std::chrono::seconds(60)) {
    p->Start({PgslotdBinary(), "--config", config, "--end-lsn", end_lsn}, opts);
    int rc = p->Wait(timeout);
    if (rc != 0) ADD_FAILURE() << "pgslotd exited " << rc << "; stderr:\n" << p->Stderr();
    return rc;
  }

  // The reference: what the server itself decodes for `slot` up to `upto`,
  // one line per message as format raw writes it.
  std::string Reference(const std::string& slot, const std::string& upto, const Options& options,
                        const std::string& db = "postgres") {
    std::string out;
    for (const std::string& line : pg_->PeekChanges(slot, upto, options, db)) out += line + "\n";
    return out;
  }

  // Drops each slot if it exists, creates the first anew and the others as
  // copies of it, so that they all start at exactly the same point: the
  // server's decoding of one (Reference) covers what the daemon gets from
  // another, empty transactions of background work included.
  void FreshSlots(std::initializer_list<const char*> names,
                  const std::string& plugin = "test_decoding", const std::string& db = "postgres") {
    for (const char* n : names) pg_->DropSlotIfExists(n);
    const char* first = nullptr;
    for (const char* n : names) {
      if (first == nullptr) {
        pg_->CreateLogicalSlot(n, plugin, db);
        first = n;
      } else {
        pg_->CopyLogicalSlot(first, n, db);
      }
    }
  }

  // Whether the slot's confirmed_flush_lsn is at least `lsn` (an idle slot
  // may legitimately move past it on background WAL).
  bool FlushAtLeast(const std::string& slot, const std::string& lsn) {
    return pg_->Scalar("SELECT confirmed_flush_lsn >= '" + lsn +
                       "'::pg_lsn FROM pg_replication_slots WHERE slot_name = '" + slot + "'") ==
           "t";
  }

  PgCluster* pg_ = nullptr;
  std::unique_ptr<TempDir> dir_;
};

}  // namespace pgslotd::test
