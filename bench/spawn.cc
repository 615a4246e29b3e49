// bench-spawn: run a command and time it from the outside with CLOCK_MONOTONIC.
//
//   bench-spawn -o OUT [-s STAMP] -- CMD [ARGS...]
//
// Appends one line to OUT: "UP_NS DOWN_NS TOTAL_NS STATUS UTIME_US STIME_US MAXRSS_KB", where TOTAL is from just before
// fork to just after wait4 returns. With -s, BENCH_STAMP=STAMP is put in the command's
// environment for bench-standin (which the command, e.g. qemu-lio, runs as QEMU); then
//   UP   = stand-in's first instant - our fork   (the wrapper's provisioning, plus two execs)
//   DOWN = our wait4 return - stand-in's exit  (the wrapper's teardown, plus exit/reap)
// Without a stamp UP and DOWN are -1. STATUS is the exit code, or 128+signal. The CPU times
// and peak RSS are wait4's: the command's own, plus those of the children it reaped.
// The baseline (bench-standin run directly, through the same path) measures what the two
// execs, the exit and the reap cost without any wrapper; the driver subtracts it.
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static long long now_ns() {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec * 1000000000LL + t.tv_nsec;
}

int main(int argc, char** argv) {
  const char* out = nullptr;
  const char* stamp = nullptr;
  int i = 1;
  for (; i < argc; ++i) {
    if (!strcmp(argv[i], "-o") && i + 1 < argc) out = argv[++i];
    else if (!strcmp(argv[i], "-s") && i + 1 < argc) stamp = argv[++i];
    else if (!strcmp(argv[i], "--")) { ++i; break; }
    else break;
  }
  if (!out || i >= argc) {
    fprintf(stderr, "usage: bench-spawn -o OUT [-s STAMP] -- CMD [ARGS...]\n");
    return 2;
  }
  if (stamp) {
    unlink(stamp);
    setenv("BENCH_STAMP", stamp, 1);
  }
  long long t0 = now_ns();
  pid_t pid = fork();
  if (pid < 0) { perror("bench-spawn: fork"); return 1; }
  if (pid == 0) {
    execvp(argv[i], argv + i);
    perror(argv[i]);
    _exit(127);
  }
  int st = 0;
  struct rusage ru;
  while (wait4(pid, &st, 0, &ru) < 0) {}
  long long t3 = now_ns();
  int rc = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
  long long up = -1, down = -1;
  if (stamp) {
    FILE* f = fopen(stamp, "r");
    long long t1, t2;
    if (f && fscanf(f, "%lld %lld", &t1, &t2) == 2) {
      up = t1 - t0;
      down = t3 - t2;
    }
    if (f) fclose(f);
  }
  FILE* o = fopen(out, "a");
  if (!o) { perror(out); return 1; }
  fprintf(o, "%lld %lld %lld %d %lld %lld %ld\n", up, down, t3 - t0, rc,
          ru.ru_utime.tv_sec * 1000000LL + ru.ru_utime.tv_usec,
          ru.ru_stime.tv_sec * 1000000LL + ru.ru_stime.tv_usec, ru.ru_maxrss);
  fclose(o);
  return rc;
}
