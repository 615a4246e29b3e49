// bench-standin: a QEMU stand-in for timing qemu-lio from the outside. Built static, so that
// the time from its execve to its first instruction of main is as small as it can be (and it
// is measured anyway: bench-spawn runs it directly as the baseline).
//
//   BENCH_STAMP=FILE   write "T_START_NS T_EXIT_NS\n" (CLOCK_MONOTONIC) there and exit 0:
//                      T_START is taken first thing in main, T_EXIT just before _exit.
//   BENCH_WAIT=1       wait for SIGTERM/SIGINT (as a long-running VM would), then exit 0;
//   BENCH_READY=FILE   created once it waits.
// Every argument (QEMU's command line) is ignored.
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

static long long now_ns() {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec * 1000000000LL + t.tv_nsec;
}

int main() {
  long long t_start = now_ns();
  const char* wait = getenv("BENCH_WAIT");
  if (wait && *wait == '1') {
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigprocmask(SIG_BLOCK, &set, nullptr);
    if (const char* ready = getenv("BENCH_READY")) {
      int fd = open(ready, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
      if (fd >= 0) close(fd);
    }
    int sig;
    sigwait(&set, &sig);
  }
  const char* stamp = getenv("BENCH_STAMP");
  if (stamp) {
    int fd = open(stamp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) _exit(99);
    char buf[64];
    long long t_exit = now_ns();
    int n = snprintf(buf, sizeof buf, "%lld %lld\n", t_start, t_exit);
    if (write(fd, buf, n) != n) _exit(99);
    close(fd);
  }
  _exit(0);
}
