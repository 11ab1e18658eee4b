// Host names resolved without blocking the caller's thread.
//
// libpq resolves a host name inside PQconnectStartParams with a plain
// getaddrinfo(), which waits as long as the resolver does: a DNS server that
// never answers held a slot's thread there, with no heartbeat, and the
// watchdog then stopped for the whole process while that slot was only
// connecting. So pgslotd resolves the names itself, on a thread of the
// lookup's own (getaddrinfo() cannot be cancelled; glibc's getaddrinfo_a
// does the same, but its threads are invisible to ThreadSanitizer, which
// crashes on them), waiting in short steps that let the caller check in and
// notice a stop, up to a deadline; then it passes libpq every address as
// `hostaddr` next to its `host` (kept for TLS and authentication), and libpq
// looks nothing up. A lookup given up on ends on its own, by the resolver's
// own timeouts.
#pragma once

#include <chrono>
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "util/status.h"

namespace pgslotd {

using ConnParams = std::vector<std::pair<std::string, std::string>>;

// Rewrites `params` (libpq keywords and values) so that every host that is
// a name (not a Unix socket directory, not an address) comes with its
// addresses: `host` lists the name once per address, `hostaddr` the
// addresses, `port` the port of each. Params that already give `hostaddr`
// are left alone. A missing `host` is taken from PGHOST, as libpq would.
// `keep_waiting` is called every 100 ms or so while an answer is awaited;
// when it returns false the lookup is abandoned (Status::Interrupted). A name not
// resolved by `deadline` is a retryable error that names it.
Status ResolveHosts(ConnParams* params, std::chrono::steady_clock::time_point deadline,
                    const std::function<bool()>& keep_waiting);

}  // namespace pgslotd
