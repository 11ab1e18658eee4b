// The systemd service protocol (sd_notify): readiness, reload, stop,
// status text and the watchdog. Without NOTIFY_SOCKET every call does
// nothing, so the daemon behaves the same in a terminal. Compiled away when
// libsystemd is absent.
//
// Thread-safety: call from the supervisor's thread only.
#pragma once

#include <chrono>
#include <string>

namespace pgslotd {

class Notifier {
 public:
  // Reads NOTIFY_SOCKET and WATCHDOG_USEC/WATCHDOG_PID from the environment.
  Notifier();

  bool enabled() const { return enabled_; }
  void Ready();
  // RELOADING=1 with MONOTONIC_USEC= (the clock systemd compares with).
  void Reloading();
  void Stopping();
  void Status(const std::string& text);
  void WatchdogPing();
  // The watchdog interval systemd asked for; zero when none.
  std::chrono::microseconds watchdog_interval() const { return watchdog_; }

 private:
  void Send(const std::string& state);
  bool enabled_ = false;
  std::chrono::microseconds watchdog_{0};
};

}  // namespace pgslotd
