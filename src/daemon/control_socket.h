// The daemon's control socket, through which `pgslotd --status` asks the
// running daemon how its slots are, and `pgslotd --snapshot` tells it of a
// request: a Unix stream socket at
// <runtime_directory>/pgslotd.sock, mode 0660 (the daemon's user and
// group). Nothing on it needs a database connection.
//
// Protocol: the client sends one request line and reads the answer until
// the daemon closes the connection:
//   status, status json   how the slots are (daemon/status_line.h)
//   snapshot SLOT         a snapshot request file for SLOT is written
//                         (snapshot/snapshot_request.h): its worker takes
//                         it now; "ok: ..." or "error: ..."
// An unknown request gets "error: ..." as its answer.
//
// The server side is served from the supervisor's poll loop and never
// blocks it: every socket is non-blocking, and a client that has not sent
// its request and taken its answer within a second is dropped. Not
// thread-safe: one thread (the supervisor's) calls everything.
#pragma once

#include <poll.h>

#include <chrono>
#include <functional>
#include <string>
#include <vector>

#include "util/status.h"

namespace pgslotd {

class ControlServer {
 public:
  using Clock = std::chrono::steady_clock;
  // Returns the answer to one request line (without its newline).
  using Handler = std::function<std::string(const std::string& request)>;

  ControlServer() = default;
  ~ControlServer() { Close(); }
  ControlServer(const ControlServer&) = delete;
  ControlServer& operator=(const ControlServer&) = delete;

  // Listens on `path`, creating its directory (one level) when missing. A
  // socket file left by a process that is gone is replaced: only the
  // holder of the instance lock calls this.
  Status Open(const std::string& path);
  // Closes every connection and removes the socket file.
  void Close();
  bool open() const { return listen_fd_ >= 0; }

  // Appends what to poll for: the listening socket, then each client.
  void AddPollFds(std::vector<struct pollfd>* fds) const;
  // After poll: `fds` from index `first` are those AddPollFds appended.
  // Accepts, reads, answers and drops clients as they are ready.
  void Serve(const std::vector<struct pollfd>& fds, size_t first, const Handler& handler);
  // Milliseconds until a client's deadline (-1: no client waits).
  int64_t NextDeadlineMs(Clock::time_point now) const;

 private:
  struct Client {
    int fd = -1;
    std::string in;   // the request as far as it came
    std::string out;  // the answer not yet written
    bool answered = false;
    Clock::time_point deadline;
  };
  void Accept();
  // Reads or writes what it can; false when the client is done with.
  bool Step(Client* c, short revents, const Handler& handler);

  std::string path_;
  int listen_fd_ = -1;
  std::vector<Client> clients_;
};

// The client: connects to `path`, sends `request` and returns the whole
// answer, all within `timeout`. An unreachable daemon is an error that
// says so.
Result<std::string> AskDaemon(const std::string& path, const std::string& request,
                              std::chrono::milliseconds timeout);

}  // namespace pgslotd
