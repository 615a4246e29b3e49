// The libvirt hook's reading of a domain: only domains with qemu-lio's metadata are ours,
// every <lio:disk> needs a vhost <hostdev> with its wwpn, and the hook's command line takes
// libvirt's words verbatim.

#include "qemu_lio/libvirt_domain.h"

#include <gtest/gtest.h>

#include "qemu_lio/cli.h"
#include "qemu_lio/error.h"

namespace qemu_lio {
namespace {

const char* const kWwpn = "naa.5001405aabbccdd0";

std::string domain(const std::string& metadata, const std::string& devices) {
  return "<domain type='kvm'><name>vm one</name><uuid>0b8a4a58-4e1b-4cc8-9f8a-9c1d5c3e1f00</uuid>"
         "<metadata>" + metadata + "</metadata><devices>" + devices + "</devices></domain>";
}

std::string hostdev(const std::string& wwpn) {
  return "<hostdev mode='subsystem' type='scsi_host'><source protocol='vhost' wwpn='" + wwpn +
         "'/></hostdev>";
}

std::string disks(const std::string& inner, const std::string& prefix = "lio") {
  return "<" + prefix + ":disks xmlns:" + prefix + "='urn:qemu-lio:libvirt:1'>" + inner + "</" + prefix +
         ":disks>";
}

std::string error_of(const std::string& xml) {
  try {
    parse_libvirt_domain(xml);
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

TEST(LibvirtDomain, DomainsWithoutOurMetadataAreNotOurs) {
  EXPECT_FALSE(parse_libvirt_domain(domain("", hostdev(kWwpn))));
  EXPECT_FALSE(parse_libvirt_domain(domain("<other:x xmlns:other='urn:x'/>", "")));
  // Even XML we cannot parse: a hook must never refuse a domain that is not ours.
  EXPECT_FALSE(parse_libvirt_domain("<domain><name>x</name"));
}

TEST(LibvirtDomain, DisksWithTheirKeysAndWwpn) {
  auto d = parse_libvirt_domain(domain(
      disks("<lio:disk wwpn='naa.5001405aabbccdd0' file='/img/a,b.raw' cache='none' readonly='on'/>"
            "<lio:disk wwpn='naa.5001405aabbccdd1' file='/img/c.raw' block-size='4096'/>"),
      hostdev(kWwpn) + hostdev("naa.5001405aabbccdd1")));
  ASSERT_TRUE(d);
  EXPECT_EQ(d->name, "vm one");
  EXPECT_EQ(d->uuid, "0b8a4a58-4e1b-4cc8-9f8a-9c1d5c3e1f00");
  ASSERT_EQ(d->disks.size(), 2u);
  EXPECT_EQ(d->disks[0].path, "/img/a,b.raw");
  EXPECT_EQ(d->disks[0].wwn, std::optional<std::string>(kWwpn));
  EXPECT_EQ(d->disks[0].cache, CacheMode::kNone);
  EXPECT_TRUE(d->disks[0].readonly);
  EXPECT_EQ(d->disks[1].block_size, 4096u);
}

TEST(LibvirtDomain, AnyPrefixOfOurNamespace) {
  auto d = parse_libvirt_domain(
      domain(disks("<q:disk wwpn='naa.5001405aabbccdd0' file='/img/a.raw'/>", "q"), hostdev(kWwpn)));
  ASSERT_TRUE(d);
  EXPECT_EQ(d->disks.size(), 1u);
}

TEST(LibvirtDomain, EachMistakeIsOneLineNamingTheDisk) {
  const std::string hd = hostdev(kWwpn);
  EXPECT_NE(error_of(domain(disks("<lio:disk wwpn='naa.5001405aabbccdd9' file='/a.raw'/>"), hd))
                .find("<lio:disk wwpn=\"naa.5001405aabbccdd9\">: no <hostdev"),
            std::string::npos);
  EXPECT_NE(error_of(domain(disks("<lio:disk wwpn='naa.5001405aabbccdd0'/>"), hd)).find("no file="),
            std::string::npos);
  EXPECT_NE(error_of(domain(disks("<lio:disk file='/a.raw'/>"), hd)).find("no wwpn="), std::string::npos);
  EXPECT_NE(error_of(domain(disks("<lio:disk wwpn='naa.12' file='/a.raw'/>"), hd)).find("naa.12"),
            std::string::npos);
  EXPECT_NE(error_of(domain(disks("<lio:disk wwpn='naa.5001405aabbccdd0' file='a.raw'/>"), hd))
                .find("not an absolute path"),
            std::string::npos);
  EXPECT_NE(error_of(domain(disks("<lio:disk wwpn='naa.5001405aabbccdd0' file='/a.raw' bootindex='1'/>"), hd))
                .find("'bootindex'"),
            std::string::npos);
  EXPECT_NE(error_of(domain(disks("<lio:disk wwpn='naa.5001405aabbccdd0' file='/a.raw' cache='fast'/>"), hd))
                .find("cache"),
            std::string::npos);
  EXPECT_NE(error_of(domain(disks(""), hd)).find("names no <lio:disk>"), std::string::npos);
  const std::string twice = "<lio:disk wwpn='naa.5001405aabbccdd0' file='/a.raw'/>";
  EXPECT_NE(error_of(domain(disks(twice + twice), hd)).find("same wwpn"), std::string::npos);
  // Ours, but not parseable: the start must fail, not go on without the disk.
  EXPECT_NE(error_of("<domain><metadata><lio:disks xmlns:lio='urn:qemu-lio:libvirt:1'>").find("domain XML"),
            std::string::npos);
  for (const std::string& e : {error_of(domain(disks(twice), ""))})
    EXPECT_EQ(e.find('\n'), std::string::npos) << e;
}

TEST(LibvirtDomain, SnippetRoundTripsThroughTheParser) {
  ImageSpec spec = parse_image_spec("/img/a.raw,cache=none,discard=off");
  const std::string xml = libvirt_xml_for("/img/a.raw", spec, kWwpn);
  // Pasted into a domain as the comments say, it is what the hook reads back.
  const auto hd_end = xml.find("</hostdev>") + 10;
  const std::string hd = xml.substr(0, hd_end);
  const std::string md = xml.substr(hd_end);
  auto d = parse_libvirt_domain(domain(md, hd));
  ASSERT_TRUE(d);
  ASSERT_EQ(d->disks.size(), 1u);
  EXPECT_EQ(d->disks[0].path, "/img/a.raw");
  EXPECT_EQ(d->disks[0].cache, CacheMode::kNone);
  EXPECT_FALSE(d->disks[0].discard);
  EXPECT_THROW(libvirt_xml_for("/img/a.raw", parse_image_spec("/img/a.raw,bootindex=1"), kWwpn), UsageError);
  // <lio:disk> has no share key: the XML must not quietly make an exclusive disk of it.
  EXPECT_THROW(libvirt_xml_for("/img/a.raw", parse_image_spec("/img/a.raw,share=on"), kWwpn), UsageError);
}

TEST(LibvirtCli, HookTakesLibvirtsWordsVerbatim) {
  Command c = parse_command_line({"--state-dir", "/run/x", "libvirt-hook", "vm", "prepare", "begin", "-"});
  EXPECT_EQ(c.kind, Command::Kind::kLibvirtHook);
  EXPECT_EQ(c.run.state_dir, "/run/x");
  EXPECT_EQ(c.run.args, (std::vector<std::string>{"vm", "prepare", "begin", "-"}));
  // A domain named like one of our options is still just a domain.
  c = parse_command_line({"libvirt-hook", "--help", "release", "end", "-"});
  EXPECT_EQ(c.kind, Command::Kind::kLibvirtHook);
  EXPECT_EQ(c.run.args.at(0), "--help");
}

TEST(LibvirtCli, XmlTakesOneSpecAndAName) {
  Command c = parse_command_line({"libvirt-xml", "/img/a.raw,cache=none", "--name", "dom"});
  EXPECT_EQ(c.kind, Command::Kind::kLibvirtXml);
  EXPECT_EQ(c.run.args, std::vector<std::string>{"/img/a.raw,cache=none"});
  EXPECT_EQ(c.run.name, std::optional<std::string>("dom"));
}

}  // namespace
}  // namespace qemu_lio
