// The undo step of every kind of plan operation, and the binding of "$HBA<n>" variables.

#include "qemu_lio/plan.h"

#include <gtest/gtest.h>

#include <string>
#include <utility>
#include <vector>

namespace qemu_lio {
namespace {

Op op(Op::Kind kind, const std::string& path, const std::string& value = "",
      const std::string& var = "", const std::string& undo_value = "") {
  Op o{};
  o.kind = kind;
  o.path = path;
  o.value = value;
  o.var = var;
  o.undo_value = undo_value;
  return o;
}

TEST(UndoOf, ClaimHbaRemovesTheBoundHba) {
  auto u = undo_of(op(Op::Kind::kClaimHba, "target/core", "fileio", "HBA0"));
  ASSERT_TRUE(u);
  EXPECT_EQ(u->kind, Undo::Kind::kRmdir);
  EXPECT_EQ(u->path, "target/core/$HBA0");
  EXPECT_EQ(u->value, "");
  EXPECT_EQ(bind_vars(u->path, {{"HBA0", "fileio_7"}}), "target/core/fileio_7");
}

TEST(UndoOf, MkdirIsUndoneByRmdir) {
  auto u = undo_of(op(Op::Kind::kMkdir, "target/core/$HBA0/vm-disk0"));
  ASSERT_TRUE(u);
  EXPECT_EQ(u->kind, Undo::Kind::kRmdir);
  EXPECT_EQ(u->path, "target/core/$HBA0/vm-disk0");
}

TEST(UndoOf, SymlinkIsUndoneByUnlink) {
  const std::string link = "target/vhost/naa.5001405000000001/tpgt_1/lun/lun_0/vm-disk0";
  auto u = undo_of(op(Op::Kind::kSymlink, link, "target/core/$HBA0/vm-disk0"));
  ASSERT_TRUE(u);
  EXPECT_EQ(u->kind, Undo::Kind::kUnlink);
  EXPECT_EQ(u->path, link);
}

TEST(UndoOf, WriteWithUndoValueIsUndoneByWrite) {
  const std::string nexus = "target/vhost/naa.5001405000000001/tpgt_1/nexus";
  auto u = undo_of(op(Op::Kind::kWrite, nexus, "naa.6000000000000001", "", "NULL"));
  ASSERT_TRUE(u);
  EXPECT_EQ(u->kind, Undo::Kind::kWrite);
  EXPECT_EQ(u->path, nexus);
  EXPECT_EQ(u->value, "NULL");
}

TEST(UndoOf, WriteWithoutUndoValueHasNone) {
  EXPECT_FALSE(undo_of(op(Op::Kind::kWrite, "target/core/$HBA0/so/enable", "1")));
}

TEST(UndoOf, EnsureDirExpectAndExpectSameFileHaveNone) {
  EXPECT_FALSE(undo_of(op(Op::Kind::kEnsureDir, "target/vhost")));
  EXPECT_FALSE(undo_of(op(Op::Kind::kExpect, "target/core/$HBA0/so/info", "Async: 1")));
  EXPECT_FALSE(undo_of(op(Op::Kind::kExpectSameFile, "/img/a.raw", "2049:1234")));
}

TEST(BindVars, ReplacesAVariable) {
  EXPECT_EQ(bind_vars("target/core/$HBA1/vm-disk1", {{"HBA1", "fileio_4"}}),
            "target/core/fileio_4/vm-disk1");
}

TEST(BindVars, DoesNotMatchInsideALongerVariable) {
  EXPECT_EQ(bind_vars("target/core/$HBA10/vm-disk10", {{"HBA1", "fileio_4"}}),
            "target/core/$HBA10/vm-disk10");
  EXPECT_EQ(bind_vars("$HBA10/$HBA1", {{"HBA1", "fileio_4"}}), "$HBA10/fileio_4");
  EXPECT_EQ(bind_vars("$HBA1/$HBA10", {{"HBA1", "a"}, {"HBA10", "b"}}), "a/b");
  EXPECT_EQ(bind_vars("$HBA1/$HBA10", {{"HBA10", "b"}, {"HBA1", "a"}}), "a/b");
}

TEST(BindVars, SeveralVariables) {
  EXPECT_EQ(bind_vars("target/core/$HBA0 -> target/core/$HBA2",
                      {{"HBA0", "fileio_0"}, {"HBA1", "fileio_1"}, {"HBA2", "iblock_5"}}),
            "target/core/fileio_0 -> target/core/iblock_5");
}

TEST(BindVars, RepeatedOccurrences) {
  EXPECT_EQ(bind_vars("$HBA0/$HBA0/$HBA0", {{"HBA0", "fileio_9"}}),
            "fileio_9/fileio_9/fileio_9");
}

TEST(BindVars, ValueContainingTheTokenIsNotReexpanded) {
  EXPECT_EQ(bind_vars("$HBA0/x", {{"HBA0", "$HBA0"}}), "$HBA0/x");
}

TEST(BindVars, NoBindingsOrNoVariablesLeaveThePathAlone) {
  EXPECT_EQ(bind_vars("target/core/$HBA0", {}), "target/core/$HBA0");
  EXPECT_EQ(bind_vars("target/vhost", {{"HBA0", "fileio_0"}}), "target/vhost");
  EXPECT_EQ(bind_vars("", {{"HBA0", "fileio_0"}}), "");
}

}  // namespace
}  // namespace qemu_lio
