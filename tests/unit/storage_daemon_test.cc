// qemu-storage-daemon's command line, and the real daemon (from qemu-system-common, which
// the test machines install with QEMU) started, asked for its exports over NBD and stopped.
// No kernel is involved: the VM suites connect its exports to /dev/nbdN.

#include "qemu_lio/storage_daemon.h"

#include <signal.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <cstring>
#include <fstream>
#include <string>
#include <vector>

#include "qemu_lio/nbd_handshake.h"
#include "qemu_lio/supervisor.h"
#include "qemu_lio/unique_fd.h"
#include "test_support.h"

namespace qemu_lio {
namespace {

using std::chrono::milliseconds;

// Generous: the daemon starts in well under a second, but CI machines are shared.
constexpr milliseconds kStart{60000};

DaemonFiles files_in(const TempDir& dir) {
  return {dir / "vm.qmp", dir / "vm.nbd", dir / "vm.qsd.pid", dir / "vm.qsd.log"};
}

TEST(StorageDaemonArgs, EveryOptionSpelledOutPerNodeAndOneExportPerImage) {
  const DaemonFiles f{"/s/vm.qmp", "/s/vm.nbd", "/s/vm.pid", "/s/vm.log"};
  const std::vector<DaemonImage> images = {{"/img/a,b.qcow2", "qcow2", CacheMode::kNone, true, true},
                                           {"/img/c.vmdk", "vmdk", CacheMode::kWritethrough, false, false}};
  const std::vector<std::string> want = {
      "--chardev", "socket,id=qmp,path=/s/vm.qmp,server=on,wait=off", "--monitor", "chardev=qmp",
      "--blockdev",
      "driver=file,node-name=f0,filename=/img/a,,b.qcow2,locking=on,cache.direct=on,cache.no-flush=off,"
      "discard=unmap,read-only=on,auto-read-only=off",
      "--blockdev",
      "driver=qcow2,node-name=d0,file=f0,cache.direct=on,cache.no-flush=off,discard=unmap,read-only=on,"
      "auto-read-only=off",
      "--blockdev",
      "driver=file,node-name=f1,filename=/img/c.vmdk,locking=on,cache.direct=off,cache.no-flush=off,"
      "discard=ignore,read-only=off,auto-read-only=off",
      "--blockdev",
      "driver=vmdk,node-name=d1,file=f1,cache.direct=off,cache.no-flush=off,discard=ignore,read-only=off,"
      "auto-read-only=off",
      "--nbd-server", "addr.type=unix,addr.path=/s/vm.nbd,max-connections=2",
      "--export", "type=nbd,id=e0,node-name=d0,name=e0,writable=off",
      "--export", "type=nbd,id=e1,node-name=d1,name=e1,writable=on,writethrough=on",
      "--pidfile", "/s/vm.pid"};
  EXPECT_EQ(storage_daemon_args(images, f), want);
}

NbdExport negotiate(const std::string& socket, const std::string& name) {
  UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_un a{};
  a.sun_family = AF_UNIX;
  std::strncpy(a.sun_path, socket.c_str(), sizeof a.sun_path - 1);
  EXPECT_EQ(::connect(fd.get(), reinterpret_cast<sockaddr*>(&a), sizeof a), 0) << socket;
  return nbd_negotiate(fd.get(), name, socket, milliseconds(30000));
}

TEST(StorageDaemon, ServesEachImageOnItsExportUntilStopped) {
  TempDir dir;
  write_file(dir / "a.raw", 1 << 20);
  write_file(dir / "b.raw", 2 << 20);
  const DaemonFiles f = files_in(dir);
  pid_t pid = -1;
  {
    StorageDaemon d("qemu-storage-daemon", {{dir / "a.raw", "raw"}, {dir / "b.raw", "raw", CacheMode::kNone, true}}, f,
                    "vm", kStart);
    pid = d.pid();
    std::ifstream pf(f.pidfile);
    long named = 0;
    ASSERT_TRUE(pf >> named);
    EXPECT_EQ(named, pid);
    // The sockets are private: the daemon runs with umask 077.
    struct stat st;
    ASSERT_EQ(::stat(f.nbd_socket.c_str(), &st), 0);
    EXPECT_EQ(st.st_mode & 077, 0u);
    EXPECT_EQ(::getsid(pid), pid) << "a session of its own";
    const NbdExport a = negotiate(f.nbd_socket, "e0"), b = negotiate(f.nbd_socket, "e1");
    EXPECT_EQ(a.size, 1u << 20);
    EXPECT_EQ(b.size, 2u << 20);
    EXPECT_FALSE(a.flags & nbd_flag::kReadOnly);
    EXPECT_TRUE(b.flags & nbd_flag::kReadOnly);
    EXPECT_TRUE(d.stop(milliseconds(30000))) << "SIGTERM ends it cleanly";
    EXPECT_TRUE(d.stop(milliseconds(30000))) << "and again: nothing to do";
  }
  EXPECT_NE(::kill(pid, 0), 0) << "gone and reaped";
  EXPECT_NE(::access(f.pidfile.c_str(), F_OK), 0) << "a clean exit removes the pidfile";
}

TEST(StorageDaemon, StartedUnderARunsSignalBlockItStillEndsCleanlyOnSigterm) {
  // A run blocks SIGTERM for its own signal loop; the daemon must not inherit that, or
  // stop() would always end in SIGKILL, unflushed.
  TempDir dir;
  write_file(dir / "a.raw", 1 << 20);
  SignalBlock block;
  StorageDaemon d("qemu-storage-daemon", {{dir / "a.raw", "raw"}}, files_in(dir), "vm", kStart);
  EXPECT_TRUE(d.stop(milliseconds(30000)));
}

TEST(StorageDaemon, AFailedStartIsOneLineWithTheDaemonsReasonAndNothingRuns) {
  TempDir dir;
  const DaemonFiles f = files_in(dir);
  const std::string err =
      error_of([&] { StorageDaemon("qemu-storage-daemon", {{dir / "missing.qcow2", "qcow2"}}, f, "/img/x", kStart); });
  EXPECT_EQ(err.rfind("/img/x: the storage daemon did not start: ", 0), 0u) << err;
  EXPECT_NE(err.find("Could not open '" + dir / "missing.qcow2" + "': No such file or directory"), std::string::npos)
      << err;
  EXPECT_EQ(err.find("--blockdev"), std::string::npos) << "the daemon's echo of its option is left out: " << err;
  EXPECT_EQ(err.find('\n'), std::string::npos) << err;
  EXPECT_NE(error_of([&] { StorageDaemon("/nonexistent/qsd", {{dir / "a", "raw"}}, f, "/img/x", kStart); })
                .find("cannot execute /nonexistent/qsd"),
            std::string::npos);
}

TEST(StorageDaemon, ADaemonThatNeverGetsReadyIsKilledAtTheDeadline) {
  TempDir dir;
  const std::string fake = dir / "silent-daemon";
  {
    std::ofstream(fake) << "#!/bin/sh\nexec sleep 600\n";
  }
  ::chmod(fake.c_str(), 0755);
  const auto t0 = std::chrono::steady_clock::now();
  const std::string err =
      error_of([&] { StorageDaemon(fake, {{dir / "a", "raw"}}, files_in(dir), "/img/x", milliseconds(300)); });
  EXPECT_NE(err.find("did not get ready within 300 ms"), std::string::npos) << err;
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(30));
}

}  // namespace
}  // namespace qemu_lio

namespace qemu_lio {
namespace {

TEST(StorageDaemon, ItsPidIsHandedOnBeforeItIsReadyAndAFailedHandOffStopsIt) {
  TempDir dir;
  write_file(dir / "a.raw", 1 << 20);
  pid_t seen = -1;
  bool ready_then = true;
  const DaemonFiles f = files_in(dir);
  {
    StorageDaemon d("qemu-storage-daemon", {{dir / "a.raw", "raw"}}, f, "vm", kStart, [&](pid_t p) {
      seen = p;
      ready_then = ::access(f.pidfile.c_str(), F_OK) == 0;
    });
    EXPECT_EQ(seen, d.pid());
    EXPECT_FALSE(ready_then) << "a journal names the daemon before its start can fail";
  }
  pid_t refused = -1;
  EXPECT_THROW(StorageDaemon("qemu-storage-daemon", {{dir / "a.raw", "raw"}}, f, "vm", kStart,
                             [&](pid_t p) {
                               refused = p;
                               throw Error("journal", "cannot write");
                             }),
               Error);
  ASSERT_GT(refused, 0);
  EXPECT_NE(::kill(refused, 0), 0) << "stopped and reaped when the journal could not name it";
}

}  // namespace
}  // namespace qemu_lio
