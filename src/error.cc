#include "qemu_lio/error.h"

#include <cstring>

namespace qemu_lio {

Error::Error(const std::string& object, const std::string& cause, int exit_code)
    : std::runtime_error(object + ": " + cause), object_(object), exit_code_(exit_code) {}

// what() reads "/sys/kernel/config/target/core/fileio_0/x: cannot create: File exists":
// the object first, then what was tried, then the cause, as every other message of the tool.
SysError::SysError(int err, const std::string& action, const std::string& path)
    : std::system_error(err, std::generic_category(), path + ": " + action), action_(action), path_(path) {}

std::string errno_string(int err) { return std::generic_category().message(err); }

}  // namespace qemu_lio
