// bench-floor: the syscall floor of provisioning and tearing down N fileio + vhost disks.
//
//   bench-floor [--cfs DIR] [--reps R] [--threads T] IMAGE...
//   bench-floor --clock-cost N     prints the mean cost of one clock_gettime(CLOCK_MONOTONIC)
//                                  in ns (under TCG without a vDSO clock it is a real syscall)
//
// Issues exactly the configfs syscalls that `qemu-lio run` issues for each image (taken from
// its --dry-run script and an strace of a run in the test VM), in the same order, with nothing
// around them: no journal, no lock, no inventory scan, no /proc reads, no image checks, no
// process start-up inside the timed region. Every path and value is built before the clock
// starts. Prints one line per repetition: "REP UP_NS DOWN_NS".
//
// Per disk, up:   mkdir core/fileio_I; mkdir core/fileio_I/SO; write control, udev_path,
//                 enable, attrib/block_size; read attrib/block_size; write wwn/vpd_unit_serial,
//                 attrib/emulate_tpu; read info (twice: qemu-lio checks the mode and the async
//                 flag separately); mkdir target/vhost (EEXIST); mkdir WWN, WWN/tpgt_1; write
//                 nexus; mkdir lun/lun_0; symlink.
// Per disk, down (disks in reverse order): unlink the LUN link; rmdir lun_0; write NULL to
//                 nexus; rmdir tpgt_1, WWN, SO, HBA.
// The one difference from qemu-lio: the HBA index is known (fileio_0..N-1 on a clean tree),
// where qemu-lio probes fileio_0, fileio_1, ... with mkdir until one succeeds.
//
// --threads T (the parallel floor): the same per-disk sequences, each disk's in its order,
// the disks spread over min(T, disks) threads that take the next disk as they finish one,
// as qemu-lio's pool does (T = 16 there). The threads are started inside the timed region,
// as qemu-lio has to start its own; T = 1 is the serial floor.
#include <fcntl.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

namespace {

struct Disk {
  std::string hba, so, control_path, control, udev_path, image, enable, bs, serial_path, serial,
      tpu, info, wwn, tpgt, nexus_path, nexus, lun, link, link_target;
};

[[noreturn]] void die(const char* what, const std::string& path) {
  std::fprintf(stderr, "bench-floor: %s %s: %s\n", what, path.c_str(), std::strerror(errno));
  std::exit(1);
}

void mk(const std::string& p) {
  if (::mkdir(p.c_str(), 0755) != 0) die("mkdir", p);
}
void mk_ok_exists(const std::string& p) {
  if (::mkdir(p.c_str(), 0755) != 0 && errno != EEXIST) die("mkdir", p);
}
void rm(const std::string& p) {
  if (::rmdir(p.c_str()) != 0) die("rmdir", p);
}
void put(const std::string& p, const std::string& v) {
  int fd = ::open(p.c_str(), O_WRONLY | O_CLOEXEC);
  if (fd < 0) die("open", p);
  if (::write(fd, v.data(), v.size()) != static_cast<ssize_t>(v.size())) die("write", p);
  ::close(fd);
}
void get(const std::string& p) {
  char buf[4096];
  int fd = ::open(p.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) die("open", p);
  for (;;) {
    ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0) die("read", p);
    if (n == 0) break;
  }
  ::close(fd);
}

long long now_ns() {
  timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec * 1000000000LL + t.tv_nsec;
}

void up_one(const Disk& d, const std::string& vhost) {
  mk(d.hba);
  mk(d.so);
  put(d.control_path, d.control);
  put(d.udev_path, d.image);
  put(d.enable, "1");
  put(d.bs, "512");
  get(d.bs);
  put(d.serial_path, d.serial);
  put(d.tpu, "1");
  get(d.info);
  get(d.info);
  mk_ok_exists(vhost);
  mk(d.wwn);
  mk(d.tpgt);
  put(d.nexus_path, d.nexus);
  mk(d.lun);
  if (::symlink(d.link_target.c_str(), d.link.c_str()) != 0) die("symlink", d.link);
}

void down_one(const Disk& d) {
  if (::unlink(d.link.c_str()) != 0) die("unlink", d.link);
  rm(d.lun);
  put(d.nexus_path, "NULL");
  rm(d.tpgt);
  rm(d.wwn);
  rm(d.so);
  rm(d.hba);
}

