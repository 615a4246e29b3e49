#include "qemu_lio/qemu_args.h"

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

TEST(WithExtraArgs, AppendsInOrderAndLeavesTheUsersArgvAlone) {
  const Argv user = {"qemu", "-m", "1G", "-device", "virtio-net"};
  const Argv extra = {"-device", "vhost-scsi-pci,wwpn=naa.1", "-device", "vhost-scsi-pci,wwpn=naa.2"};
  Argv out = with_extra_args(user, extra);
  EXPECT_EQ(out, (Argv{"qemu", "-m", "1G", "-device", "virtio-net", "-device",
                       "vhost-scsi-pci,wwpn=naa.1", "-device", "vhost-scsi-pci,wwpn=naa.2"}));
  EXPECT_EQ(user, (Argv{"qemu", "-m", "1G", "-device", "virtio-net"}));
  EXPECT_EQ(with_extra_args(user, {}), user);
}

}  // namespace
}  // namespace qemu_lio
