#include "qemu_lio/image_spec.h"

#include <fmt/core.h>

#include <cctype>
#include <cerrno>
#include <climits>
#include <cstdlib>
#include <set>

#include "qemu_lio/error.h"

namespace qemu_lio {

const char* to_string(CacheMode m) {
  switch (m) {
    case CacheMode::kWriteback: return "writeback";
    case CacheMode::kWritethrough: return "writethrough";
    case CacheMode::kNone: return "none";
  }
  return "?";
}

std::vector<std::string> split_qemu_opts(std::string_view s) {
  std::vector<std::string> parts(1);
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] != ',') {
      parts.back() += s[i];
    } else if (i + 1 < s.size() && s[i + 1] == ',') {
      parts.back() += ',';  // ",," is QEMU's escape for a literal comma
      ++i;
    } else {
      parts.emplace_back();
    }
  }
  return parts;
}

bool is_valid_naa(const std::string& wwn) {
  if (wwn.size() != 20 || wwn.compare(0, 4, "naa.") != 0) return false;
  for (size_t i = 4; i < wwn.size(); ++i)
    if (!std::isxdigit(static_cast<unsigned char>(wwn[i]))) return false;
  return true;
}

void check_token(const std::string& what, const std::string& value) {
  if (value.empty()) throw UsageError(what, "must not be empty");
  if (value.size() > 128) throw UsageError(what, "longer than 128 characters");
  for (unsigned char c : value) {
    // ',' and '=' would inject QEMU options; the rest would break configfs or the shell script.
    if (c == ',' || c == '=' || c == '"' || c == '\'' || c == '\\' || c == '$' || c == '`' || std::isspace(c) ||
        std::iscntrl(c) || c == '/' || c >= 0x7f)
      throw UsageError(what, fmt::format("'{}' has a character that is not allowed ({})",
                                         value, c == ',' ? "','" : "only printable ASCII "
                                                                   "without , = / quotes "
                                                                   "or spaces"));
  }
}

void check_not_fdset(const std::string& path) {
  // QEMU resolves /dev/fdset/N against fds passed with add-fd; LIO has no such table and
  // would open a path that does not exist.
  if (path.rfind("/dev/fdset/", 0) == 0)
    throw UsageError(path, "QEMU fd sets are not supported for vhost-scsi disks: LIO opens "
                           "the image by path");
}

namespace {

int parse_int(const std::string& key, const std::string& v, long lo, long hi) {
  char* end = nullptr;
  errno = 0;
  long n = std::strtol(v.c_str(), &end, 10);
  if (v.empty() || *end != '\0' || errno != 0 || n < lo || n > hi)
    throw UsageError("image key " + key,
                     fmt::format("'{}' is not an integer in {}..{}", v, lo, hi));
  return static_cast<int>(n);
}

bool parse_on_off(const std::string& key, const std::string& v) {
  if (v == "on") return true;
  if (v == "off") return false;
  throw UsageError("image key " + key, fmt::format("'{}' must be on or off", v));
}

}  // namespace

std::string escape_commas(const std::string& v) {
  std::string out;
  for (char c : v) out += c == ',' ? std::string(",,") : std::string(1, c);
  return out;
}

ImageSpec parse_image_spec(std::string_view spec) {
  std::vector<std::string> parts = split_qemu_opts(spec);
  ImageSpec img;
  img.path = parts[0];
  if (img.path.empty()) throw UsageError("--image", "SPEC has no image path");
  check_not_fdset(img.path);
  for (size_t i = 1; i < parts.size(); ++i) {
    const std::string& kv = parts[i];
    auto eq = kv.find('=');
    if (eq == std::string::npos)
      throw UsageError("image " + img.path, fmt::format("'{}' is not key=value", kv));
    std::string key = kv.substr(0, eq), v = kv.substr(eq + 1);
    if (key == "wwn") {
      if (!is_valid_naa(v))
        throw UsageError("image key wwn", fmt::format("'{}' is not naa. followed by 16 hex "
                                                      "digits", v));
      img.wwn = v;
    } else if (key == "serial") {
      // vpd_unit_serial is limited to 254 bytes by the kernel; keep it a safe token.
      if (v.empty() || v.size() > 128)
        throw UsageError("image key serial", "must be 1..128 characters");
      for (unsigned char c : v)
        if (!std::isalnum(c) && c != '-' && c != '_' && c != '.' && c != ':')
          throw UsageError("image key serial",
                           fmt::format("'{}' may only hold letters, digits and - _ . :", v));
      img.serial = v;
    } else if (key == "block-size") {
      int bs = parse_int(key, v, 512, 4096);
      if (bs != 512 && bs != 1024 && bs != 2048 && bs != 4096)
        throw UsageError("image key block-size",
                         fmt::format("'{}' is not one of 512, 1024, 2048, 4096", v));
      img.block_size = static_cast<uint32_t>(bs);
    } else if (key == "cache") {
      if (v == "writeback") img.cache = CacheMode::kWriteback;
      else if (v == "writethrough") img.cache = CacheMode::kWritethrough;
      else if (v == "none") img.cache = CacheMode::kNone;
      else
        throw UsageError("image key cache",
                         fmt::format("'{}' is not writeback, writethrough or none", v));
    } else if (key == "discard") {
      img.discard = parse_on_off(key, v);
    } else if (key == "readonly") {
      img.readonly = parse_on_off(key, v);
    } else if (key == "bootindex") {
      img.bootindex = parse_int(key, v, 0, 65535);
    } else if (key == "num-queues") {
      // vhost_scsi's max_io_vqs defaults to 128.
      img.num_queues = parse_int(key, v, 1, 128);
    } else if (key == "max-sectors") {
      img.max_sectors = parse_int(key, v, 1, 65535);
    } else if (key == "format") {
      if (!known_image_format(v))
        throw UsageError("image key format", fmt::format("'{}' is not raw or one of {}", v, image_formats()));
      img.format = v;
    } else if (key == "id") {
      check_token("image key id", v);
      img.id = v;
    } else if (key == "bus") {
      check_token("image key bus", v);
      img.bus = v;
    } else if (key == "addr") {
      check_token("image key addr", v);
      img.addr = v;
    } else if (key == "share") {
      img.share = parse_on_off(key, v);
    } else if (key == "controller") {
      // Part of the vhost target's derived wwn and of journal records: a plain token.
      check_token("image key controller", v);
      img.controller = v;
    } else {
      throw UsageError("image " + img.path, fmt::format("unknown key '{}' (known: wwn, serial, "
                                                        "block-size, cache, discard, readonly, format, "
                                                        "bootindex, num-queues, max-sectors, id, bus, "
                                                        "addr, controller, share)",
                                                        key));
    }
  }
  if (img.share && img.readonly)
    throw UsageError("image " + img.path, "share=on and readonly=on: a read-only image file is shared "
                                          "already; share=on is for a disk several VMs write");
  return img;
}

// Formats of QEMU's block layer that hold a disk inside a file. Protocol drivers (file,
// nbd, host_device...) are not formats: named as one they would reach past the image.
bool known_image_format(const std::string& format) {
  static const std::set<std::string> known = {"raw", "qcow2", "qcow", "vmdk", "vhdx", "vdi", "qed",
                                              "vpc", "parallels", "luks", "bochs", "cloop", "dmg"};
  return known.count(format) > 0;
}

const char* image_formats() { return "qcow2, qcow, vmdk, vhdx, vdi, qed, vpc, parallels, luks, bochs, cloop, dmg"; }

}  // namespace qemu_lio