// Runs job(i) for every disk i, on `threads` threads (1: in this thread, in order).
template <class Job>
void each_disk(size_t disks, int threads, Job job) {
  if (threads <= 1 || disks <= 1) {
    for (size_t i = 0; i < disks; ++i) job(i);
    return;
  }
  std::atomic<size_t> next{0};
  auto worker = [&] {
    for (size_t i = next++; i < disks; i = next++) job(i);
  };
  std::vector<std::thread> pool;
  for (size_t t = 1; t < std::min<size_t>(threads, disks); ++t) pool.emplace_back(worker);
  worker();
  for (std::thread& t : pool) t.join();
}

void up(const std::vector<Disk>& disks, const std::string& vhost, int threads) {
  each_disk(disks.size(), threads, [&](size_t i) { up_one(disks[i], vhost); });
}

void down(const std::vector<Disk>& disks, int threads) {
  // Serially newest disk first, as qemu-lio's serial teardown did.
  each_disk(disks.size(), threads, [&](size_t i) { down_one(disks[disks.size() - 1 - i]); });
}

}  // namespace

int main(int argc, char** argv) {
  std::string cfs = "/sys/kernel/config";
  int reps = 1;
  int threads = 1;
  std::vector<std::string> images;
  if (argc == 3 && std::string(argv[1]) == "--clock-cost") {
    int n = std::atoi(argv[2]);
    long long t0 = now_ns();
    for (int i = 0; i < n; ++i) now_ns();
    long long t1 = now_ns();
    std::printf("%lld\n", (t1 - t0) / (n > 0 ? n : 1));
    return 0;
  }
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--cfs" && i + 1 < argc) cfs = argv[++i];
    else if (a == "--reps" && i + 1 < argc) reps = std::atoi(argv[++i]);
    else if (a == "--threads" && i + 1 < argc) threads = std::atoi(argv[++i]);
    else images.push_back(a);
  }
  if (images.empty() || reps < 1 || threads < 1) {
    std::fprintf(stderr, "usage: bench-floor [--cfs DIR] [--reps R] [--threads T] IMAGE...\n");
    return 2;
  }
  const std::string core = cfs + "/target/core", vhost = cfs + "/target/vhost";
  std::vector<Disk> disks;
  for (size_t i = 0; i < images.size(); ++i) {
    struct stat st;
    if (::stat(images[i].c_str(), &st) != 0) die("stat", images[i]);
    char wwn[32], nexus[32], serial[64];
    std::snprintf(wwn, sizeof wwn, "naa.5001405f%08zx", i);
    std::snprintf(nexus, sizeof nexus, "naa.5001405e%08zx", i);
    std::snprintf(serial, sizeof serial, "b3c4f100-0000-4000-8000-%012zx", i);
    Disk d;
    d.hba = core + "/fileio_" + std::to_string(i);
    const std::string so_name = "floor-disk" + std::to_string(i);
    d.so = d.hba + "/" + so_name;
    d.control_path = d.so + "/control";
    d.control = "fd_dev_name=" + images[i] + ",fd_dev_size=" + std::to_string(st.st_size) +
                ",fd_buffered_io=1";
    d.udev_path = d.so + "/udev_path";
    d.image = images[i];
    d.enable = d.so + "/enable";
    d.bs = d.so + "/attrib/block_size";
    d.serial_path = d.so + "/wwn/vpd_unit_serial";
    d.serial = serial;
    d.tpu = d.so + "/attrib/emulate_tpu";
    d.info = d.so + "/info";
    d.wwn = vhost + "/" + wwn;
    d.tpgt = d.wwn + "/tpgt_1";
    d.nexus_path = d.tpgt + "/nexus";
    d.nexus = nexus;
    d.lun = d.tpgt + "/lun/lun_0";
    d.link = d.lun + "/" + so_name;
    d.link_target = d.so;
    disks.push_back(d);
  }
  for (int r = 0; r < reps; ++r) {
    long long t0 = now_ns();
    up(disks, vhost, threads);
    long long t1 = now_ns();
    down(disks, threads);
    long long t2 = now_ns();
    std::printf("%d %lld %lld\n", r, t1 - t0, t2 - t1);
    std::fflush(stdout);
  }
  return 0;
}
