// The choice of worker_per_virtqueue from QEMU's answer, the kernel's and the setting, and
// the kernel probe's answers where no vhost device can be asked. The probe's real answer
// (Linux 6.1: no) is checked in the VM suite (tests/vm/scenarios/input.sh, `check`).
#include "qemu_lio/vhost_caps.h"

#include <gtest/gtest.h>

#include "qemu_lio/error.h"
#include "test_support.h"

namespace qemu_lio {
namespace {

using A = VhostWorkerSupport::Answer;

struct Kernel {
  A answer;
  int asked = 0;
  std::function<VhostWorkerSupport()> fn() {
    return [this] { ++asked; return VhostWorkerSupport{answer, "kernel says so"}; };
  }
};

TEST(WantWorkerPerVirtqueue, OffNeverAsksTheKernel) {
  Kernel k{A::kYes};
  EXPECT_FALSE(want_worker_per_virtqueue(WorkerSetting::kOff, true, "q", k.fn()));
  EXPECT_EQ(k.asked, 0);
}

TEST(WantWorkerPerVirtqueue, AutoNeedsBothSides) {
  Kernel yes{A::kYes}, no{A::kNo}, unknown{A::kUnknown};
  EXPECT_TRUE(want_worker_per_virtqueue(WorkerSetting::kAuto, true, "q", yes.fn()));
  EXPECT_FALSE(want_worker_per_virtqueue(WorkerSetting::kAuto, false, "q", yes.fn()));
  EXPECT_EQ(yes.asked, 1);  // a QEMU without the property makes the kernel's answer moot
  EXPECT_FALSE(want_worker_per_virtqueue(WorkerSetting::kAuto, true, "q", no.fn()));
  EXPECT_FALSE(want_worker_per_virtqueue(WorkerSetting::kAuto, true, "q", unknown.fn()));
}

TEST(WantWorkerPerVirtqueue, OnRefusesWhatWouldNotHappen) {
  Kernel yes{A::kYes}, no{A::kNo}, unknown{A::kUnknown};
  EXPECT_TRUE(want_worker_per_virtqueue(WorkerSetting::kOn, true, "q", yes.fn()));
  std::string msg = error_of([&] { want_worker_per_virtqueue(WorkerSetting::kOn, false, "/usr/bin/qemu", yes.fn()); });
  EXPECT_EQ(msg.rfind("/usr/bin/qemu: ", 0), 0u) << msg;
  EXPECT_NE(msg.find("QEMU 9.0"), std::string::npos) << msg;
  msg = error_of([&] { want_worker_per_virtqueue(WorkerSetting::kOn, true, "q", no.fn()); });
  EXPECT_NE(msg.find("kernel says so"), std::string::npos) << msg;
  // Unknown: QEMU asks the kernel itself and keeps one worker if it must.
  EXPECT_TRUE(want_worker_per_virtqueue(WorkerSetting::kOn, true, "q", unknown.fn()));
}

TEST(ProbeVhostWorkers, ADeviceThatCannotBeOpenedIsUnknown) {
  TempDir dir;
  VhostWorkerSupport s = probe_vhost_workers(dir / "no-such-device");
  EXPECT_EQ(s.answer, A::kUnknown);
  EXPECT_NE(s.why.find("no-such-device"), std::string::npos) << s.why;
}

TEST(ProbeVhostWorkers, ANonVhostFileIsUnknownNotNo) {
  // /dev/null refuses VHOST_SET_OWNER: no vhost device answered, so nothing is known.
  VhostWorkerSupport s = probe_vhost_workers("/dev/null");
  EXPECT_EQ(s.answer, A::kUnknown);
  EXPECT_NE(s.why.find("VHOST_SET_OWNER"), std::string::npos) << s.why;
}

TEST(SetWorkerPerVirtqueue, SkipsADiskWithOneQueue) {
  std::vector<DiskPlan> disks(3);
  disks[1].spec.num_queues = 1;
  disks[2].spec.num_queues = 4;
  set_worker_per_virtqueue(disks, true);
  EXPECT_TRUE(disks[0].worker_per_virtqueue);
  EXPECT_FALSE(disks[1].worker_per_virtqueue);
  EXPECT_TRUE(disks[2].worker_per_virtqueue);
  set_worker_per_virtqueue(disks, false);
  EXPECT_FALSE(disks[0].worker_per_virtqueue || disks[2].worker_per_virtqueue);
}

}  // namespace
}  // namespace qemu_lio
