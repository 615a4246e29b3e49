// qemu-lio: parse, run, map errors to exit codes. Everything else is in the library.
#include <cstdio>
#include <exception>
#include <iostream>
#include <iterator>
#include <string>
#include <vector>

#include "qemu_lio/admin_commands.h"
#include "qemu_lio/cli.h"
#include "qemu_lio/configfs.h"
#include "qemu_lio/qemu_cmdline.h"
#include "qemu_lio/error.h"
#include "qemu_lio/hotplug.h"
#include "qemu_lio/log.h"
#include "qemu_lio/launch.h"
#include "qemu_lio/libvirt_hook.h"
#include "qemu_lio/version.h"

int main(int argc, char** argv) {
  using namespace qemu_lio;
  try {
    // Installed as qemu-system-*: every argument is QEMU's.
    if (argc > 0 && is_dropin_name(argv[0]))
      return dropin_main(std::vector<std::string>(argv, argv + argc));
    Command cmd = parse_command_line(std::vector<std::string>(argv + 1, argv + argc));
    switch (cmd.kind) {
      case Command::Kind::kHelp:
        std::fputs(help_text().c_str(), stdout);
        return 0;
      case Command::Kind::kVersion:
        std::puts("qemu-lio " QEMU_LIO_VERSION);
        return 0;
      case Command::Kind::kCheck:
        set_verbosity(cmd.run.verbosity);
        return check_command(cmd.run);
      case Command::Kind::kLibvirtXml:
        set_verbosity(cmd.run.verbosity);
        return libvirt_xml_command(cmd.run);
      case Command::Kind::kLibvirtHook: {
        set_verbosity(cmd.run.verbosity);
        // libvirt writes the domain's XML to our stdin and waits for us to read it all.
        std::string xml((std::istreambuf_iterator<char>(std::cin)), std::istreambuf_iterator<char>());
        auto fs = make_configfs(cmd.run.configfs);
        return libvirt_hook(cmd.run, xml, *fs);
      }
      case Command::Kind::kRun:
      case Command::Kind::kGc:
      case Command::Kind::kList:
      case Command::Kind::kAttach:
      case Command::Kind::kDetach: {
        set_verbosity(cmd.run.verbosity);
        auto fs = make_configfs(cmd.run.configfs);
        if (cmd.kind == Command::Kind::kGc) return gc_command(cmd.run, *fs);
        if (cmd.kind == Command::Kind::kList) return list_command(cmd.run, *fs);
        if (cmd.kind == Command::Kind::kAttach) return attach_command(cmd.run, *fs);
        if (cmd.kind == Command::Kind::kDetach) return detach_command(cmd.run, *fs);
        return run_vm(cmd.run, *fs);
      }
    }
  } catch (const Error& e) {
    log_error(e.what());
    return e.exit_code();
  } catch (const std::exception& e) {
    log_error(e.what());
    return exit_code::kProvisionFailed;
  }
  return 0;
}
