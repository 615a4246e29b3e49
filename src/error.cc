#include "qemu_lio/error.h"

#include <cstring>

namespace qemu_lio {

Error::Error(const std::string& object, const std::string& cause, int exit_code)
    : std::runtime_error(object + ": " + cause), object_(object), exit_code_(exit_code) {}

// what() reads "cannot create core/fileio_0/x: File exists": object first, then cause,
// as every other message of the tool.
SysError::SysError(int err, const std::string& action, const std::string& path)
    : std::system_error(err, std::generic_category(), action + " " + path), action_(action), path_(path) {}

std::string errno_string(int err) { return std::generic_category().message(err); }

}  // namespace qemu_lio
