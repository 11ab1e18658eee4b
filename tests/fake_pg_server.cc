// A small fake PostgreSQL server for the tests of what a real one cannot be
// made to do: send forged positions. It speaks just enough of the frontend/
// backend protocol (version 3, no authentication, no TLS) on a Unix socket
// for pgslotd's connections: the replication one (IDENTIFY_SYSTEM, SHOW,
// the slot lookup, START_REPLICATION) and the plain ones of the monitor and
// of a position check (SELECT ... pg_current_wal_lsn()).
//
//   fake_pg_server --dir DIR --port N --system-id ID --wal-lsn X/Y
//                  [--send keepalive:X/Y | xlogdata:X/Y:TEXT | sleep:MS]...
//                  [--ask-reply-at X/Y] [--plain-error SQLSTATE]
//                  [--identify-lsn X/Y]
//
// It listens on DIR/.s.PGSQL.N and prints "listening" on stdout once it
// does. --wal-lsn is its WAL position everywhere it is asked (IDENTIFY_SYSTEM,
// pg_current_wal_lsn(), the slot's confirmed_flush_lsn). After each
// START_REPLICATION it sends the --send messages in order, then only
// answers. Every standby status update it receives is printed as
// "flush X/Y", and each START_REPLICATION as "start X/Y". It runs until
// killed. --identify-lsn, when given, replaces --wal-lsn on the replication
// connection (IDENTIFY_SYSTEM, the slot's confirmed_flush_lsn), so that a
// plain connection's reading can be ahead of the session's.
//
// --ask-reply-at makes it act as a walsender whose server shuts down: after
// the --send messages, and after every status update, it sends a keepalive
// of X/Y that asks for a reply. --plain-error makes every plain
// (non-replication) connection fail at its start with a FATAL error of that
// SQLSTATE, as a server shutting down (57P03) or a proxy in front of it
// does.
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cinttypes>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace {

struct Options {
  std::string dir;
  int port = 0;
  std::string system_id;
  std::string wal_lsn;
  std::vector<std::string> sends;
  std::string ask_reply_at;
  std::string plain_error;
  std::string identify_lsn;
};
Options g_opts;
std::mutex g_print;

void Print(const std::string& line) {
  std::lock_guard<std::mutex> l(g_print);
  std::printf("%s\n", line.c_str());
  std::fflush(stdout);
}

uint64_t ParseLsn(const std::string& text) {
  unsigned hi = 0, lo = 0;
  std::sscanf(text.c_str(), "%X/%X", &hi, &lo);
  return (static_cast<uint64_t>(hi) << 32) | lo;
}

std::string FormatLsn(uint64_t lsn) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%X/%X", static_cast<unsigned>(lsn >> 32),
                static_cast<unsigned>(lsn));
  return buf;
}

void Put32(std::string* out, uint32_t v) {
  for (int s = 24; s >= 0; s -= 8) out->push_back(static_cast<char>(v >> s));
}
void Put16(std::string* out, uint16_t v) {
  out->push_back(static_cast<char>(v >> 8));
  out->push_back(static_cast<char>(v));
}
void Put64(std::string* out, uint64_t v) {
  for (int s = 56; s >= 0; s -= 8) out->push_back(static_cast<char>(v >> s));
}
uint64_t Get64(const char* p) {
  uint64_t v = 0;
  for (int i = 0; i < 8; ++i) v = (v << 8) | static_cast<unsigned char>(p[i]);
  return v;
}

class Conn {
 public:
  explicit Conn(int fd) : fd_(fd) {}
  ~Conn() { ::close(fd_); }

  void Serve() {
    if (!Startup()) return;
    for (;;) {
      char type;
      std::string body;
      if (!ReadMessage(&type, &body)) return;
      if (type == 'X') return;
      if (type == 'Q') Query(body.c_str());
      if (type == 'd' && !body.empty() && body[0] == 'r' && body.size() >= 34) {
        Print("flush " + FormatLsn(Get64(body.data() + 9)));
        if (!g_opts.ask_reply_at.empty()) AskReply();
      }
      if (type == 'c') {  // CopyDone: end ours too, and the command
        Send('c', "");
        Complete("COPY 0");
      }
    }
  }

