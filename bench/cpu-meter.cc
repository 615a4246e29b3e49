// bench-cpu-meter: host CPU of a nested guest's I/O, in windows the guest itself marks.
//
//   QEMU ... | bench-cpu-meter -p QEMU_PIDFILE -o OUT -l LABEL > CONSOLE_LOG
//
// Reads the nested QEMU's console on stdin and copies it to stdout. The guest prints
// "CPU-MARK BEGIN NAME" just before a fio job and "CPU-MARK END NAME" just after it; at each
// mark this takes a snapshot of the machine it runs on (the test VM, which is the nested
// guest's host), and at END appends to OUT one line of deltas over the window:
//
//   LABEL NAME WALL_NS TICKED_BUSY_NS IDLE_NS NCPUS VCPU_NS QEMU_NS QEMU_THR_NS VHOST_NS KTHREAD_NS USER_NS LOST
//
//   TICKED_BUSY /proc/stat, all CPUs: user+nice+system+irq+softirq+steal. Tick-sampled: a
//              tick the emulator delivers late is busy time lost, and in the TCG test VM on
//              a loaded host it lost up to 40%. Kept only to show that.
//   IDLE       /proc/stat idle+iowait, all CPUs. With NO_HZ an idle CPU's time is measured
//              from clock reads at idle entry and exit, not ticks: NCPUS x WALL - IDLE is the
//              busy time to use (it agrees with the sum of all threads' run time within 1%)
//   NCPUS      CPUs online
//   VCPU       the nested QEMU's vCPU threads ("CPU n/TCG"; needs -name ...,debug-threads=on),
//              from /proc/PID/task/TID/schedstat (ns, exact)
//   QEMU       the whole QEMU process, /proc/PID/stat utime+stime (10 ms units; includes
//              threads that exited inside the window, e.g. idle thread-pool workers)
//   QEMU_THR   QEMU's live non-vCPU threads, schedstat
//   VHOST      kernel threads named vhost-* (the vhost-scsi worker; 6.1 still has kthreads)
//   KTHREAD    every other kernel thread (kworkers: LIO completions, block, writeback; ksoftirqd)
//   USER       every other user thread (this meter, the harness, qemu-lio's parent process)
//   LOST       how many threads were alive at BEGIN and gone at END: their run time inside the
//              window is in no per-thread column (QEMU's is still in QEMU), only in the busy time
// and one line "LABEL NAME threads COMM=NS ..." with the biggest per-name deltas.
//
// Backend CPU per I/O is then (NCPUS x WALL - IDLE - VCPU) / I/Os: everything the machine did
// in the window except emulating the guest's CPU. The per-thread columns say where it went.
//
// Order of reads: at BEGIN the thread scan first and /proc/stat last, at END /proc/stat first,
// so the scans (a few ms of CPU under TCG) fall outside the /proc/stat window.
// The meter blocks in read(2) between marks: it costs nothing inside a window.
#include <ctype.h>
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <map>
#include <string>
#include <vector>

namespace {

long long now_ns() {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec * 1000000000LL + t.tv_nsec;
}

bool read_small(const std::string& path, std::string& out) {
  FILE* f = fopen(path.c_str(), "re");
  if (!f) return false;
  char buf[4096];
  size_t n = fread(buf, 1, sizeof buf - 1, f);
  fclose(f);
  out.assign(buf, n);
  return true;
}

enum Group { kVcpu, kQemu, kVhost, kKthread, kUser, kGroups };

struct Thread {
  Group group;
  std::string comm;
  long long ns;
};

struct Snap {
  long long mono = 0;
  long long busy_ticks = 0, idle_ticks = 0;
  long long qemu_ticks = 0;
  std::map<long, Thread> threads;  // by tid
};

const long kTicks = sysconf(_SC_CLK_TCK);

// "NAME (COMM) S PPID ..." -> comm, and the fields after the closing parenthesis.
bool parse_stat(const std::string& s, std::string& comm, std::vector<std::string>& rest) {
  size_t a = s.find('('), b = s.rfind(')');
  if (a == std::string::npos || b == std::string::npos || b < a) return false;
  comm = s.substr(a + 1, b - a - 1);
  rest.clear();
  size_t i = b + 1;
  while (i < s.size()) {
    while (i < s.size() && isspace((unsigned char)s[i])) ++i;
    size_t j = i;
    while (j < s.size() && !isspace((unsigned char)s[j])) ++j;
    if (j > i) rest.push_back(s.substr(i, j - i));
    i = j;
  }
  return true;
}

void scan_threads(long qemu_pid, Snap& s) {
  DIR* proc = opendir("/proc");
  if (!proc) return;
  std::string st, comm;
  std::vector<std::string> f;
  while (struct dirent* p = readdir(proc)) {
    if (!isdigit((unsigned char)p->d_name[0])) continue;
    long pid = atol(p->d_name);
    std::string tdir = std::string("/proc/") + p->d_name + "/task";
    DIR* tasks = opendir(tdir.c_str());
    if (!tasks) continue;
    while (struct dirent* t = readdir(tasks)) {
      if (!isdigit((unsigned char)t->d_name[0])) continue;
      std::string base = tdir + "/" + t->d_name;
      std::string sched;
      if (!read_small(base + "/stat", st) || !read_small(base + "/schedstat", sched)) continue;
      if (!parse_stat(st, comm, f) || f.size() < 7) continue;
      // f[0] state, f[1] ppid, ... f[6] flags; PF_KTHREAD = 0x00200000
      unsigned long flags = strtoul(f[6].c_str(), nullptr, 10);
      Group g;
      if (pid == qemu_pid)
        g = (comm.rfind("CPU ", 0) == 0 && comm.find('/') != std::string::npos) ? kVcpu : kQemu;
      else if (flags & 0x00200000UL)
        g = comm.rfind("vhost-", 0) == 0 ? kVhost : kKthread;
      else
        g = kUser;
      s.threads[atol(t->d_name)] = Thread{g, comm, atoll(sched.c_str())};
    }
    closedir(tasks);
  }
  closedir(proc);
}

void read_qemu(long qemu_pid, Snap& s) {
  std::string st, comm;
  std::vector<std::string> f;
  if (qemu_pid > 0 && read_small("/proc/" + std::to_string(qemu_pid) + "/stat", st) &&
      parse_stat(st, comm, f) && f.size() > 12)
    s.qemu_ticks = atoll(f[11].c_str()) + atoll(f[12].c_str());  // utime, stime
}

void read_proc_stat(Snap& s) {
  std::string st;
  if (!read_small("/proc/stat", st)) return;
  // "cpu  user nice system idle iowait irq softirq steal guest guest_nice"
  long long v[10] = {0};
  if (sscanf(st.c_str(), "cpu %lld %lld %lld %lld %lld %lld %lld %lld %lld %lld", &v[0], &v[1], &v[2],
             &v[3], &v[4], &v[5], &v[6], &v[7], &v[8], &v[9]) < 8)
    return;
  // guest and guest_nice are already inside user and nice.
  s.busy_ticks = v[0] + v[1] + v[2] + v[5] + v[6] + v[7];
  s.idle_ticks = v[3] + v[4];
  s.mono = now_ns();
}

long read_pidfile(const char* path) {
  std::string s;
  if (!read_small(path, s)) return -1;
  return atol(s.c_str());
}

long long ticks_ns(long long t) { return t * (1000000000LL / kTicks); }

}  // namespace

