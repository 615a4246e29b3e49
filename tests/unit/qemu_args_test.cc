#include "qemu_lio/qemu_args.h"

#include "test_support.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace qemu_lio {
namespace {

using Argv = std::vector<std::string>;

TEST(QemuOptionValue, FindsTheValueAfterTheOption) {
  EXPECT_EQ(qemu_option_value({"qemu", "-m", "1G", "-name", "vm1", "-nographic"}, "-name"), "vm1");
  EXPECT_EQ(qemu_option_value({"qemu", "-name", "guest=vm1,debug-threads=on"}, "-name"),
            "guest=vm1,debug-threads=on");
}

TEST(QemuOptionValue, AcceptsQemusDoubleDashSpelling) {
  EXPECT_EQ(qemu_option_value({"qemu", "--name", "vm2"}, "-name"), "vm2");
}

TEST(QemuOptionValue, LastOccurrenceWinsAsInQemu) {
  EXPECT_EQ(qemu_option_value({"qemu", "-name", "a", "--name", "b", "-name", "c"}, "-name"), "c");
}

TEST(QemuOptionValue, AbsentOrWithoutValue) {
  EXPECT_FALSE(qemu_option_value({"qemu", "-m", "1G"}, "-name"));
  EXPECT_FALSE(qemu_option_value({"qemu", "-name"}, "-name"));  // nothing follows it
  EXPECT_FALSE(qemu_option_value({"-name", "x"}, "-name"));     // argv[0] is QEMU itself
  EXPECT_FALSE(qemu_option_value({}, "-name"));
  EXPECT_FALSE(qemu_option_value({"qemu", "-namex", "vm"}, "-name"));
  EXPECT_FALSE(qemu_option_value({"qemu", "---name", "vm"}, "-name"));
}

TEST(QemuOptionValue, AValueIsNotTakenForAnOption) {
  // "-name" as the value of -name is consumed as a value, not as the option again.
  EXPECT_EQ(qemu_option_value({"qemu", "-name", "-name", "x"}, "-name"), "-name");
}

// --image disks: their -device options go after the user's own, in disk order.
TEST(ImageDevices, AppendInOrderAndLeaveTheUsersArgvAlone) {
  const Argv user = {"qemu", "-m", "1G", "-device", "virtio-net"};
  Plan plan = build_plan("vm", {checked_image("/img/a.raw,wwn=naa.0000000000000001"),
                                checked_image("/img/b.raw,wwn=naa.0000000000000002")});
  Argv out = qemu_argv_for(plan, user);
  EXPECT_EQ(out, (Argv{"qemu", "-m", "1G", "-device", "virtio-net", "-device",
                       "vhost-scsi-pci,wwpn=naa.0000000000000001,max_sectors=16384", "-device",
                       "vhost-scsi-pci,wwpn=naa.0000000000000002,max_sectors=16384"}));
  EXPECT_EQ(user, (Argv{"qemu", "-m", "1G", "-device", "virtio-net"}));
  EXPECT_EQ(qemu_argv_for(build_plan("vm", {}), user), user);
}

}  // namespace
}  // namespace qemu_lio
