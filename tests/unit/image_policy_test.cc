// allow = DIR: an image must be under an allowed directory, and no one but root may be able
// to swap it (or a directory on its path) between qemu-lio's checks and the kernel's open.

#include "qemu_lio/image_policy.h"

#include <sys/stat.h>
#include <unistd.h>

#include "test_support.h"

namespace qemu_lio {
namespace {

class ImagePolicyTest : public ::testing::Test {
 protected:
  void SetUp() override {
    // The checks are about ownership by root; as another user every image would fail them.
    if (::geteuid() != 0) GTEST_SKIP() << "needs root (ownership checks)";
    root_ = dir_ / "images";
    ASSERT_EQ(::mkdir(root_.c_str(), 0755), 0);
    cfg_.allow = {root_};
    cfg_.source = "/etc/qemu-lio.conf";
  }

  // An image at root_/rel, inspected as the run would.
  std::string image(const std::string& rel) {
    std::string p = root_ + "/" + rel;
    write_file(p, 1 << 20);
    return p;
  }
  std::string dir(const std::string& rel, mode_t mode, uid_t uid = 0) {
    std::string p = root_ + "/" + rel;
    EXPECT_EQ(::mkdir(p.c_str(), 0755), 0);
    EXPECT_EQ(::chmod(p.c_str(), mode), 0);
    EXPECT_EQ(::chown(p.c_str(), uid, 0), 0);
    return p;
  }
  std::string check(const std::string& path) {
    ImageSpec spec = parse_image_spec(path);
    ImageInfo info = inspect_image(spec);
    try {
      check_image_policy(cfg_, spec, info);
    } catch (const Error& e) {
      return e.what();
    }
    return "";
  }

  TempDir dir_;
  std::string root_;
  Config cfg_;
};

TEST_F(ImagePolicyTest, ImageInARootOnlyDirectoryIsAccepted) {
  EXPECT_EQ(check(image("a.img")), "");
}

TEST_F(ImagePolicyTest, OutsideTheAllowedDirectoriesIsRefused) {
  std::string p = dir_ / "out.img";
  write_file(p, 1 << 20);
  EXPECT_EQ(check(p), p + ": " + p + " is outside the directories allowed by /etc/qemu-lio.conf (allow = ...)");
}

TEST_F(ImagePolicyTest, WorldWritableDirectoryOnThePathIsRefused) {
  std::string d = dir("shared", 0777);
  std::string p = image("shared/a.img");
  EXPECT_EQ(check(p), p + ": directory " + d + " on its path is writable by others (mode 0777) and "
                          "not sticky: someone else could swap the image before the kernel opens it "
                          "(/etc/qemu-lio.conf has allow = ...)");
}

TEST_F(ImagePolicyTest, GroupWritableDirectoryAboveTheImageIsRefused) {
  std::string d = dir("g", 0775);
  dir("g/deeper", 0755);
  std::string p = image("g/deeper/a.img");
  std::string msg = check(p);
  EXPECT_NE(msg.find("directory " + d + " on its path is writable by its group (mode 0775)"),
            std::string::npos)
      << msg;
}

TEST_F(ImagePolicyTest, DirectoryOwnedBySomeoneElseIsRefused) {
  std::string d = dir("user", 0755, 1000);
  std::string p = image("user/a.img");
  std::string msg = check(p);
  EXPECT_NE(msg.find("directory " + d + " on its path is owned by uid 1000, not root"),
            std::string::npos)
      << msg;
}

// A sticky directory (/tmp) lets only an entry's owner rename or remove it.
TEST_F(ImagePolicyTest, StickyDirectoryIsAcceptedForARootOwnedImage) {
  dir("tmp", 01777);
  EXPECT_EQ(check(image("tmp/a.img")), "");
}

TEST_F(ImagePolicyTest, StickyDirectoryIsRefusedForAnotherUsersImage) {
  dir("tmp", 01777);
  std::string p = image("tmp/a.img");
  ASSERT_EQ(::chown(p.c_str(), 1000, 1000), 0);
  std::string msg = check(p);
  // The first sticky directory on the path is named (the test's own sits below /tmp).
  EXPECT_NE(msg.find(" on its path is writable by others (mode 1777) and the image is not root's"),
            std::string::npos)
      << msg;
}

TEST_F(ImagePolicyTest, WithoutAllowNothingIsChecked) {
  cfg_.allow.clear();
  dir("shared", 0777);
  EXPECT_EQ(check(image("shared/a.img")), "");
}

}  // namespace
}  // namespace qemu_lio
