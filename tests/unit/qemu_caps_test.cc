// The QEMU capability probe: what -device help says, asked of a script that plays QEMU,
// cached per binary and asked again when the binary changes.

#include "qemu_lio/qemu_caps.h"

#include <sys/stat.h>

#include <gtest/gtest.h>

#include <chrono>
#include <fstream>
#include <string>

#include "qemu_lio/error.h"
#include "test_support.h"

namespace qemu_lio {
namespace {

const char* const kDevices =
    "Storage devices:\n"
    "name \"virtio-blk-pci\", bus PCI, alias \"virtio-blk\"\n"
    "name \"vhost-scsi-pci\", bus PCI\n";

// A stand-in QEMU: answers the two probes and counts its runs in `count`.
std::string fake_qemu(const TempDir& dir, bool vhost, bool worker, const std::string& count) {
  const std::string path = dir / "qemu";
  std::ofstream f(path);
  f << "#!/bin/sh\necho run >> " << count << "\n"
    << "case \"$*\" in\n"
    << "  *vhost-scsi-pci,help*) echo 'vhost-scsi-pci options:'; echo '  wwpn=<str>'"
    << (worker ? "; echo '  worker_per_virtqueue=<bool>'" : "") << ";;\n"
    << "  *help*) echo 'name \"virtio-blk-pci\", bus PCI'" << (vhost ? "; echo 'name \"vhost-scsi-pci\", bus PCI'" : "")
    << ";;\n  *) exit 1;;\nesac\n";
  f.close();
  ::chmod(path.c_str(), 0755);
  return path;
}

int runs(const std::string& count) {
  std::ifstream in(count);
  int n = 0;
  for (std::string l; std::getline(in, l);) ++n;
  return n;
}

TEST(QemuCaps, ParsesDeviceListAndProperties) {
  QemuCaps c = parse_qemu_caps(kDevices, "vhost-scsi-pci options:\n  worker_per_virtqueue=<bool> - on/off\n");
  EXPECT_TRUE(c.is_qemu);
  EXPECT_TRUE(c.vhost_scsi_pci);
  EXPECT_TRUE(c.worker_per_virtqueue);
  c = parse_qemu_caps("name \"virtio-blk-pci\", bus PCI\n", "");
  EXPECT_TRUE(c.is_qemu);
  EXPECT_FALSE(c.vhost_scsi_pci);
  EXPECT_FALSE(parse_qemu_caps("", "").is_qemu);
  EXPECT_FALSE(parse_qemu_caps(kDevices, "  wwpn=<str>\n").worker_per_virtqueue);
}

TEST(QemuCaps, ProbesTheBinary) {
  TempDir dir;
  QemuCaps c = probe_qemu_caps(fake_qemu(dir, true, true, dir / "count"));
  EXPECT_TRUE(c.vhost_scsi_pci);
  EXPECT_TRUE(c.worker_per_virtqueue);
  EXPECT_EQ(runs(dir / "count"), 2);
}

TEST(QemuCaps, AQemuWithoutVhostScsiIsRefusedByName) {
  TempDir dir;
  const std::string q = fake_qemu(dir, false, false, dir / "count");
  QemuCaps c = probe_qemu_caps(q);
  EXPECT_TRUE(c.is_qemu);
  EXPECT_FALSE(c.vhost_scsi_pci);
  try {
    require_vhost_scsi(c, q);
    FAIL() << "not refused";
  } catch (const Error& e) {
    EXPECT_EQ(e.object(), q);
    EXPECT_NE(std::string(e.what()).find("no vhost-scsi-pci"), std::string::npos) << e.what();
  }
  // Something that is not a QEMU (a wrapper, a test stand-in) is not judged.
  EXPECT_NO_THROW(require_vhost_scsi(probe_qemu_caps("/bin/true"), "/bin/true"));
}

TEST(QemuCaps, CachedPerBinaryUntilItChanges) {
  TempDir dir;
  const std::string count = dir / "count";
  const std::string q = fake_qemu(dir, true, false, count);
  EXPECT_TRUE(cached_qemu_caps(q, dir / "state").vhost_scsi_pci);
  EXPECT_EQ(runs(count), 2);
  EXPECT_TRUE(cached_qemu_caps(q, dir / "state").vhost_scsi_pci);
  EXPECT_EQ(runs(count), 2) << "the second start probed again";
  // An upgrade: same path, new contents.
  fake_qemu(dir, true, true, count);
  EXPECT_TRUE(cached_qemu_caps(q, dir / "state").worker_per_virtqueue);
  EXPECT_EQ(runs(count), 4);
}

TEST(QemuCaps, AQemuThatHangsIsKilledInTime) {
  TempDir dir;
  const std::string q = dir / "hang";
  std::ofstream(q) << "#!/bin/sh\nexec sleep 60\n";
  ::chmod(q.c_str(), 0755);
  const auto t0 = std::chrono::steady_clock::now();
  EXPECT_FALSE(probe_qemu_caps(q, 1).is_qemu);
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(10));
}

}  // namespace
}  // namespace qemu_lio
