// qemu-lio: parse, run, map errors to exit codes. Everything else is in the library.
#include <cstdio>
#include <exception>
#include <string>
#include <vector>

#include "qemu_lio/cli.h"
#include "qemu_lio/configfs.h"
#include "qemu_lio/error.h"
#include "qemu_lio/log.h"
#include "qemu_lio/run_command.h"
#include "qemu_lio/version.h"

int main(int argc, char** argv) {
  using namespace qemu_lio;
  try {
    Command cmd = parse_command_line(std::vector<std::string>(argv + 1, argv + argc));
    switch (cmd.kind) {
      case Command::Kind::kHelp:
        std::fputs(help_text().c_str(), stdout);
        return 0;
      case Command::Kind::kVersion:
        std::puts("qemu-lio " QEMU_LIO_VERSION);
        return 0;
      case Command::Kind::kRun: {
        set_verbosity(cmd.run.verbosity);
        auto fs = make_real_configfs(cmd.run.configfs);
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
