#include "daemon/notify.h"

#include <time.h>

#include <cstdlib>

#ifdef PGSLOTD_HAVE_SYSTEMD
#include <systemd/sd-daemon.h>
#endif

namespace pgslotd {

Notifier::Notifier() {
#ifdef PGSLOTD_HAVE_SYSTEMD
  const char* sock = std::getenv("NOTIFY_SOCKET");
  enabled_ = sock != nullptr && sock[0] != '\0';
  uint64_t usec = 0;
  if (sd_watchdog_enabled(0, &usec) > 0) watchdog_ = std::chrono::microseconds(usec);
#endif
}

void Notifier::Send(const std::string& state) {
#ifdef PGSLOTD_HAVE_SYSTEMD
  if (enabled_) sd_notify(0, state.c_str());
#else
  (void)state;
#endif
}

void Notifier::Ready() { Send("READY=1"); }

void Notifier::Reloading() {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  uint64_t usec = static_cast<uint64_t>(ts.tv_sec) * 1000000u + ts.tv_nsec / 1000;
  Send("RELOADING=1\nMONOTONIC_USEC=" + std::to_string(usec));
}

void Notifier::Stopping() { Send("STOPPING=1"); }

void Notifier::Status(const std::string& text) { Send("STATUS=" + text); }

void Notifier::WatchdogPing() {
  if (watchdog_.count() > 0) Send("WATCHDOG=1");
}

}  // namespace pgslotd
