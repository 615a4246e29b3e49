#include "qemu_lio/plan.h"

#include <cctype>

namespace qemu_lio {

std::optional<Undo> undo_of(const Op& op) {
  switch (op.kind) {
    case Op::Kind::kClaimHba: return Undo{Undo::Kind::kRmdir, op.path + "/$" + op.var, "", op.shared};
    case Op::Kind::kMkdir: return Undo{Undo::Kind::kRmdir, op.path, "", op.shared};
    case Op::Kind::kJoin: return Undo{Undo::Kind::kRmdir, op.path, "", true};
    case Op::Kind::kSymlink: return Undo{Undo::Kind::kUnlink, op.path, ""};
    case Op::Kind::kWrite:
      if (!op.undo_value.empty()) return Undo{Undo::Kind::kWrite, op.path, op.undo_value};
      return std::nullopt;
    case Op::Kind::kEnsureDir:  // shared with other tools: never removed
    case Op::Kind::kExpect:
    case Op::Kind::kExpectSameFile: return std::nullopt;
  }
  return std::nullopt;
}

std::string bind_vars(const std::string& path,
                      const std::vector<std::pair<std::string, std::string>>& bindings) {
  std::string out = path;
  for (const auto& [name, value] : bindings) {
    const std::string token = "$" + name;
    size_t pos = out.find(token);
    while (pos != std::string::npos) {
      size_t end = pos + token.size();
      // "$HBA1" must not match inside "$HBA10".
      if (end < out.size() && std::isdigit(static_cast<unsigned char>(out[end]))) {
        pos = out.find(token, end);
        continue;
      }
      out.replace(pos, token.size(), value);
      pos = out.find(token, pos + value.size());
    }
  }
  return out;
}

}  // namespace qemu_lio
