#include "qemu_lio/process_identity.h"

#include <fstream>
#include <sstream>
#include <string>

namespace qemu_lio {
namespace {

struct Stat {
  char state = '?';
  uint64_t start_time = 0;
};

std::optional<Stat> read_stat(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string line;
  if (!std::getline(in, line)) return std::nullopt;
  // comm (field 2) may hold spaces and ')': the fields after the last ')' are fixed.
  auto close = line.rfind(')');
  if (close == std::string::npos) return std::nullopt;
  std::istringstream rest(line.substr(close + 2));
  Stat st;
  rest >> st.state;  // field 3
  std::string skip;
  for (int field = 4; field < 22; ++field) rest >> skip;
  rest >> st.start_time;  // field 22
  if (!rest) return std::nullopt;
  return st;
}

}  // namespace

std::optional<ProcessId> identify_process(pid_t pid) {
  auto st = read_stat(pid);
  if (!st) return std::nullopt;
  return ProcessId{pid, st->start_time};
}

bool process_alive(const ProcessId& p) {
  if (p.pid <= 0) return false;
  auto st = read_stat(p.pid);
  return st && st->start_time == p.start_time && st->state != 'Z' && st->state != 'X';
}

}  // namespace qemu_lio
