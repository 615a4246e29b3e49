#include "qemu_lio/qemu_drive.h"

#include <fmt/core.h>

#include "qemu_lio/error.h"

namespace qemu_lio {

namespace {

// QEMU's qapi_bool_parse() spellings, which QemuOpts uses for every boolean key.
std::optional<bool> qemu_bool(const std::string& v) {
  if (v == "on" || v == "yes" || v == "true" || v == "y") return true;
  if (v == "off" || v == "no" || v == "false" || v == "n") return false;
  return std::nullopt;
}

CacheMode map_cache(const std::string& name, const std::string& cache) {
  if (cache == "writeback") return CacheMode::kWriteback;
  if (cache == "writethrough") return CacheMode::kWritethrough;
  if (cache == "none") return CacheMode::kNone;
  // directsync is O_DIRECT|O_DSYNC in QEMU: each write is durable when it completes and the
  // guest sees no volatile cache. LIO's default O_DSYNC mode (emulate_write_cache=0) gives the
  // guest exactly that; fd_async_io would bypass the open-time O_DSYNC and so lose it.
  if (cache == "directsync") return CacheMode::kWritethrough;
  // unsafe makes QEMU drop the guest's flushes. LIO has no such mode: write-back still turns
  // SYNCHRONIZE CACHE into fsync, which is safer than what was asked and costs little.
  if (cache == "unsafe") return CacheMode::kWriteback;
  throw UsageError(name, fmt::format("cache '{}' is not writeback, writethrough, none, "
                                     "directsync or unsafe", cache));
}

}  // namespace

std::optional<ImageSpec> drive_options_to_image(const std::string& name, const DriveOptions& opts) {
  std::optional<std::string> iface;
  for (const auto& [k, v] : opts)
    if (k == "if") iface = v;  // QEMU lets the last occurrence win
  if (!iface || *iface != kVhostScsiInterface) return std::nullopt;

  std::optional<std::string> file, format, cache;
  // Keys that mean the same as an --image key, in --image's spelling: parse_image_spec()
  // validates them, so serial, id and bootindex follow one set of rules whatever the syntax.
  std::vector<std::pair<std::string, std::string>> spec_keys;
  // QEMU's -drive default is discard=ignore: never punch holes the user did not ask for.
  spec_keys.emplace_back("discard", "off");
  for (const auto& [k, v] : opts) {
    if (k == "if") {
      continue;
    } else if (k == "file") {
      file = v;
    } else if (k == "format") {
      format = v;
    } else if (k == "cache") {
      cache = v;
    } else if (k == "aio") {
      // aio=native and io_uring ask for asynchronous direct I/O. With cache=none LIO does
      // that already (fd_async_io, our kNone). With any other cache mode the choice is
      // ignored: LIO's fileio has no aio knob besides fd_async_io, and that one means
      // O_DIRECT, which would undo the cache mode asked for. threads is QEMU's default.
      if (v != "threads" && v != "native" && v != "io_uring")
        throw UsageError(name, fmt::format("aio '{}' is not threads, native or io_uring", v));
    } else if (k == "readonly") {
      std::optional<bool> b = qemu_bool(v);
      if (!b) throw UsageError(name, fmt::format("readonly '{}' is not on or off", v));
      spec_keys.emplace_back("readonly", *b ? "on" : "off");
    } else if (k == "discard") {
      // QEMU's bdrv_parse_discard_flags() spellings.
      if (v == "unmap" || v == "on") spec_keys.emplace_back("discard", "on");
      else if (v == "ignore" || v == "off") spec_keys.emplace_back("discard", "off");
      else throw UsageError(name, fmt::format("discard '{}' is not unmap or ignore", v));
    } else if (k == "share-rw") {
      // QEMU's own spelling for a disk that several VMs write, on the replaced -device.
      std::optional<bool> b = qemu_bool(v);
      if (!b) throw UsageError(name, fmt::format("share-rw '{}' is not on or off", v));
      spec_keys.emplace_back("share", *b ? "on" : "off");
    } else if (k == "serial" || k == "id" || k == "bootindex" || k == "controller" || k == "share") {
      // controller= is qemu-lio's own key (QEMU's -drive has none): if=vhost-scsi is ours.
      spec_keys.emplace_back(k, v);
    } else if (k == "bus" || k == "addr") {
      // QEMU's -drive bus/addr place the drive's own device; here that device is the
      // vhost-scsi-pci one, so they are its PCI bus and slot (a launcher that addresses every
      // device itself can place ours too).
      spec_keys.emplace_back(k, v);
    } else if (k == "media") {
      // A vhost-scsi LUN is always a disk (peripheral type 0); LIO has no CD-ROM emulation.
      if (v != "disk")
        throw UsageError(name, fmt::format("media '{}' is not supported with if=vhost-scsi: "
                                           "LIO exports a disk", v));
    } else if ((k == "snapshot" || k == "copy-on-read") && qemu_bool(v) == false) {
      continue;  // QEMU's default, spelled out
    } else {
      throw UsageError(name, fmt::format("-drive key '{}' is not supported with if=vhost-scsi", k));
    }
  }

  if (!file || file->empty())
    throw UsageError(name, "has no file=: if=vhost-scsi needs the image's path");
  check_not_fdset(*file);
  // No conversion hint: qemu-img on an image of unknown origin follows whatever backing
  // file its header names.
  if (format && !known_image_format(*format))
    throw UsageError(name, fmt::format("format '{}' is not raw or one of {}", *format, image_formats()));
  // An explicit format=raw is the caller's word that the image is raw; it also stops the
  // header sniffing, which a guest could otherwise trip by writing a magic into sector 0.
  // Any other format is read by qemu-storage-daemon.
  if (format) spec_keys.emplace_back("format", *format);

  CacheMode mode = cache ? map_cache(name, *cache) : CacheMode::kWriteback;  // QEMU's default
  spec_keys.emplace_back("cache", to_string(mode));

  std::string spec = escape_commas(*file);
  for (const auto& [k, v] : spec_keys) spec += "," + k + "=" + escape_commas(v);
  try {
    return parse_image_spec(spec);
  } catch (const UsageError& e) {
    // "image key serial: ..." becomes "<drive>: key serial: ...": the drive is the object.
    std::string cause = e.what();
    if (cause.rfind("image ", 0) == 0) cause.erase(0, 6);
    throw UsageError(name, cause);
  }
}

std::optional<ImageSpec> drive_to_image(std::string_view opts, const DriveOptions& first) {
  DriveOptions kv = first;
  std::optional<std::string> bad, file;
  std::vector<std::string> parts = split_qemu_opts(opts);
  for (size_t i = 0; i < parts.size(); ++i) {
    const std::string& p = parts[i];
    if (p.empty() && i + 1 == parts.size() && i > 0) break;  // QEMU accepts a trailing ','
    auto eq = p.find('=');
    if (eq == std::string::npos) {
      if (!bad) bad = p;
      continue;
    }
    kv.emplace_back(p.substr(0, eq), p.substr(eq + 1));
    if (kv.back().first == "file") file = kv.back().second;
  }
  const std::string name = file ? "-drive file=" + *file : "-drive " + std::string(opts);
  std::optional<ImageSpec> img = drive_options_to_image(name, kv);
  // A malformed part of somebody else's drive is for QEMU to report, not us.
  if (img && bad)
    throw UsageError(name, fmt::format("'{}' is not key=value", *bad));
  return img;
}

DriveOptions replaced_device_options(const ReplacedDevice& dev) {
  DriveOptions opts;
  if (dev.bootindex) opts.emplace_back("bootindex", *dev.bootindex);
  if (dev.share_rw) opts.emplace_back("share-rw", *dev.share_rw);
  return opts;
}

void take_pci_slot(ImageSpec& spec, const ReplacedDevice& dev) {
  const std::string suffix = "-pci";
  const std::string& d = dev.driver;
  if (d.size() <= suffix.size() || d.compare(d.size() - suffix.size(), suffix.size(), suffix) != 0)
    return;
  if (dev.bus) {
    check_token(dev.name + " key bus", *dev.bus);
    spec.bus = *dev.bus;
  }
  if (dev.addr) {
    check_token(dev.name + " key addr", *dev.addr);
    spec.addr = *dev.addr;
  }
}

}  // namespace qemu_lio
