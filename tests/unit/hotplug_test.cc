// attach/detach's pure parts, the journal records they add, the control socket and the QMP
// client (against a scripted server on a real unix socket). The whole path runs against
// real QEMU and LIO in tests/vm/scenarios/control.sh.
#include "qemu_lio/hotplug.h"

#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstring>
#include <thread>

#include "fake_configfs.h"
#include "qemu_lio/cli.h"
#include "qemu_lio/config_file.h"
#include "qemu_lio/control_socket.h"
#include "qemu_lio/qemu_cmdline.h"
#include "qemu_lio/qmp_client.h"
#include "test_support.h"

namespace qemu_lio {
namespace {

using Json = nlohmann::json;

Json root_port(const std::string& id, Json behind = Json::array()) {
  return {{"qdev_id", id},
          {"id", {{"vendor", 0x1b36}, {"device", 0x000c}}},
          {"pci_bridge", {{"bus", {{"number", 1}}}, {"devices", behind}}}};
}

TEST(ListsProperty, FindsANameInDeviceListProperties) {
  Json props = Json::array({{{"name", "wwpn"}, {"type", "str"}},
                            {{"name", "worker_per_virtqueue"}, {"type", "bool"}}});
  EXPECT_TRUE(lists_property(props, "worker_per_virtqueue"));
  EXPECT_FALSE(lists_property(props, "hotplug"));
  EXPECT_FALSE(lists_property(Json::object(), "wwpn"));
}

TEST(FreeHotplugPort, TakesTheFirstEmptyRootPortWithAnId) {
  Json busy = root_port("p0", Json::array({{{"qdev_id", "disk"}}}));
  Json anon = root_port("");
  Json pci_bridge = {{"qdev_id", "br"},
                     {"id", {{"vendor", 0x1b36}, {"device", 0x0001}}},
                     {"pci_bridge", {{"devices", Json::array()}}}};
  Json answer = Json::array({{{"bus", 0}, {"devices", Json::array({busy, anon, pci_bridge, root_port("p3")})}}});
  EXPECT_EQ(free_hotplug_port(answer), "p3");
}

TEST(FreeHotplugPort, NoneOnAMachineWithoutRootPorts) {
  Json answer = Json::array({{{"bus", 0}, {"devices", Json::array({{{"qdev_id", ""}, {"id", {{"vendor", 0x8086}}}}})}}});
  EXPECT_EQ(free_hotplug_port(answer), std::nullopt);
  EXPECT_EQ(free_hotplug_port(Json::object()), std::nullopt);
}

TEST(FreeHotplugPort, LooksBehindBridges) {
  Json nested = {{"qdev_id", "sw"},
                 {"id", {{"vendor", 0x1b36}, {"device", 0x000e}}},
                 {"pci_bridge", {{"devices", Json::array({root_port("deep")})}}}};
  Json answer = Json::array({{{"bus", 0}, {"devices", Json::array({nested})}}});
  EXPECT_EQ(free_hotplug_port(answer), "deep");
}

TEST(DiskUndoSteps, PicksOneDisksBackstoreAndTargetOnly) {
  JournalContents j;
  j.images = {{"/a.img", "naa.5001405aaaaaaaaa", "core/fileio_0/vm-disk0", ""},
              {"/b.img", "naa.5001405bbbbbbbbb", "core/fileio_1/vm-disk1", "hot1"}};
  auto rm = [](const std::string& p) { return Undo{Undo::Kind::kRmdir, p, ""}; };
  j.undo = {rm("target/core/fileio_0"), rm("target/core/fileio_0/vm-disk0"),
            rm("target/vhost/naa.5001405aaaaaaaaa"), rm("target/vhost/naa.5001405aaaaaaaaa/tpgt_1"),
            rm("target/core/fileio_1"), rm("target/core/fileio_1/vm-disk1"),
            rm("target/vhost/naa.5001405bbbbbbbbb"), rm("target/vhost/naa.5001405bbbbbbbbb/tpgt_1"),
            {Undo::Kind::kWrite, "target/vhost/naa.5001405bbbbbbbbb/tpgt_1/nexus", "NULL"},
            rm("target/vhost/naa.5001405bbbbbbbbb/tpgt_1/lun/lun_0"),
            {Undo::Kind::kUnlink, "target/vhost/naa.5001405bbbbbbbbb/tpgt_1/lun/lun_0/vm-disk1", ""}};
  std::vector<Undo> b = disk_undo_steps(j, "naa.5001405bbbbbbbbb");
  ASSERT_EQ(b.size(), 7u);
  EXPECT_EQ(b.front().path, "target/core/fileio_1");
  EXPECT_EQ(b.back().path, "target/vhost/naa.5001405bbbbbbbbb/tpgt_1/lun/lun_0/vm-disk1");
  EXPECT_EQ(disk_undo_steps(j, "naa.5001405aaaaaaaaa").size(), 4u);
  EXPECT_TRUE(disk_undo_steps(j, "naa.5001405ccccccccc").empty());
}

TEST(JournalHotplugRecords, DeviceControlAndDetachReadBack) {
  TempDir dir;
  std::string file;
  {
    JournalWriter w(dir / "state", "vm", ProcessId{1, 1});
    file = w.path();
    w.control_socket(dir / "state/vm.1.qmp");
    w.image("/a.img", "naa.5001405aaaaaaaaa");
    w.object({Undo::Kind::kRmdir, "target/core/fileio_0", ""}, false);
    w.object({Undo::Kind::kRmdir, "target/core/fileio_0/vm-disk0", ""}, false);
    w.ready();
  }
  {
    JournalWriter attach(file);  // a second process appends to the running VM's journal
    attach.image("/b.img", "naa.5001405bbbbbbbbb");
    attach.device("naa.5001405bbbbbbbbb", "hot1");
    attach.object({Undo::Kind::kRmdir, "target/core/fileio_1", ""}, false);
    attach.object({Undo::Kind::kRmdir, "target/core/fileio_1/vm-disk1", ""}, false);
  }
  JournalContents c = read_journal(file);
  EXPECT_EQ(c.control_socket, dir / "state/vm.1.qmp");
  ASSERT_EQ(c.images.size(), 2u);
  EXPECT_EQ(c.images[1].device_id, "hot1");
  EXPECT_EQ(c.images[1].backstore, "core/fileio_1/vm-disk1");
  EXPECT_EQ(c.disks_ever, 2);
  EXPECT_EQ(c.undo.size(), 4u);
  {
    JournalWriter detach(file);
    for (const Undo& u : disk_undo_steps(c, "naa.5001405bbbbbbbbb")) detach.object(u, true);
    detach.detach("naa.5001405bbbbbbbbb");
  }
  c = read_journal(file);
  ASSERT_EQ(c.images.size(), 1u);
  EXPECT_EQ(c.images[0].path, "/a.img");
  EXPECT_EQ(c.undo.size(), 2u) << "the detached disk's objects are no longer the VM's";
  EXPECT_EQ(c.disks_ever, 2) << "the next disk must not reuse disk1's name";
}

TEST(JournalLock, SaysWhenTheJournalWasDeletedMeanwhile) {
  TempDir dir;
  JournalWriter w(dir / "state", "vm", ProcessId{1, 1});
  JournalLock lock(w.path());
  EXPECT_TRUE(lock.still_current());
  w.remove();
  EXPECT_FALSE(lock.still_current());
}

TEST(ControlSocketTest, BindsMode0600AndNamesItsDescriptorToQemu) {
  TempDir dir;
  ControlSocket s(dir / "vm.1.qmp");
  ASSERT_TRUE(s.enabled());
  std::vector<std::string> o = s.qemu_options();
  ASSERT_EQ(o.size(), 4u);
  EXPECT_EQ(o[0], "-chardev");
  EXPECT_NE(o[1].find("socket,id=qemu-lio-qmp,fd="), std::string::npos);
  EXPECT_NE(o[1].find(",server=on,wait=off"), std::string::npos);
  EXPECT_EQ(o[3], "chardev=qemu-lio-qmp,mode=control");
  s.bind_and_listen();
  struct stat st{};
  ASSERT_EQ(::stat(s.path().c_str(), &st), 0);
  EXPECT_TRUE(S_ISSOCK(st.st_mode));
  EXPECT_EQ(st.st_mode & 07777, 0600u);
}

TEST(ControlSocketTest, APathTooLongGivesNoSocketAndAReason) {
  ControlSocket s("/run/" + std::string(120, 'x') + ".qmp");
  EXPECT_FALSE(s.enabled());
  EXPECT_TRUE(s.qemu_options().empty());
  EXPECT_NE(s.why_not().find("longer than a unix socket allows"), std::string::npos);
}

// A QMP server on a real socket that answers each command from `script` in turn: every
// entry is the lines it writes after reading one command (the greeting goes first).
class FakeQmp {
 public:
  FakeQmp(const std::string& path, std::vector<std::vector<std::string>> script) : path_(path) {
    listen_ = ::socket(AF_UNIX, SOCK_STREAM, 0);
    sockaddr_un a{};
    a.sun_family = AF_UNIX;
    std::strcpy(a.sun_path, path.c_str());
    EXPECT_EQ(::bind(listen_, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
    EXPECT_EQ(::listen(listen_, 1), 0);
    thread_ = std::thread([this, script] {
      int c = ::accept(listen_, nullptr, nullptr);
      send_line(c, R"({"QMP": {"version": {}, "capabilities": []}})");
      std::string buf;
      for (const auto& answer : script) {
        char ch;
        while (::read(c, &ch, 1) == 1 && ch != '\n') buf += ch;
        received.push_back(buf);
        buf.clear();
        for (const std::string& l : answer) {
          if (l == "SILENCE") std::this_thread::sleep_for(std::chrono::milliseconds(1500));
          else send_line(c, l);
        }
      }
      ::close(c);
    });
  }
  ~FakeQmp() {
    thread_.join();
    ::close(listen_);
  }
  std::vector<std::string> received;

 private:
  static void send_line(int fd, const std::string& l) {
    std::string s = l + "\n";
    EXPECT_EQ(::write(fd, s.data(), s.size()), static_cast<ssize_t>(s.size()));
  }
  std::string path_;
  int listen_ = -1;
  std::thread thread_;
};

TEST(QmpClientTest, NegotiatesRunsCommandsAndKeepsEventsThatCameFirst) {
  TempDir dir;
  {
    FakeQmp server(dir / "q.sock",
                   {{R"({"return": {}})"},
                    {R"({"event": "DEVICE_DELETED", "data": {"path": "/machine/peripheral/d1"}})", R"({"return": {}})"},
                    {R"({"error": {"class": "GenericError", "desc": "Bus 'pcie.0' does not support hotplugging"}})"}});
    QmpClient q(dir / "q.sock", "vm", std::chrono::seconds(5));
    q.execute("device_del", {{"id", "/machine/peripheral/d1"}});
    EXPECT_TRUE(q.wait_event([](const Json& e) { return e["data"]["path"] == "/machine/peripheral/d1"; },
                             std::chrono::seconds(1)));
    EXPECT_EQ(error_of([&] { q.execute("device_add", {{"driver", "vhost-scsi-pci"}}); }),
              "vm: QEMU refused device_add: Bus 'pcie.0' does not support hotplugging");
    // The server closes now: a wait then knows the VM is gone instead of sleeping on.
    EXPECT_NE(error_of([&] { q.wait_event([](const Json&) { return false; }, std::chrono::seconds(5)); })
                  .find("closed its control socket"),
              std::string::npos);
    ASSERT_EQ(server.received.size(), 3u);
    EXPECT_EQ(Json::parse(server.received[0])["execute"], "qmp_capabilities");
    EXPECT_EQ(Json::parse(server.received[1])["arguments"]["id"], "/machine/peripheral/d1");
  }
}

TEST(QmpClientTest, AWaitIsBounded) {
  TempDir dir;
  FakeQmp server(dir / "q.sock", {{R"({"return": {}})"}, {"SILENCE"}});
  QmpClient q(dir / "q.sock", "vm", std::chrono::milliseconds(300));
  EXPECT_EQ(error_of([&] { q.execute("query-status"); }), "vm: QEMU did not answer query-status within 300 ms");
}

TEST(QmpClientTest, NoQemuBehindTheSocketIsOneClearError) {
  TempDir dir;
  EXPECT_NE(error_of([&] { QmpClient q(dir / "none.sock", "vm", std::chrono::seconds(1)); })
                .find("none.sock: cannot reach QEMU's control socket of VM vm: "),
            std::string::npos);
}

TEST(HotplugCli, AttachAndDetachTakeTwoWordsAndTheirOptions) {
  Command a = parse_command_line({"attach", "vm", "/i.img,cache=none", "--id", "d1", "--timeout", "5"});
  EXPECT_EQ(a.kind, Command::Kind::kAttach);
  EXPECT_EQ(a.run.args, (std::vector<std::string>{"vm", "/i.img,cache=none"}));
  EXPECT_EQ(a.run.device_id, "d1");
  EXPECT_EQ(a.run.timeout, 5);
  Command d = parse_command_line({"--state-dir", "/s", "detach", "vm", "d1"});
  EXPECT_EQ(d.kind, Command::Kind::kDetach);
  EXPECT_EQ(d.run.state_dir, "/s");
  EXPECT_NE(usage_error_of([] { parse_command_line({"attach", "vm"}); }).find("attach needs VM and SPEC"),
            std::string::npos);
  EXPECT_NE(usage_error_of([] { parse_command_line({"detach", "vm", "d1", "--id", "x"}); }).find("--id"),
            std::string::npos);
  EXPECT_NE(usage_error_of([] { parse_command_line({"detach", "vm", "d1", "--timeout", "0"}); }).find("--timeout"),
            std::string::npos);
  Command r = parse_command_line({"--hotplug-ports", "4", "--", "qemu"});
  EXPECT_EQ(r.run.hotplug_ports, 4);
  EXPECT_NE(usage_error_of([] { parse_command_line({"--hotplug-ports", "17", "--", "qemu"}); }).find("0 to 16"),
            std::string::npos);
}

TEST(HotplugCli, AttachTakesNoControllerBeforeTouchingAnything) {
  // QEMU 7.2's vhost-scsi cannot announce a new LUN to a running guest: no disk joins a
  // controller while the VM runs, whatever wwn the controller has.
  FakeConfigFs fs;
  Command a = parse_command_line({"attach", "vm", "/i.img,controller=c0,wwn=naa.5001405aaaaaaaaa"});
  EXPECT_NE(usage_error_of([&] { attach_command(a.run, fs); }, "controller c0").find("running controller"),
            std::string::npos);
}

TEST(HotplugPorts, OnlyQ35GetsThemWithChassisFromTheTop) {
  EXPECT_TRUE(is_q35("q35"));
  EXPECT_TRUE(is_q35("pc-q35-7.2"));
  EXPECT_FALSE(is_q35("pc"));
  EXPECT_FALSE(is_q35("pc-i440fx-7.2"));
  EXPECT_EQ(hotplug_port_options(2, false),
            (std::vector<std::string>{"-device", "pcie-root-port,id=qemu-lio-port0,chassis=255", "-device",
                                      "pcie-root-port,id=qemu-lio-port1,chassis=254"}));
  EXPECT_EQ(Json::parse(hotplug_port_options(1, true)[1]),
            Json::parse(R"({"driver":"pcie-root-port","id":"qemu-lio-port0","chassis":255})"));
  EXPECT_EQ(scan_qemu_argv({"qemu", "-machine", "type=q35,accel=tcg"}).machine, "q35");
  EXPECT_EQ(scan_qemu_argv({"qemu", "-M", "pc-q35-7.2"}).machine, "pc-q35-7.2");
  EXPECT_EQ(scan_qemu_argv({"qemu"}).machine, std::nullopt);
  EXPECT_EQ(parse_config("hotplug_ports = 3\n", "c").hotplug_ports, 3);
  EXPECT_NE(usage_error_of([] { parse_config("hotplug_ports = 40\n", "c"); }).find("0 to 16"), std::string::npos);
}

}  // namespace
}  // namespace qemu_lio
