#include "qemu_lio/readconfig.h"

#include <fmt/core.h>

#include <map>
#include <optional>

#include "qemu_lio/error.h"
#include "qemu_lio/qemu_drive.h"

namespace qemu_lio {

namespace {

bool is_blank(char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\v' || c == '\f'; }

struct Line {
  std::string text;  // exactly as read, with its '\n' (the last line may have none)
  enum class Kind { kBlank, kComment, kHeader, kKeyValue, kMalformed } kind = Kind::kBlank;
  std::string group, id;   // kHeader; group is empty if the header is not well formed
  std::string key, value;  // kKeyValue
};

// QEMU reads headers with sscanf("[%63s \"%63[^\"]\"]") and then "[%63[^]]]".
void parse_header(const std::string& s, size_t pos, Line& l) {
  l.kind = Line::Kind::kHeader;
  size_t i = pos + 1;
  size_t word_end = i;
  while (word_end < s.size() && !is_blank(s[word_end]) && s[word_end] != ']' && s[word_end] != '"')
    ++word_end;
  size_t j = word_end;
  while (j < s.size() && is_blank(s[j])) ++j;
  if (word_end > i && j > word_end && j < s.size() && s[j] == '"') {
    size_t close = s.find('"', j + 1);
    if (close != std::string::npos && close > j + 1) {
      size_t k = close + 1;
      while (k < s.size() && is_blank(s[k])) ++k;
      if (k < s.size() && s[k] == ']') {
        l.group = s.substr(i, word_end - i);
        l.id = s.substr(j + 1, close - j - 1);
      }
      return;
    }
  }
  size_t close = s.find(']', i);
  if (close != std::string::npos && close > i) l.group = s.substr(i, close - i);
}

// QEMU reads values with sscanf(" %63s = \"%1023[^\"]\""): always in double quotes, which
// the value cannot contain. We also accept key="value" without blanks around '='.
void parse_key_value(const std::string& s, size_t pos, Line& l) {
  l.kind = Line::Kind::kMalformed;
  size_t key_end = pos;
  while (key_end < s.size() && !is_blank(s[key_end]) && s[key_end] != '=') ++key_end;
  size_t i = key_end;
  while (i < s.size() && is_blank(s[i])) ++i;
  if (key_end == pos || i >= s.size() || s[i] != '=') return;
  ++i;
  while (i < s.size() && is_blank(s[i])) ++i;
  if (i >= s.size() || s[i] != '"') return;
  size_t close = s.find('"', i + 1);
  if (close == std::string::npos) return;
  for (size_t k = close + 1; k < s.size(); ++k)
    if (!is_blank(s[k])) return;
  l.kind = Line::Kind::kKeyValue;
  l.key = s.substr(pos, key_end - pos);
  l.value = s.substr(i + 1, close - i - 1);
}

std::vector<Line> split_lines(const std::string& text) {
  std::vector<Line> lines;
  size_t start = 0;
  while (start < text.size()) {
    size_t nl = text.find('\n', start);
    size_t end = nl == std::string::npos ? text.size() : nl + 1;
    Line l;
    l.text = text.substr(start, end - start);
    std::string body = text.substr(start, (nl == std::string::npos ? text.size() : nl) - start);
    size_t pos = 0;
    while (pos < body.size() && is_blank(body[pos])) ++pos;
    // QEMU wants '#' and '[' in the first column; leading blanks are harmless to accept.
    if (pos == body.size()) l.kind = Line::Kind::kBlank;
    else if (body[pos] == '#') l.kind = Line::Kind::kComment;
    else if (body[pos] == '[') parse_header(body, pos, l);
    else parse_key_value(body, pos, l);
    lines.push_back(std::move(l));
    start = end;
  }
  return lines;
}

// A section runs from its header to its last key line. Blank lines and comments after that
// belong to the text between sections, so that replacing a section keeps them.
struct Section {
  size_t begin = 0, end = 0;  // line indexes [begin, end)
  std::string group, id;
  DriveOptions keys;
  std::optional<size_t> first_malformed;  // line index
  std::string effective_id;               // the last id key, else the header's id

  std::optional<std::string> get(const std::string& key) const {
    std::optional<std::string> v;
    for (const auto& [k, val] : keys)
      if (k == key) v = val;  // the last one wins, as in QEMU
    return v;
  }
  std::string name() const {
    return id.empty() ? fmt::format("readconfig [{}] at line {}", group, begin + 1)
                      : fmt::format("readconfig [{} \"{}\"] at line {}", group, id, begin + 1);
  }
};

std::vector<Section> find_sections(const std::vector<Line>& lines) {
  std::vector<Section> sections;
  for (size_t i = 0; i < lines.size(); ++i) {
    const Line& l = lines[i];
    if (l.kind == Line::Kind::kHeader) {
      Section s;
      s.begin = i;
      s.end = i + 1;
      s.group = l.group;
      s.id = l.id;
      sections.push_back(std::move(s));
    } else if (!sections.empty() &&
               (l.kind == Line::Kind::kKeyValue || l.kind == Line::Kind::kMalformed)) {
      Section& s = sections.back();
      s.end = i + 1;
      if (l.kind == Line::Kind::kKeyValue) s.keys.emplace_back(l.key, l.value);
      else if (!s.first_malformed) s.first_malformed = i;
    }
  }
  for (Section& s : sections) s.effective_id = s.get("id").value_or(s.id);
  return sections;
}

bool is_vhost_drive(const Section& s) {
  return s.group == "drive" && s.get("if") == std::string(kVhostScsiInterface);
}

std::string quoted(const std::string& what, const std::string& v) {
  // QEMU's reader has no escapes: a value ends at the next '"', a line at '\n'.
  for (char c : v)
    if (c == '"' || c == '\n' || c == '\r')
      throw Error(what, fmt::format("'{}' cannot be written in QEMU's readconfig syntax", v));
  return "\"" + v + "\"";
}

}  // namespace

std::vector<ImageSpec> ReadConfig::images() const {
  std::vector<ImageSpec> out;
  for (const Chunk& c : chunks)
    if (c.kind == Chunk::Kind::kVhostDrive) out.push_back(c.spec);
  return out;
}

ReadConfig parse_readconfig(const std::string& text) {
  const std::vector<Line> lines = split_lines(text);
  const std::vector<Section> sections = find_sections(lines);

  // The vhost drives by the id QEMU would know them by, and the [device] sections using them.
  std::map<std::string, size_t> vhost_by_id;
  for (size_t i = 0; i < sections.size(); ++i) {
    const Section& s = sections[i];
    if (!is_vhost_drive(s)) continue;
    if (s.first_malformed) {
      const size_t n = *s.first_malformed;
      std::string body = lines[n].text;
      while (!body.empty() && (body.back() == '\n' || body.back() == '\r')) body.pop_back();
      throw UsageError(s.name(), fmt::format("line {}: '{}' is not key = \"value\"", n + 1, body));
    }
    if (s.effective_id.empty()) continue;
    auto [it, fresh] = vhost_by_id.emplace(s.effective_id, i);
    if (!fresh)
      throw UsageError(s.name(), fmt::format("id '{}' is already used by the drive at line {}",
                                             s.effective_id, sections[it->second].begin + 1));
  }
  std::map<size_t, size_t> dropped;  // device section -> vhost drive section
  std::map<size_t, size_t> user_of;  // vhost drive section -> first device section using it
  for (size_t i = 0; i < sections.size(); ++i) {
    const Section& s = sections[i];
    if (s.group != "device") continue;
    std::optional<std::string> drive = s.get("drive");
    if (!drive) continue;
    auto it = vhost_by_id.find(*drive);
    if (it == vhost_by_id.end()) continue;
    dropped.emplace(i, it->second);
    user_of.emplace(it->second, i);
  }

  ReadConfig rc;
  std::map<size_t, ImageSpec> specs;
  for (size_t i = 0; i < sections.size(); ++i) {
    const Section& s = sections[i];
    if (!is_vhost_drive(s)) continue;
    DriveOptions opts;
    // The header's id goes first so that an id key overrides it, as in QEMU.
    if (!s.id.empty()) opts.emplace_back("id", s.id);
    std::optional<ReplacedDevice> dev;
    if (user_of.count(i)) {
      const Section& d = sections[user_of[i]];
      dev = ReplacedDevice{d.name(), d.get("driver").value_or(""), d.get("bootindex"),
                           d.get("bus"), d.get("addr"), d.get("share-rw")};
      // bootindex is a device property in QEMU; a drive key of its own wins.
      DriveOptions from_dev = replaced_device_options(*dev);
      opts.insert(opts.end(), from_dev.begin(), from_dev.end());
    }
    opts.insert(opts.end(), s.keys.begin(), s.keys.end());
    ImageSpec spec = *drive_options_to_image(s.name(), opts);
    // The replaced device held a PCI slot (EVE puts each disk behind its own pcie-root-port):
    // vhost-scsi-pci takes that slot.
    if (dev) take_pci_slot(spec, *dev);
    specs.emplace(i, std::move(spec));
  }

  size_t pos = 0;  // first line not yet in a chunk
  auto flush_verbatim = [&](size_t upto) {
    if (upto <= pos) return;
    ReadConfig::Chunk c;
    c.line = static_cast<int>(pos + 1);
    for (size_t k = pos; k < upto; ++k) c.text += lines[k].text;
    rc.chunks.push_back(std::move(c));
    pos = upto;
  };
  for (size_t i = 0; i < sections.size(); ++i) {
    const Section& s = sections[i];
    const bool vhost = specs.count(i) > 0, drop = dropped.count(i) > 0;
    if (!vhost && !drop) continue;
    flush_verbatim(s.begin);
    ReadConfig::Chunk c;
    c.line = static_cast<int>(s.begin + 1);
    for (size_t k = s.begin; k < s.end; ++k) c.text += lines[k].text;
    c.id = s.id;
    if (vhost) {
      c.kind = ReadConfig::Chunk::Kind::kVhostDrive;
      c.spec = specs[i];
    } else {
      c.kind = ReadConfig::Chunk::Kind::kDroppedDevice;
      rc.dropped_devices.push_back({s.id, *s.get("drive"), c.line});
    }
    rc.chunks.push_back(std::move(c));
    pos = s.end;
  }
  flush_verbatim(lines.size());
  return rc;
}

std::string render_readconfig(const ReadConfig& rc,
                              const std::vector<std::vector<std::pair<std::string, std::string>>>& devices) {
  size_t vhost = 0;
  for (const ReadConfig::Chunk& c : rc.chunks)
    if (c.kind == ReadConfig::Chunk::Kind::kVhostDrive) ++vhost;
  if (devices.size() != vhost)
    throw Error("readconfig", fmt::format("{} device property lists for {} vhost-scsi drives",
                                          devices.size(), vhost));
  std::string out;
  size_t next = 0;
  for (const ReadConfig::Chunk& c : rc.chunks) {
    switch (c.kind) {
      case ReadConfig::Chunk::Kind::kVerbatim:
        out += c.text;
        break;
      case ReadConfig::Chunk::Kind::kDroppedDevice:
        break;
      case ReadConfig::Chunk::Kind::kVhostDrive: {
        const auto& props = devices[next++];
        if (props.empty()) break;  // the drive is served by another drive's device
        std::string id = c.spec.id.value_or(c.id);
        for (const auto& [k, v] : props)
          if (k == "id") id = v;
        const std::string what = fmt::format("readconfig [device \"{}\"]", id);
        out += id.empty() ? "[device]\n" : "[device " + quoted(what, id) + "]\n";
        for (const auto& [k, v] : props)
          if (k != "id") out += "  " + k + " = " + quoted(what + " key " + k, v) + "\n";
        break;
      }
    }
  }
  return out;
}

}  // namespace qemu_lio
