#include "slot/slot_stats.h"

namespace pgslotd {

const char* SlotStateName(SlotState s) {
  switch (s) {
    case SlotState::kStarting:
      return "starting";
    case SlotState::kConnecting:
      return "connecting";
    case SlotState::kStreaming:
      return "streaming";
    case SlotState::kWaitingForSink:
      return "waiting for sink";
    case SlotState::kPaused:
      return "paused: waiting for sink";
    case SlotState::kReconnecting:
      return "reconnecting";
    case SlotState::kStopping:
      return "stopping";
    case SlotState::kStopped:
      return "stopped";
    case SlotState::kDone:
      return "done";
    case SlotState::kFailed:
      return "failed";
    case SlotState::kInvalidated:
      return "invalidated";
  }
  return "unknown";
}

}  // namespace pgslotd
