// The libvirt hook's release and reconnect over journals in a temporary state directory and
// the in-memory configfs: release removes the domain's set (its backstop stopped first) but
// never one whose QEMU runs, and touches no other domain's.

#include "qemu_lio/libvirt_hook.h"

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include "fake_configfs.h"
#include "qemu_lio/error.h"
#include "qemu_lio/journal.h"
#include "qemu_lio/plan_builder.h"
#include "qemu_lio/provisioner.h"
#include "test_support.h"

namespace qemu_lio {
namespace {

const char* const kUuid = "0b8a4a58-4e1b-4cc8-9f8a-9c1d5c3e1f00";

ProcessId self() { return identify_process(::getpid()).value(); }

// A child that waits to be killed: a stand-in backstop.
struct Sleeper {
  Sleeper() {
    pid = ::fork();
    if (pid == 0) {
      ::pause();
      ::_exit(0);
    }
    id = identify_process(pid).value();
  }
  ~Sleeper() {
    ::kill(pid, SIGKILL);
    ::waitpid(pid, nullptr, 0);
  }
  bool alive() {
    int status;
    return ::waitpid(pid, &status, WNOHANG) == 0;
  }
  pid_t pid;
  ProcessId id;
};

ProcessId dead_process() {
  pid_t child = ::fork();
  if (child == 0) ::_exit(0);
  ProcessId id{child, 1};
  ::waitpid(child, nullptr, 0);
  return id;
}

class LibvirtHookTest : public ::testing::Test {
 protected:
  LibvirtHookTest() {
    fs_.mkdir("target/vhost");
    initial_ = fs_.snapshot();
  }

  std::string provision(const std::string& vm, const std::string& uuid, const ProcessId& wrapper,
                        std::optional<ProcessId> owner, std::optional<ProcessId> backstop) {
    return provision_journalled(fs_, state_, vm, "/img/" + vm + ".raw", wrapper, owner, backstop,
                                [&](JournalWriter& j) {
                                  j.libvirt_domain(uuid);
                                  j.await_qemu(300);
                                });
  }

  TempDir dir_;
  std::string state_ = dir_ / "state";
  FakeConfigFs fs_;
  std::string initial_;
};

TEST_F(LibvirtHookTest, ReleaseStopsTheBackstopAndRemovesTheSet) {
  Sleeper backstop;
  const std::string journal = provision("dom", kUuid, dead_process(), dead_process(), backstop.id);
  EXPECT_EQ(release_libvirt_domain(fs_, state_, kUuid), 0);
  EXPECT_EQ(fs_.snapshot(), initial_);
  EXPECT_NE(::access(journal.c_str(), F_OK), 0);
  EXPECT_FALSE(backstop.alive());
}

TEST_F(LibvirtHookTest, ReleaseNeverRemovesASetWhoseQemuRuns) {
  Sleeper backstop;
  provision("dom", kUuid, dead_process(), self(), backstop.id);
  const std::string before = fs_.snapshot();
  EXPECT_EQ(release_libvirt_domain(fs_, state_, kUuid), 0);
  EXPECT_EQ(fs_.snapshot(), before);
  EXPECT_TRUE(backstop.alive());
}

TEST_F(LibvirtHookTest, ReleaseTouchesNoOtherDomain) {
  provision("other", "11111111-2222-3333-4444-555555555555", dead_process(), std::nullopt, std::nullopt);
  const std::string before = fs_.snapshot();
  EXPECT_EQ(release_libvirt_domain(fs_, state_, kUuid), 0);
  EXPECT_EQ(fs_.snapshot(), before);
}

TEST_F(LibvirtHookTest, OnlyPrepareReleaseAndReconnectOfOurDomainsAct) {
  provision("dom", kUuid, dead_process(), dead_process(), std::nullopt);
  const std::string before = fs_.snapshot();
  const std::string ours = std::string("<domain><name>dom</name><uuid>") + kUuid +
                           "</uuid><metadata><lio:disks xmlns:lio='urn:qemu-lio:libvirt:1'>"
                           "<lio:disk wwpn='naa.5001405aabbccdd0' file='/img/dom.raw'/></lio:disks>"
                           "</metadata><devices><hostdev mode='subsystem' type='scsi_host'>"
                           "<source protocol='vhost' wwpn='naa.5001405aabbccdd0'/></hostdev></devices></domain>";
  RunOptions o;
  o.state_dir = state_;
  for (const char* op : {"start", "started", "stopped", "migrate", "restore"}) {
    o.args = {"dom", op, "begin", "-"};
    EXPECT_EQ(libvirt_hook(o, ours, fs_), 0) << op;
  }
  o.args = {"dom", "release", "end", "-"};
  EXPECT_EQ(libvirt_hook(o, "<domain><name>dom</name></domain>", fs_), 0);  // not ours
  EXPECT_EQ(fs_.snapshot(), before);
  EXPECT_EQ(libvirt_hook(o, ours, fs_), 0);
  EXPECT_EQ(fs_.snapshot(), initial_);
}

// The <hostdev> was detached or the metadata edited while the domain ran: release still
// removes what was made for the domain's UUID, and neither release nor reconnect ever fails
// (libvirt kills a running domain whose reconnect hook fails).
TEST_F(LibvirtHookTest, ReleaseAndReconnectGoByUuidAndNeverFail) {
  provision("dom", kUuid, dead_process(), dead_process(), std::nullopt);
  const std::string changed = std::string("<domain><name>dom</name><uuid>") + kUuid +
                              "</uuid><metadata><lio:disks xmlns:lio='urn:qemu-lio:libvirt:1'>"
                              "<lio:disk wwpn='naa.5001405aabbccdd0' file='/img/dom.raw'/></lio:disks>"
                              "</metadata><devices/></domain>";
  RunOptions o;
  o.state_dir = state_;
  o.configfs = "/nonexistent";  // a backstop cannot even be started: still no failure
  o.args = {"dom", "reconnect", "begin", "-"};
  EXPECT_EQ(libvirt_hook(o, changed, fs_), 0);
  o.args = {"dom", "release", "end", "-"};
  EXPECT_EQ(libvirt_hook(o, "<domain><name>dom</name><uuid>", fs_), 0);  // unparseable
  EXPECT_EQ(libvirt_hook(o, changed, fs_), 0);
  EXPECT_EQ(fs_.snapshot(), initial_);
  // prepare, the one that may refuse, still checks the XML.
  o.args = {"dom", "prepare", "begin", "-"};
  EXPECT_THROW(libvirt_hook(o, changed, fs_), Error);
}

}  // namespace
}  // namespace qemu_lio
