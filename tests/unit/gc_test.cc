// gc and list over journals in a temporary state directory and the fake kernel: a set is
// collected only when its wrapper, QEMU and backstop are all gone, and a dry run touches
// nothing.

#include "qemu_lio/gc.h"

#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <chrono>
#include <string>
#include <thread>
#include <vector>

#include "fake_configfs.h"
#include "qemu_lio/journal.h"
#include "qemu_lio/plan_builder.h"
#include "qemu_lio/provisioner.h"
#include "test_support.h"

namespace qemu_lio {
namespace {

using std::chrono::milliseconds;

const RetryPolicy kFastRetry{milliseconds(1), milliseconds(4), milliseconds(20)};

bool file_exists(const std::string& path) { return ::access(path.c_str(), F_OK) == 0; }

ProcessId self() {
  auto p = identify_process(::getpid());
  EXPECT_TRUE(p.has_value());
  return p.value_or(ProcessId{});
}

// The identity of a process that has exited and been reaped.
ProcessId dead_process() {
  pid_t child = ::fork();
  if (child == 0) {
    ::pause();
    ::_exit(0);
  }
  EXPECT_GT(child, 0);
  ProcessId id = identify_process(child).value_or(ProcessId{child, 1});
  ::kill(child, SIGKILL);
  int status = 0;
  ::waitpid(child, &status, 0);
  EXPECT_FALSE(process_alive(id));
  return id;
}

// Our own pid with a start time that is not ours: a recycled pid.
ProcessId recycled_pid() {
  ProcessId p = self();
  p.start_time += 1;
  return p;
}

class GcTest : public ::testing::Test {
 protected:
  GcTest() {
    fs_.mkdir("target/vhost");
    initial_ = fs_.snapshot();
  }
  ~GcTest() override { EXPECT_FALSE(fs_.kernel_crashed()) << fs_.crash_reason(); }

  // A run of `vm` with one disk on `image`, journalled under `wrapper` (and `owner` and
  // `backstop` if given), its objects left in the kernel.
  std::string provision(const std::string& vm, const std::string& image, const ProcessId& wrapper,
                        std::optional<ProcessId> owner = {}, std::optional<ProcessId> backstop = {}) {
    return provision_journalled(fs_, state_, vm, image, wrapper, owner, backstop, {}, kFastRetry);
  }

