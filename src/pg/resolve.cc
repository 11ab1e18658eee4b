#include "pg/resolve.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <pthread.h>
#include <sys/socket.h>

#include <algorithm>
#include <condition_variable>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <mutex>
#include <system_error>
#include <thread>

namespace pgslotd {

namespace {

using Clock = std::chrono::steady_clock;

// One lookup, shared between the thread that runs getaddrinfo() and the
// one that waits for it: either may be the last to let go of it.
struct Lookup {
  std::string name;
  std::mutex mu;
  std::condition_variable done_cv;
  bool done = false;               // guarded by mu
  int rc = 0;                      // guarded by mu
  std::vector<std::string> addrs;  // guarded by mu
};

// Runs on a thread of its own: getaddrinfo() cannot be cancelled, and a
// resolver that never answers must hold no thread that has to check in.
// This is pgslotd's only detached thread: a lookup nobody waits for any
// more ends on its own (the resolver's timeouts) or with the process.
void RunLookup(const std::shared_ptr<Lookup>& lookup) {
  ::pthread_setname_np(::pthread_self(), "pgslotd-dns");
  struct addrinfo hints = {};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_ADDRCONFIG;
  struct addrinfo* result = nullptr;
  int rc = ::getaddrinfo(lookup->name.c_str(), nullptr, &hints, &result);
  std::vector<std::string> addrs;
  for (struct addrinfo* a = rc == 0 ? result : nullptr; a != nullptr; a = a->ai_next) {
    char text[INET6_ADDRSTRLEN];
    const void* addr =
        a->ai_family == AF_INET
            ? static_cast<const void*>(&reinterpret_cast<sockaddr_in*>(a->ai_addr)->sin_addr)
            : static_cast<const void*>(&reinterpret_cast<sockaddr_in6*>(a->ai_addr)->sin6_addr);
    if ((a->ai_family == AF_INET || a->ai_family == AF_INET6) &&
        ::inet_ntop(a->ai_family, addr, text, sizeof text) != nullptr &&
        std::find(addrs.begin(), addrs.end(), text) == addrs.end()) {
      addrs.push_back(text);
    }
  }
  if (result != nullptr) ::freeaddrinfo(result);
  std::lock_guard<std::mutex> l(lookup->mu);
  lookup->rc = rc;
  lookup->addrs = std::move(addrs);
  lookup->done = true;
  lookup->done_cv.notify_all();
}

std::vector<std::string> SplitList(const std::string& s) {
  std::vector<std::string> out;
  size_t start = 0;
  for (;;) {
    size_t comma = s.find(',', start);
    out.push_back(s.substr(start, comma == std::string::npos ? comma : comma - start));
    if (comma == std::string::npos) return out;
    start = comma + 1;
  }
}

std::string JoinList(const std::vector<std::string>& v) {
  std::string out;
  for (size_t i = 0; i < v.size(); ++i) out += (i > 0 ? "," : "") + v[i];
  return out;
}

bool NeedsLookup(const std::string& host) {
  if (host.empty() || host[0] == '/' || host[0] == '@') return false;  // default, socket dir
  unsigned char buf[sizeof(struct in6_addr)];
  return ::inet_pton(AF_INET, host.c_str(), buf) != 1 &&
         ::inet_pton(AF_INET6, host.c_str(), buf) != 1;
}

// The addresses of `name`, as text, in the order the resolver gave them.
Result<std::vector<std::string>> Resolve(const std::string& name, Clock::time_point deadline,
                                         const std::function<bool()>& keep_waiting) {
  auto lookup = std::make_shared<Lookup>();
  lookup->name = name;
  try {
    std::thread([lookup] { RunLookup(lookup); }).detach();
  } catch (const std::system_error& e) {
    return Status::Retryable("cannot look up host " + name + ": " + e.what());
  }
  std::unique_lock<std::mutex> l(lookup->mu);
  while (!lookup->done) {
    l.unlock();
    bool go_on = keep_waiting();
    l.lock();
    if (lookup->done) break;
    if (!go_on) return Status::Interrupted();
    if (Clock::now() >= deadline) {
      return Status::Retryable("no answer from the resolver for host " + name +
                               " before the connection's deadline");
    }
    lookup->done_cv.wait_for(l, std::chrono::milliseconds(100));
  }
  if (lookup->rc != 0) {
    return Status::Retryable("cannot look up host " + name + ": " + gai_strerror(lookup->rc));
  }
  if (lookup->addrs.empty()) return Status::Retryable("host " + name + " has no address");
  return lookup->addrs;
}

std::string* Find(ConnParams* params, const char* key) {
  for (auto& [k, v] : *params) {
    if (k == key) return &v;
  }
  return nullptr;
}

}  // namespace

Status ResolveHosts(ConnParams* params, Clock::time_point deadline,
                    const std::function<bool()>& keep_waiting) {
  if (Find(params, "hostaddr") != nullptr) return Status::Ok();
  std::string* host_value = Find(params, "host");
  const char* env = std::getenv("PGHOST");
  std::string host_text = host_value ? *host_value : env ? env : "";
  std::vector<std::string> hosts = SplitList(host_text);
  bool any = false;
  for (const std::string& h : hosts) any = any || NeedsLookup(h);
  if (!any) return Status::Ok();
  std::string* port_value = Find(params, "port");
  const bool had_port = port_value != nullptr;
  std::vector<std::string> ports = SplitList(had_port ? *port_value : "");
  if (ports.size() != 1 && ports.size() != hosts.size()) return Status::Ok();  // libpq says so
  std::vector<std::string> new_hosts, new_addrs, new_ports;
  for (size_t i = 0; i < hosts.size(); ++i) {
    const std::string& port = ports.size() == 1 ? ports[0] : ports[i];
    std::vector<std::string> addrs = {""};  // "": libpq uses the host as it is
    if (NeedsLookup(hosts[i])) {
      Result<std::vector<std::string>> r = Resolve(hosts[i], deadline, keep_waiting);
      if (!r.ok()) return r.status();
      addrs = r.value();
    }
    for (const std::string& a : addrs) {
      new_hosts.push_back(hosts[i]);
      new_addrs.push_back(a);
      new_ports.push_back(port);
    }
  }
  auto set = [&](const char* key, const std::string& value) {
    if (std::string* v = Find(params, key)) {
      *v = value;
    } else {
      params->emplace_back(key, value);
    }
  };
  set("host", JoinList(new_hosts));
  set("hostaddr", JoinList(new_addrs));
  if (had_port) set("port", JoinList(new_ports));
  return Status::Ok();
}

}  // namespace pgslotd