int main(int argc, char** argv) {
  const char* pidfile = nullptr;
  const char* out = nullptr;
  const char* label = "run";
  for (int i = 1; i + 1 < argc; i += 2) {
    if (!strcmp(argv[i], "-p")) pidfile = argv[i + 1];
    else if (!strcmp(argv[i], "-o")) out = argv[i + 1];
    else if (!strcmp(argv[i], "-l")) label = argv[i + 1];
  }
  if (!pidfile || !out) {
    fprintf(stderr, "usage: QEMU ... | bench-cpu-meter -p QEMU_PIDFILE -o OUT [-l LABEL]\n");
    return 2;
  }
  setvbuf(stdout, nullptr, _IOLBF, 0);
  std::map<std::string, Snap> open_windows;
  char* line = nullptr;
  size_t cap = 0;
  ssize_t n;
  while ((n = getline(&line, &cap, stdin)) > 0) {
    fwrite(line, 1, n, stdout);
    const char* m = strstr(line, "CPU-MARK ");
    if (!m) continue;
    char what[16] = {0}, name[128] = {0};
    if (sscanf(m, "CPU-MARK %15s %127s", what, name) != 2) continue;
    long qpid = read_pidfile(pidfile);
    if (!strcmp(what, "BEGIN")) {
      Snap s;
      scan_threads(qpid, s);
      read_qemu(qpid, s);
      read_proc_stat(s);
      open_windows[name] = std::move(s);
    } else if (!strcmp(what, "END")) {
      auto it = open_windows.find(name);
      if (it == open_windows.end()) continue;
      Snap e;
      read_proc_stat(e);
      read_qemu(qpid, e);
      scan_threads(qpid, e);
      const Snap& b = it->second;
      long long g[kGroups] = {0}, lost = 0;
      std::map<std::string, long long> by_name;
      for (const auto& [tid, t] : e.threads) {
        auto bt = b.threads.find(tid);
        long long d = t.ns - (bt != b.threads.end() ? bt->second.ns : 0);
        g[t.group] += d;
        std::string key = t.comm;
        // kworker/1:2-events -> kworker; vhost-1234 -> vhost; CPU 0/TCG stays.
        if (t.group == kKthread || t.group == kVhost) key = key.substr(0, key.find_first_of("/-"));
        std::replace(key.begin(), key.end(), ' ', '_');
        by_name[(t.group == kQemu ? "qemu:" : "") + key] += d;
      }
      for (const auto& [tid, t] : b.threads)
        if (!e.threads.count(tid)) ++lost;
      FILE* o = fopen(out, "ae");
      if (!o) { perror(out); continue; }
      fprintf(o, "%s %s %lld %lld %lld %ld %lld %lld %lld %lld %lld %lld %lld\n", label, name, e.mono - b.mono,
              ticks_ns(e.busy_ticks - b.busy_ticks), ticks_ns(e.idle_ticks - b.idle_ticks),
              sysconf(_SC_NPROCESSORS_ONLN), g[kVcpu],
              ticks_ns(e.qemu_ticks - b.qemu_ticks), g[kQemu], g[kVhost], g[kKthread], g[kUser], lost);
      std::vector<std::pair<long long, std::string>> top;
      for (const auto& [k, v] : by_name)
        if (v > 0) top.emplace_back(v, k);
      std::sort(top.rbegin(), top.rend());
      fprintf(o, "%s %s threads", label, name);
      for (size_t i = 0; i < top.size() && i < 12; ++i) fprintf(o, " %s=%lld", top[i].second.c_str(), top[i].first);
      fprintf(o, "\n");
      fclose(o);
      open_windows.erase(it);
    }
  }
  free(line);
  return 0;
}
