#include "pg/resolve.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <sys/socket.h>

#include <cstdlib>
#include <cstring>
#include <memory>
#include <mutex>

namespace pgslotd {

namespace {

using Clock = std::chrono::steady_clock;

// One lookup, owned by whoever waits for it; one given up on while glibc's
// thread still works on it is kept in Abandoned until that thread is done
// (freeing it earlier would let glibc write into freed memory).
struct Lookup {
  std::string name;
  struct addrinfo hints = {};
  struct gaicb request = {};
  ~Lookup() {
    if (request.ar_result != nullptr) ::freeaddrinfo(request.ar_result);
  }
};

class Abandoned {
 public:
  void Add(std::unique_ptr<Lookup> l) {
    std::lock_guard<std::mutex> g(mu_);
    Reap();
    lookups_.push_back(std::move(l));
  }

 private:
  void Reap() {
    for (auto it = lookups_.begin(); it != lookups_.end();) {
      it = ::gai_error(&(*it)->request) == EAI_INPROGRESS ? std::next(it) : lookups_.erase(it);
    }
  }
  std::mutex mu_;
  std::vector<std::unique_ptr<Lookup>> lookups_;
};

Abandoned& AbandonedLookups() {
  static Abandoned* const a = new Abandoned;  // never destroyed: glibc may still use entries
  return *a;
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
  auto lookup = std::make_unique<Lookup>();
  lookup->name = name;
  lookup->hints.ai_family = AF_UNSPEC;
  lookup->hints.ai_socktype = SOCK_STREAM;
  lookup->hints.ai_flags = AI_ADDRCONFIG;
  lookup->request.ar_name = lookup->name.c_str();
  lookup->request.ar_request = &lookup->hints;
  struct gaicb* list[1] = {&lookup->request};
  int rc = ::getaddrinfo_a(GAI_NOWAIT, list, 1, nullptr);
  if (rc != 0) return Status::Retryable("cannot look up host " + name + ": " + gai_strerror(rc));
  for (;;) {
    rc = ::gai_error(&lookup->request);
    if (rc != EAI_INPROGRESS) break;
    bool go_on = keep_waiting();
    if (!go_on || Clock::now() >= deadline) {
      if (::gai_cancel(&lookup->request) != EAI_CANCELED) AbandonedLookups().Add(std::move(lookup));
      if (!go_on) return Status::Stopped();
      return Status::Retryable("no answer from the resolver for host " + name +
                               " before the connection's deadline");
    }
    struct timespec step = {0, 100 * 1000 * 1000};
    ::gai_suspend(list, 1, &step);
  }
  if (rc != 0) return Status::Retryable("cannot look up host " + name + ": " + gai_strerror(rc));
  std::vector<std::string> out;
  for (struct addrinfo* a = lookup->request.ar_result; a != nullptr; a = a->ai_next) {
    char text[INET6_ADDRSTRLEN];
    const void* addr =
        a->ai_family == AF_INET
            ? static_cast<const void*>(&reinterpret_cast<sockaddr_in*>(a->ai_addr)->sin_addr)
            : static_cast<const void*>(&reinterpret_cast<sockaddr_in6*>(a->ai_addr)->sin6_addr);
    if ((a->ai_family == AF_INET || a->ai_family == AF_INET6) &&
        ::inet_ntop(a->ai_family, addr, text, sizeof text) != nullptr) {
      bool seen = false;
      for (const std::string& o : out) seen = seen || o == text;
      if (!seen) out.push_back(text);
    }
  }
  if (out.empty()) return Status::Retryable("host " + name + " has no address");
  return out;
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