 private:
  bool ReadFully(char* buf, size_t n) {
    while (n > 0) {
      ssize_t r = ::read(fd_, buf, n);
      if (r <= 0) return false;
      buf += r;
      n -= static_cast<size_t>(r);
    }
    return true;
  }
  bool ReadMessage(char* type, std::string* body) {
    char head[5];
    if (!ReadFully(head, 5)) return false;
    *type = head[0];
    uint32_t len = (static_cast<uint32_t>(static_cast<unsigned char>(head[1])) << 24) |
                   (static_cast<uint32_t>(static_cast<unsigned char>(head[2])) << 16) |
                   (static_cast<uint32_t>(static_cast<unsigned char>(head[3])) << 8) |
                   static_cast<unsigned char>(head[4]);
    if (len < 4 || len > (64u << 20)) return false;
    body->resize(len - 4);
    return ReadFully(body->data(), body->size());
  }
  void Send(char type, const std::string& body) {
    std::string out(1, type);
    Put32(&out, static_cast<uint32_t>(body.size() + 4));
    out += body;
    size_t done = 0;
    while (done < out.size()) {
      ssize_t w = ::write(fd_, out.data() + done, out.size() - done);
      if (w <= 0) return;
      done += static_cast<size_t>(w);
    }
  }
  bool Startup() {
    char len_buf[4];
    if (!ReadFully(len_buf, 4)) return false;
    uint32_t len = (static_cast<uint32_t>(static_cast<unsigned char>(len_buf[0])) << 24) |
                   (static_cast<uint32_t>(static_cast<unsigned char>(len_buf[1])) << 16) |
                   (static_cast<uint32_t>(static_cast<unsigned char>(len_buf[2])) << 8) |
                   static_cast<unsigned char>(len_buf[3]);
    if (len < 8 || len > 10000) return false;
    std::string rest(len - 4, '\0');
    if (!ReadFully(rest.data(), rest.size())) return false;
    bool replication = rest.find(std::string("replication") + '\0') != std::string::npos;
    if (!replication && !g_opts.plain_error.empty()) {
      Send('E', std::string("SFATAL") + '\0' + "VFATAL" + '\0' + "C" + g_opts.plain_error + '\0' +
                    "Mthe fake server refuses plain connections" + '\0' + '\0');
      return false;
    }
    std::string auth;
    Put32(&auth, 0);
    Send('R', auth);
    const char* params[][2] = {{"server_version", "15.18"},          {"server_encoding", "UTF8"},
                               {"client_encoding", "UTF8"},          {"DateStyle", "ISO, MDY"},
                               {"integer_datetimes", "on"},          {"TimeZone", "UTC"},
                               {"standard_conforming_strings", "on"}};
    for (auto& p : params) Send('S', std::string(p[0]) + '\0' + p[1] + '\0');
    std::string key;
    Put32(&key, static_cast<uint32_t>(::getpid()));
    Put32(&key, 42);
    Send('K', key);
    Send('Z', "I");
    return true;
  }
  // One row of text columns, NULL as nullptr.
  void Row(const std::vector<const char*>& names, const std::vector<const char*>& values) {
    std::string desc;
    Put16(&desc, static_cast<uint16_t>(names.size()));
    for (const char* n : names) {
      desc += std::string(n) + '\0';
      Put32(&desc, 0);
      Put16(&desc, 0);
      Put32(&desc, 25);  // text
      Put16(&desc, 0xffff);
      Put32(&desc, 0xffffffff);
      Put16(&desc, 0);
    }
    Send('T', desc);
    std::string row;
    Put16(&row, static_cast<uint16_t>(values.size()));
    for (const char* v : values) {
      if (v == nullptr) {
        Put32(&row, 0xffffffff);
        continue;
      }
      Put32(&row, static_cast<uint32_t>(std::strlen(v)));
      row += v;
    }
    Send('D', row);
    Complete("SELECT 1");
  }
  void Complete(const char* tag) {
    Send('C', std::string(tag) + '\0');
    Send('Z', "I");
  }
  void Error(const char* sqlstate, const std::string& message) {
    std::string e = std::string("SERROR") + '\0' + "VERROR" + '\0' + "C" + sqlstate + '\0' + "M" +
                    message + '\0' + '\0';
    Send('E', e);
    Send('Z', "I");
  }
  static bool Starts(const char* q, const char* prefix) {
    return std::strncmp(q, prefix, std::strlen(prefix)) == 0;
  }
  void Query(const char* q) {
    const char* lsn = g_opts.wal_lsn.c_str();
    const char* session_lsn = g_opts.identify_lsn.empty() ? lsn : g_opts.identify_lsn.c_str();
    if (Starts(q, "IDENTIFY_SYSTEM")) {
      Row({"systemid", "timeline", "xlogpos", "dbname"},
          {g_opts.system_id.c_str(), "1", session_lsn, "postgres"});
    } else if (Starts(q, "SHOW wal_sender_timeout")) {
      Row({"wal_sender_timeout"}, {"60s"});
    } else if (Starts(q, "SELECT slot_type, plugin")) {
      Row({"slot_type", "plugin", "database", "wal_status", "confirmed_flush_lsn", "active_pid"},
          {"logical", "test_decoding", "postgres", "reserved", session_lsn, nullptr});
    } else if (Starts(q, "SELECT wal_status")) {
      Row({"wal_status"}, {"reserved"});
    } else if (Starts(q, "SELECT slot_name, active")) {  // the monitor
      std::string name = std::string(q).substr(std::string(q).find("IN ('") + 5);
      name = name.substr(0, name.find('\''));
      Row({"slot_name", "active", "active_pid", "wal_status", "safe_wal_size", "restart_lsn",
           "confirmed_flush_lsn", "pg_current_wal_lsn", "current_setting"},
          {name.c_str(), "t", "4242", "reserved", nullptr, lsn, lsn, lsn, "-1"});
    } else if (std::strstr(q, "pg_current_wal_lsn()") != nullptr) {
      Row({"pg_current_wal_lsn"}, {lsn});
    } else if (Starts(q, "START_REPLICATION")) {
      StartReplication(q);
    } else {
      Error("42601", std::string("the fake server does not know: ") + q);
    }
  }
  void StartReplication(const char* q) {
    const char* at = std::strstr(q, " LOGICAL ");
    Print(std::string("start ") +
          (at ? std::string(at + 9).substr(0, std::string(at + 9).find(' ')) : std::string("?")));
    std::string copy(1, '\0');
    Put16(&copy, 0);
    Send('W', copy);
    for (const std::string& s : g_opts.sends) {
      std::string msg;
      if (s.rfind("keepalive:", 0) == 0) {
        msg = "k";
        Put64(&msg, ParseLsn(s.substr(10)));
        Put64(&msg, 0);
        msg.push_back('\0');
      } else if (s.rfind("sleep:", 0) == 0) {
        ::usleep(static_cast<useconds_t>(std::atoi(s.c_str() + 6)) * 1000);
        continue;
      } else if (s.rfind("xlogdata:", 0) == 0) {
        std::string rest = s.substr(9);
        size_t colon = rest.find(':');
        uint64_t lsn = ParseLsn(rest.substr(0, colon));
        msg = "w";
        Put64(&msg, lsn);
        Put64(&msg, lsn);
        Put64(&msg, 0);
        msg += rest.substr(colon + 1);
      }
      Send('d', msg);
    }
    if (!g_opts.ask_reply_at.empty()) AskReply();
  }
  // A keepalive at --ask-reply-at that asks for a reply.
  void AskReply() {
    std::string msg = "k";
    Put64(&msg, ParseLsn(g_opts.ask_reply_at));
    Put64(&msg, 0);
    msg.push_back('\1');
    Send('d', msg);
  }

