// bench-iogen: the four fio jobs of the cpu part (4k random read or write, O_DIRECT, Linux
// AIO at a fixed queue depth, time-based), as one small static binary for the nested guest.
//
//   bench-iogen DEVICE randread|randwrite QUEUE_DEPTH SECONDS NAME
//   bench-iogen - spin 0 SECONDS NAME
//       no I/O: keeps the guest's CPU busy for SECONDS (the baseline window: a busy guest
//       costs its host CPU even without I/O, e.g. QEMU's main loop emulating its timer ticks)
//
// Why not fio: Debian's fio links ~60 libraries (ceph, gluster, rdma, gnutls, ICU: 84 MB), and
// a nested TCG guest with all of that in its initramfs did not reach its first job in 7
// minutes. This does what fio's `--rw=randread|randwrite --bs=4k --direct=1
// --ioengine=libaio --iodepth=QD --time_based --runtime=SECONDS --norandommap` does, with
// the same system calls per I/O (io_submit, io_getevents), so the host sees the same I/O.
//
// Prints "CPU-MARK BEGIN NAME" just before the first submission and "CPU-MARK END NAME"
// just after the last completion (bench-cpu-meter's window, on the console), then
//   CPU-FIO NAME rc=0 ios=N iops=X clat_mean_ns=Y
// where ios counts completed I/Os and clat is submission to reaped completion.
#include <errno.h>
#include <fcntl.h>
#include <linux/aio_abi.h>
#include <linux/fs.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <vector>

namespace {

long long now_ns() {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec * 1000000000LL + t.tv_nsec;
}

unsigned long long rng_state = 0x9e3779b97f4a7c15ULL;
unsigned long long rng() {  // xorshift64*: cheap, and good enough to spread 4k offsets
  rng_state ^= rng_state >> 12;
  rng_state ^= rng_state << 25;
  rng_state ^= rng_state >> 27;
  return rng_state * 2685821657736338717ULL;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 6) {
    fprintf(stderr, "usage: bench-iogen DEVICE randread|randwrite QUEUE_DEPTH SECONDS NAME\n");
    return 2;
  }
  const char* dev = argv[1];
  const bool write = !strcmp(argv[2], "randwrite");
  const int qd = atoi(argv[3]);
  const long long run_ns = atoll(argv[4]) * 1000000000LL;
  const char* name = argv[5];
  const size_t bs = 4096;
  auto fail = [&](const char* what) {
    printf("CPU-ERROR %s: %s: %s\n", name, what, strerror(errno));
    return 1;
  };
  if (!strcmp(argv[2], "spin")) {
    printf("CPU-MARK BEGIN %s\n", name);
    fflush(stdout);
    const long long t0 = now_ns();
    volatile unsigned long long sink = 0;
    while (now_ns() - t0 < run_ns)
      for (int k = 0; k < 10000; ++k) sink = sink + rng();
    printf("CPU-MARK END %s\n", name);
    printf("CPU-FIO %s rc=0 ios=0 iops=0 clat_mean_ns=0\n", name);
    fflush(stdout);
    return 0;
  }
  int fd = open(dev, (write ? O_RDWR : O_RDONLY) | O_DIRECT);
  if (fd < 0) return fail("open");
  unsigned long long size = 0;
  struct stat st;
  if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode)) size = st.st_size;  // a file, for testing
  else if (ioctl(fd, BLKGETSIZE64, &size) != 0) return fail("BLKGETSIZE64");
  if (size < bs) return fail("device smaller than one block");
  const unsigned long long blocks = size / bs;
  rng_state ^= (unsigned long long)now_ns();

  aio_context_t ctx = 0;
  if (syscall(SYS_io_setup, qd, &ctx) != 0) return fail("io_setup");
  std::vector<struct iocb> cbs(qd);
  std::vector<struct iocb*> ptrs(qd);
  std::vector<long long> issued(qd);
  std::vector<struct io_event> events(qd);
  for (int i = 0; i < qd; ++i) {
    void* buf = nullptr;
    if (posix_memalign(&buf, bs, bs) != 0) return fail("posix_memalign");
    memset(buf, 0x5a + i, bs);
    memset(&cbs[i], 0, sizeof cbs[i]);
    cbs[i].aio_fildes = fd;
    cbs[i].aio_lio_opcode = write ? IOCB_CMD_PWRITE : IOCB_CMD_PREAD;
    cbs[i].aio_buf = (unsigned long long)buf;
    cbs[i].aio_nbytes = bs;
    cbs[i].aio_data = i;
  }
  auto arm = [&](int i) {
    cbs[i].aio_offset = (rng() % blocks) * bs;
    issued[i] = now_ns();
    ptrs[0] = &cbs[i];
    return syscall(SYS_io_submit, ctx, 1, ptrs.data()) == 1;
  };

  printf("CPU-MARK BEGIN %s\n", name);
  fflush(stdout);
  const long long t0 = now_ns();
  long long ios = 0, lat_sum = 0, errors = 0;
  int inflight = 0;
  for (int i = 0; i < qd; ++i) {
    if (!arm(i)) return fail("io_submit");
    ++inflight;
  }
  bool stopping = false;
  while (inflight > 0) {
    long n = syscall(SYS_io_getevents, ctx, 1, qd, events.data(), nullptr);
    if (n < 0) {
      if (errno == EINTR) continue;
      return fail("io_getevents");
    }
    const long long t = now_ns();
    if (!stopping && t - t0 >= run_ns) stopping = true;
    for (long k = 0; k < n; ++k) {
      int i = (int)events[k].data;
      --inflight;
      if (events[k].res != (long long)bs) ++errors;
      else { ++ios; lat_sum += t - issued[i]; }
      if (!stopping) {
        if (!arm(i)) return fail("io_submit");
        ++inflight;
      }
    }
  }
  const long long t1 = now_ns();
  printf("CPU-MARK END %s\n", name);
  printf("CPU-FIO %s rc=%d ios=%lld iops=%.1f clat_mean_ns=%.0f\n", name, errors ? 1 : 0, ios,
         ios * 1e9 / (double)(t1 - t0), ios ? (double)lat_sum / ios : 0.0);
  fflush(stdout);
  syscall(SYS_io_destroy, ctx);
  close(fd);
  return errors ? 1 : 0;
}
