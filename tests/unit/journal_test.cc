#include "qemu_lio/journal.h"

#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <fstream>
#include <set>
#include <thread>

#include "test_support.h"

namespace qemu_lio {
namespace {

TEST(JournalEscape, RoundTripsSpacesPercentAndControlCharacters) {
  for (const std::string s : {"", "plain", "with space", "100%", "new\nline", "tab\there", "%"}) {
    std::string e = journal_escape(s);
    EXPECT_EQ(e.find(' '), std::string::npos) << s;
    EXPECT_EQ(e.find('\n'), std::string::npos) << s;
    EXPECT_EQ(journal_unescape(e), s);
  }
}

TEST(Journal, RecordsObjectsAndOwnerAndReadsThemBack) {
  TempDir dir;
  std::string state = dir / "state";
  std::string file;
  {
    JournalWriter j(state, "vm1", ProcessId{1234, 99});
    file = j.path();
    j.image("/images/a disk.img", "naa.5001405000000001");
    j.object({Undo::Kind::kRmdir, "target/core/fileio_0", ""}, false);
    j.object({Undo::Kind::kRmdir, "target/core/fileio_1", ""}, false);
    j.object({Undo::Kind::kRmdir, "target/core/fileio_1", ""}, true);  // EEXIST: not ours
    j.object({Undo::Kind::kRmdir, "target/core/fileio_0/vm1-disk0", ""}, false);
    j.object({Undo::Kind::kWrite, "target/vhost/naa.5001405000000001/tpgt_1/nexus", "NULL"}, false);
    j.owner(ProcessId{4321, 7});
    j.ready();
  }
  JournalContents c = read_journal(file);
  EXPECT_EQ(c.version, kJournalVersion);
  EXPECT_EQ(c.vm_name, "vm1");
  EXPECT_EQ(c.wrapper, (ProcessId{1234, 99}));
  ASSERT_TRUE(c.owner);
  EXPECT_EQ(*c.owner, (ProcessId{4321, 7}));
  EXPECT_TRUE(c.complete);
  ASSERT_EQ(c.images.size(), 1u);
  EXPECT_EQ(c.images[0].path, "/images/a disk.img");
  EXPECT_EQ(c.images[0].backstore, "core/fileio_0/vm1-disk0");
  ASSERT_EQ(c.undo.size(), 3u);  // the cancelled claim is gone
  EXPECT_EQ(c.undo[0].path, "target/core/fileio_0");
  EXPECT_EQ(c.undo[1].path, "target/core/fileio_0/vm1-disk0");
  EXPECT_EQ(c.undo[2].kind, Undo::Kind::kWrite);
  EXPECT_EQ(c.undo[2].value, "NULL");
}

TEST(Journal, FilesArePrivate) {
  TempDir dir;
  std::string state = dir / "state";
  JournalWriter j(state, "vm", ProcessId{1, 1});
  struct stat st;
  ASSERT_EQ(::stat(state.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0700u);
  ASSERT_EQ(::stat(j.path().c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  j.remove();
  EXPECT_NE(::access(j.path().c_str(), F_OK), 0);
}

TEST(Journal, TornLastRecordIsDropped) {
  TempDir dir;
  std::string f = dir / "x.journal";
  std::ofstream(f) << "qemu-lio-journal 1\nvm x\nwrapper 5 6\nmake rmdir target/core/fileio_0 %\nmake rmdir target/core/fil";
  JournalContents c = read_journal(f);
  ASSERT_EQ(c.undo.size(), 1u);
  EXPECT_EQ(c.undo[0].path, "target/core/fileio_0");
}

TEST(Journal, UnknownVersionIsRefused) {
  TempDir dir;
  std::string f = dir / "x.journal";
  std::ofstream(f) << "qemu-lio-journal 99\n";
  EXPECT_NE(error_of([&] { read_journal(f); }).find("version"), std::string::npos);
}

TEST(Journal, ListFindsOnlyJournals) {
  TempDir dir;
  std::ofstream(dir / "a.1.journal") << "x";
  std::ofstream(dir / "lock") << "";
  std::ofstream(dir / "a.1.0.cfg") << "";
  auto l = list_journals(dir.path());
  ASSERT_EQ(l.size(), 1u);
  EXPECT_EQ(l[0], dir / "a.1.journal");
  EXPECT_TRUE(list_journals(dir / "missing").empty());
}

}  // namespace
}  // namespace qemu_lio

namespace qemu_lio {
namespace {

// The second disk's claim tries fileio_0 (ours) again: EEXIST, cancelled. That must not
// drop the record of our own fileio_0; and a crash before the cancel must not record it twice.
TEST(Journal, RepeatedClaimOfOurOwnHbaKeepsOneRecord) {
  TempDir dir;
  std::string file;
  {
    JournalWriter j(dir / "s", "vm", ProcessId{1, 1});
    file = j.path();
    j.object({Undo::Kind::kRmdir, "target/core/fileio_0", ""}, false);
    j.object({Undo::Kind::kRmdir, "target/core/fileio_0/vm-disk0", ""}, false);
    j.object({Undo::Kind::kRmdir, "target/core/fileio_0", ""}, false);  // disk 1's claim
    j.object({Undo::Kind::kRmdir, "target/core/fileio_0", ""}, true);   // EEXIST
    j.object({Undo::Kind::kRmdir, "target/core/fileio_1", ""}, false);
  }
  JournalContents c = read_journal(file);
  ASSERT_EQ(c.undo.size(), 3u);
  EXPECT_EQ(c.undo[0].path, "target/core/fileio_0");
  EXPECT_EQ(c.undo[1].path, "target/core/fileio_0/vm-disk0");
  EXPECT_EQ(c.undo[2].path, "target/core/fileio_1");

  {  // killed before the cancel: still one record
    std::ofstream(file, std::ios::app) << "make rmdir target/core/fileio_1 %\n";
  }
  EXPECT_EQ(read_journal(file).undo.size(), 3u);
}

}  // namespace
}  // namespace qemu_lio

namespace qemu_lio {
namespace {

// A journal planted in the state dir must not make gc (root) remove or overwrite files
// outside configfs: read_journal refuses it, naming the record, in one line.
TEST(Journal, RecordOutsideTheLioTreeIsRefused) {
  TempDir dir;
  std::string f = dir / "evil.1.journal";
  std::ofstream(f) << "qemu-lio-journal 1\nvm evil\nwrapper 5 6\n"
                      "make rmdir target/core/fileio_0 %\n"
                      "make rmdir target/core/../../../../tmp/victim %\n";
  EXPECT_EQ(error_of([&] { read_journal(f); }),
            f + ": record 5: rmdir target/core/../../../../tmp/victim is not a LIO object "
                "qemu-lio makes");
}

TEST(Journal, EveryShapeOfPlantedRecordIsRefused) {
  TempDir dir;
  const std::string head = "qemu-lio-journal 1\nvm evil\nwrapper 5 6\n";
  for (const std::string rec :
       {"make write target/vhost/naa.5001405000000001/tpgt_1/../../../../../tmp/f NULL",
        "make write target/vhost/naa.5001405000000001/tpgt_1/nexus naa.5001405000000002",
        "make unlink target/core/fileio_0/x %", "make rmdir /etc %",
        "cancel rmdir target/core/fileio_0/.. %", "make rmdir target/core/fileio_0%2F..%2F.. %"}) {
    std::string f = dir / "x.journal";
    std::ofstream(f) << head << rec << "\n";
    std::string msg = error_of([&] { read_journal(f); });
    EXPECT_NE(msg.find(": record 4: "), std::string::npos) << rec << " -> " << msg;
    EXPECT_NE(msg.find("is not a LIO object qemu-lio makes"), std::string::npos) << msg;
    EXPECT_EQ(msg.find('\n'), std::string::npos) << msg;
  }
}

TEST(Journal, ASymlinkedJournalIsNotFollowed) {
  TempDir dir;
  std::ofstream(dir / "real") << "qemu-lio-journal 1\nvm x\nwrapper 5 6\n";
  ASSERT_EQ(::symlink((dir / "real").c_str(), (dir / "x.journal").c_str()), 0);
  EXPECT_NE(error_of([&] { read_journal(dir / "x.journal"); }).find("cannot read journal"),
            std::string::npos);
}

// A gc that finds a journal must always learn its owner: a journal seen without its
// "wrapper" record (pid 0) would be taken for a dead run's, and its objects removed under it.
TEST(Journal, NeverVisibleWithoutItsOwner) {
  TempDir dir;
  std::atomic<bool> done{false};
  std::atomic<int> seen{0}, ownerless{0};
  std::thread reader([&] {
    while (!done) {
      for (const std::string& f : list_journals(dir.path())) {
        try {
          JournalContents j = read_journal(f);
          ++seen;
          if (j.wrapper.pid == 0) ++ownerless;
        } catch (const Error&) {
          // Empty or headless is what a racing gc must never see; a journal deleted
          // between the listing and the read is simply gone.
          if (::access(f.c_str(), F_OK) == 0) ++ownerless;
        }
      }
    }
  });
  const ProcessId self = *identify_process(::getpid());
  for (int i = 0; i < 300; ++i) {
    JournalWriter w(dir.path(), "vm" + std::to_string(i), self);
    w.remove();
  }
  done = true;
  reader.join();
  EXPECT_EQ(0, ownerless.load()) << "of " << seen.load() << " journals read";
}

// The disks of a run are provisioned in parallel: their records interleave, and an image
// still gets the backstore named after its own disk.
TEST(Journal, InterleavedDisksKeepTheirOwnBackstores) {
  TempDir dir;
  std::string file;
  {
    JournalWriter j(dir.path(), "vm", ProcessId{::getpid(), 1});
    file = j.path();
    j.image("/img/a.raw", "naa.5001405000000001");
    j.image("/img/b.raw", "naa.5001405000000002");
    j.image("/img/c.raw", "naa.5001405000000003");
    j.object({Undo::Kind::kRmdir, "target/core/fileio_0", ""}, false);
    j.object({Undo::Kind::kRmdir, "target/core/fileio_1", ""}, false);
    j.object({Undo::Kind::kRmdir, "target/core/fileio_2", ""}, false);
    j.object({Undo::Kind::kRmdir, "target/core/fileio_1/vm-disk2-ro", ""}, false);
    j.object({Undo::Kind::kRmdir, "target/core/fileio_2/vm-disk0", ""}, false);
    j.object({Undo::Kind::kRmdir, "target/core/fileio_0/vm-disk1", ""}, false);
  }
  JournalContents c = read_journal(file);
  ASSERT_EQ(c.images.size(), 3u);
  EXPECT_EQ(c.images[0].backstore, "core/fileio_2/vm-disk0");
  EXPECT_EQ(c.images[1].backstore, "core/fileio_0/vm-disk1");
  EXPECT_EQ(c.images[2].backstore, "core/fileio_1/vm-disk2-ro");
}

// Records from many threads at once: every one whole, none lost.
TEST(Journal, AppendsFromManyThreadsStayWhole) {
  TempDir dir;
  std::string file;
  {
    JournalWriter j(dir.path(), "vm", ProcessId{::getpid(), 1});
    file = j.path();
    std::vector<std::thread> threads;
    for (int t = 0; t < 8; ++t)
      threads.emplace_back([&j, t] {
        for (int k = 0; k < 50; ++k)
          j.object({Undo::Kind::kRmdir, "target/core/fileio_" + std::to_string(t * 100 + k), ""}, false);
      });
    for (auto& th : threads) th.join();
  }
  JournalContents c = read_journal(file);
  EXPECT_EQ(c.undo.size(), 400u);
  std::set<std::string> seen;
  for (const Undo& u : c.undo) seen.insert(u.path);
  EXPECT_EQ(seen.size(), 400u);
}

}  // namespace
}  // namespace qemu_lio