  int fd_;
};

}  // namespace

int main(int argc, char** argv) {
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string flag = argv[i], value = argv[i + 1];
    if (flag == "--dir") g_opts.dir = value;
    if (flag == "--port") g_opts.port = std::atoi(value.c_str());
    if (flag == "--system-id") g_opts.system_id = value;
    if (flag == "--wal-lsn") g_opts.wal_lsn = value;
    if (flag == "--send") g_opts.sends.push_back(value);
    if (flag == "--ask-reply-at") g_opts.ask_reply_at = value;
    if (flag == "--plain-error") g_opts.plain_error = value;
    if (flag == "--identify-lsn") g_opts.identify_lsn = value;
  }
  std::string path = g_opts.dir + "/.s.PGSQL." + std::to_string(g_opts.port);
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  struct sockaddr_un addr = {};
  addr.sun_family = AF_UNIX;
  std::snprintf(addr.sun_path, sizeof addr.sun_path, "%s", path.c_str());
  ::unlink(path.c_str());
  if (fd < 0 || ::bind(fd, reinterpret_cast<struct sockaddr*>(&addr), sizeof addr) != 0 ||
      ::listen(fd, 16) != 0) {
    std::perror(path.c_str());
    return 1;
  }
  Print("listening");
  for (;;) {
    int c = ::accept4(fd, nullptr, nullptr, SOCK_CLOEXEC);
    if (c < 0) continue;
    std::thread([c] { Conn(c).Serve(); }).detach();  // a test helper, killed at the end
  }
}