  TempDir dir_;
  std::string state_ = dir_ / "state";
  FakeConfigFs fs_;
  std::string initial_;
};

TEST_F(GcTest, DeadRunIsCollected) {
  const ProcessId gone = dead_process();
  const std::string journal = provision("dead", "/img/a.raw", gone, recycled_pid(), gone);
  const size_t objects = read_journal(journal).undo.size();
  GcReport r = collect_garbage(GcEffects::real(fs_), state_, kFastRetry);
  EXPECT_EQ(r.sets, 1);
  EXPECT_EQ(r.objects_removed, static_cast<int>(objects));
  EXPECT_EQ(r.failures, 0);
  ASSERT_EQ(r.lines.size(), 1u);
  EXPECT_NE(r.lines[0].find("dead"), std::string::npos) << r.lines[0];
  EXPECT_EQ(fs_.snapshot(), initial_);
  EXPECT_FALSE(file_exists(journal));
  EXPECT_TRUE(list_journals(state_).empty());
}

TEST_F(GcTest, RecycledPidsDoNotKeepASetAlive) {
  // Every process the journal names has a pid that runs now, but as another process.
  const std::string journal = provision("recycled", "/img/a.raw", recycled_pid(), recycled_pid(),
                                        recycled_pid());
  GcReport r = collect_garbage(GcEffects::real(fs_), state_, kFastRetry);
  EXPECT_EQ(r.sets, 1);
  EXPECT_FALSE(file_exists(journal));
  EXPECT_EQ(fs_.snapshot(), initial_);
}

TEST_F(GcTest, LiveWrapperKeepsItsSet) {
  const std::string journal = provision("live", "/img/a.raw", self());
  const std::string before = fs_.snapshot();
  GcReport r = collect_garbage(GcEffects::real(fs_), state_, kFastRetry);
  EXPECT_EQ(r.sets, 0);
  EXPECT_TRUE(r.lines.empty());
  EXPECT_EQ(fs_.snapshot(), before);
  EXPECT_TRUE(file_exists(journal));
}

TEST_F(GcTest, LiveOwnerKeepsItsSet) {
  const std::string journal = provision("owned", "/img/a.raw", dead_process(), self());
  const std::string before = fs_.snapshot();
  EXPECT_EQ(collect_garbage(GcEffects::real(fs_), state_, kFastRetry).sets, 0);
  EXPECT_EQ(fs_.snapshot(), before);
  EXPECT_TRUE(file_exists(journal));
}

TEST_F(GcTest, LiveBackstopAloneKeepsItsSet) {
  const ProcessId gone = dead_process();
  const std::string journal = provision("healing", "/img/a.raw", gone, gone, self());
  const std::string before = fs_.snapshot();
  GcReport r = collect_garbage(GcEffects::real(fs_), state_, kFastRetry);
  EXPECT_EQ(r.sets, 0);
  EXPECT_EQ(fs_.snapshot(), before);
  EXPECT_TRUE(file_exists(journal));
}

TEST_F(GcTest, OnlyTheStaleSetOfSeveralIsCollected) {
  const std::string live = provision("live", "/img/a.raw", self());
  const std::string after_live = fs_.snapshot();
  const std::string stale = provision("stale", "/img/b.raw", dead_process());
  GcReport r = collect_garbage(GcEffects::real(fs_), state_, kFastRetry);
  EXPECT_EQ(r.sets, 1);
  EXPECT_EQ(fs_.snapshot(), after_live);
  EXPECT_TRUE(file_exists(live));
  EXPECT_FALSE(file_exists(stale));
}

TEST_F(GcTest, ObjectThatWillNotGoKeepsTheJournal) {
  const std::string journal = provision("stuck", "/img/a.raw", dead_process());
  fs_.fail_on(FsOp::kRmdir, "/tpgt_1", EIO);
  GcReport r = collect_garbage(GcEffects::real(fs_), state_, kFastRetry);
  EXPECT_EQ(r.sets, 1);
  EXPECT_GT(r.failures, 0);
  ASSERT_EQ(r.lines.size(), 1u);
  EXPECT_NE(r.lines[0].find("journal kept"), std::string::npos) << r.lines[0];
  EXPECT_TRUE(file_exists(journal));
  fs_.clear_faults();
  EXPECT_EQ(collect_garbage(GcEffects::real(fs_), state_, kFastRetry).failures, 0);
  EXPECT_FALSE(file_exists(journal));
  EXPECT_EQ(fs_.snapshot(), initial_);
}

TEST_F(GcTest, AKeptJournalNeverRemovesWhatARestartOfItsVmMadeAgain) {
  // A teardown left the journal (an object would not go) and the objects went later; the VM
  // starts again and makes the same names (its wwn and object names are deterministic).
  const std::string stale = provision("vm", "/img/a.raw", dead_process());
  const JournalContents old = read_journal(stale);
  ASSERT_EQ(teardown_journal(fs_, old, kFastRetry, [](const std::string&) {}).failed, 0);
  ASSERT_EQ(fs_.snapshot(), initial_);
  const std::string live = provision("vm", "/img/a.raw", self());
  ASSERT_EQ(read_journal(live).undo.size(), old.undo.size());
  for (size_t i = 0; i < old.undo.size(); ++i) ASSERT_EQ(read_journal(live).undo[i].path, old.undo[i].path);
  const std::string running = fs_.snapshot();
  GcReport r = collect_garbage(GcEffects::real(fs_), state_, kFastRetry);
  EXPECT_EQ(r.sets, 1);
  EXPECT_EQ(r.failures, 0);
  EXPECT_EQ(r.objects_removed, 0);
  EXPECT_EQ(fs_.snapshot(), running) << "the running VM keeps its disk";
  EXPECT_FALSE(file_exists(stale));
  EXPECT_TRUE(file_exists(live));
}

TEST_F(GcTest, DryRunTouchesNothingAndSaysWhatItWouldDo) {
  const std::string journal = provision("dead", "/img/a.raw", dead_process());
  const JournalContents j = read_journal(journal);
  const std::string before = fs_.snapshot();
  const size_t changes = fs_.log().size();
  std::vector<std::string> said;
  auto say = [&](const std::string& line) { said.push_back(line); };
  std::vector<std::string> forgotten;
  ForgetJournal forget_printer = [&](const std::string& f) { said.push_back("would delete " + f); forgotten.push_back(f); };
  auto dry = make_dry_run_configfs(fs_, say);
  GcReport r = collect_garbage(GcEffects{*dry, forget_printer}, state_, kFastRetry);

  EXPECT_EQ(r.sets, 1);
  EXPECT_EQ(r.failures, 0);
  EXPECT_EQ(r.objects_removed, static_cast<int>(j.undo.size()));
  EXPECT_EQ(fs_.snapshot(), before);
  EXPECT_EQ(fs_.log().size(), changes);
  EXPECT_TRUE(file_exists(journal));
  EXPECT_EQ(forgotten, std::vector<std::string>{journal});
  // One line per object, in teardown order (newest first), naming absolute paths.
  std::vector<std::string> removes;
  for (const std::string& s : said)
    if (s.rfind("would remove ", 0) == 0) removes.push_back(s);
  for (const std::string& s : removes)
    EXPECT_EQ(s.rfind("would remove /sys/kernel/config/target/", 0), 0u) << s;
  size_t expected_removes = 0;
  for (const Undo& u : j.undo) expected_removes += u.kind != Undo::Kind::kWrite;
  EXPECT_EQ(removes.size(), expected_removes);
  ASSERT_FALSE(removes.empty());
  EXPECT_EQ(removes.back(), "would remove /sys/kernel/config/" + j.undo.front().path);
  bool nexus = false;
  for (const std::string& s : said)
    nexus |= s.rfind("would write 'NULL' to /sys/kernel/config/target/vhost/", 0) == 0;
  EXPECT_TRUE(nexus);

  // The real gc afterwards still finds everything to do.
  EXPECT_EQ(collect_garbage(GcEffects::real(fs_), state_, kFastRetry).sets, 1);
  EXPECT_EQ(fs_.snapshot(), initial_);
}

TEST_F(GcTest, NoStateDirectoryIsNotCreated) {
  const std::string missing = dir_ / "never";
  GcReport r = collect_garbage(GcEffects::real(fs_), missing, kFastRetry);
  EXPECT_EQ(r.sets, 0);
  EXPECT_FALSE(file_exists(missing));
}

// An instant restart: the previous run's QEMU and wrapper are gone, its backstop is still
// tearing down. The new start waits for that teardown instead of failing on "exported".
TEST_F(GcTest, StartWaitsForALeavingRunOfItsImage) {
  const ProcessId gone = dead_process();
  const std::string journal = provision("leaving", "/img/a.raw", gone, gone, self());
  std::thread backstop([&] {
    std::this_thread::sleep_for(milliseconds(150));
    ::unlink(journal.c_str());  // what a backstop does once the set is gone
  });
  const auto t0 = std::chrono::steady_clock::now();
  auto held = wait_for_leaving_runs(state_, {"/img/a.raw"}, std::chrono::seconds(30));
  const auto waited = std::chrono::steady_clock::now() - t0;
  backstop.join();
  EXPECT_TRUE(held.empty());
  EXPECT_GE(waited, milliseconds(100));
}

TEST_F(GcTest, LeavingRunPastTheLimitIsNamed) {
  const ProcessId gone = dead_process();
  provision("stuck", "/img/a.raw", gone, gone, self());
  EXPECT_EQ(wait_for_leaving_runs(state_, {"/img/a.raw"}, milliseconds(60)),
            std::vector<std::string>{"/img/a.raw"});
}

TEST_F(GcTest, LiveRunsAndOtherImagesAreNotWaitedFor) {
  const ProcessId gone = dead_process();
  provision("live", "/img/a.raw", self());                  // in use: the conflict check says so
  provision("owned", "/img/b.raw", gone, self(), self());   // QEMU still runs
  provision("other", "/img/c.raw", gone, gone, self());     // leaving, but not our image
  const auto t0 = std::chrono::steady_clock::now();
  EXPECT_TRUE(wait_for_leaving_runs(state_, {"/img/a.raw", "/img/b.raw", "/img/d.raw"},
                                    std::chrono::seconds(30)).empty());
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(5));
}

TEST_F(GcTest, StatusesClassifyEachSet) {
  const ProcessId gone = dead_process();
  provision("a-live", "/img/a.raw", self());
  provision("b-healing", "/img/b.raw", gone, std::nullopt, self());
  provision("c-stale", "/img/c.raw", gone);
  std::vector<VmStatus> vms = vm_statuses(fs_, state_);
  ASSERT_EQ(vms.size(), 3u);
  EXPECT_EQ(vms[0].journal.vm_name, "a-live");
  EXPECT_EQ(vms[0].state, "active");
  EXPECT_TRUE(vms[0].wrapper_alive);
  EXPECT_FALSE(vms[0].backstop_alive);
  EXPECT_EQ(vms[0].objects_missing, 0);
  EXPECT_EQ(vms[0].objects_present, static_cast<int>(vms[0].journal.undo.size()));
  EXPECT_EQ(vms[1].state, "active");
  EXPECT_FALSE(vms[1].wrapper_alive);
  EXPECT_TRUE(vms[1].backstop_alive);
  EXPECT_EQ(vms[2].state, "stale");

  // A live set with an object gone is partial.
  fs_.unlink(vms[0].journal.undo.back().path);
  EXPECT_EQ(vm_statuses(fs_, state_)[0].state, "partial");
}

TEST_F(GcTest, JsonNamesTheBackstop) {
  const ProcessId gone = dead_process();
  provision("healing", "/img/a.raw", gone, std::nullopt, self());
  provision("stale", "/img/b.raw", gone);
  const std::string json = render_statuses(vm_statuses(fs_, state_), true);
  const nlohmann::json list = nlohmann::json::parse(json);
  ASSERT_TRUE(list.is_array()) << json;
  bool healing = false, other = false;
  for (const auto& vm : list) {
    if (vm.at("name") == "healing") {
      healing = true;
      EXPECT_EQ(vm.at("state"), "active");
      EXPECT_EQ(vm.at("backstop_pid"), ::getpid());
      EXPECT_EQ(vm.at("backstop_alive"), true);
      EXPECT_EQ(vm.at("disks").at(0).at("image"), "/img/a.raw");
    } else {
      other = true;
      EXPECT_TRUE(vm.at("backstop_pid").is_null()) << json;
      EXPECT_EQ(vm.at("backstop_alive"), false);
    }
  }
  EXPECT_TRUE(healing && other) << json;
  EXPECT_EQ(json.substr(json.size() - 2), "]\n");
  EXPECT_EQ(render_statuses({}, true), "[]\n");
}

TEST_F(GcTest, TextListsEachVm) {
  provision("a-live", "/img/a.raw", self(), self());
  const std::string text = render_statuses(vm_statuses(fs_, state_), false);
  EXPECT_EQ(text.rfind("a-live active qemu-pid " + std::to_string(::getpid()) + " (alive)", 0), 0u) << text;
  EXPECT_NE(text.find("/img/a.raw"), std::string::npos) << text;
}

}  // namespace
}  // namespace qemu_lio
