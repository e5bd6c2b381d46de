// The inventory model's JSON (model_json.h): what the API and a paired site
// read, here a disk's source, written always and read strictly.
#include "core/model_json.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace evac {
namespace {

using ::testing::HasSubstr;
using nlohmann::json;

PlaceholderSpec spec_with_disk(const DiskInfo& disk) {
  VmInfo vm;
  vm.name = "db01";
  vm.disks = {disk};
  return PlaceholderSpec{"db", "site-a", "e0000000-0000-4000-8000-000000000001", vm};
}

DiskInfo rbd_disk() {
  DiskInfo d{"vdb", "rbd:pool/image", "raw", "virtio", "disk", std::nullopt};
  d.source = DiskSource{"network", "", "rbd", "pool/image"};
  return d;
}

// The spec's one disk as the strict decoder reads it back, or its error.
Result<DiskInfo> strictly_read(const json& disk) {
  json spec = spec_with_disk(DiskInfo{"vda", "/a.qcow2", "", "", "disk", std::nullopt});
  spec["vm"]["disks"] = json::array({disk});
  auto read = placeholder_spec_from_json(spec);
  if (!read) return read.status();
  return read->vm.disks.at(0);
}

TEST(DiskSourceJson, TravelsWithItsDiskBothWays) {
  json j = rbd_disk();
  EXPECT_EQ(j["source"], (json{{"type", "network"}, {"path", ""}, {"protocol", "rbd"}, {"name", "pool/image"}}));

  auto strict = strictly_read(j);
  ASSERT_TRUE(strict.is_ok()) << strict.status().to_string();
  EXPECT_EQ(strict->path, "rbd:pool/image");
  EXPECT_EQ(strict->source.type, "network");
  EXPECT_EQ(strict->source.protocol, "rbd");
  EXPECT_EQ(strict->source.name, "pool/image");

  DiskInfo lenient = j.get<DiskInfo>();
  EXPECT_EQ(lenient.source.type, "network");
  EXPECT_EQ(lenient.source.name, "pool/image");

  DiskInfo block{"vdc", "/dev/sdb", "raw", "virtio", "disk", std::nullopt};
  block.source = DiskSource{"block", "/dev/sdb", "", ""};
  auto again = strictly_read(json(block));
  ASSERT_TRUE(again.is_ok()) << again.status().to_string();
  EXPECT_EQ(again->source.describe(), "block device /dev/sdb");
}

TEST(DiskSourceJson, ADiskWithoutASourceIsAFile) {
  json j = DiskInfo{"vda", "/a/db01.qcow2", "qcow2", "virtio", "disk", std::nullopt};
  j.erase("source");  // as a site from before DiskSource writes it
  auto strict = strictly_read(j);
  ASSERT_TRUE(strict.is_ok()) << strict.status().to_string();
  EXPECT_EQ(strict->source.type, "file");
  EXPECT_EQ(source_of(*strict).path, "/a/db01.qcow2");
  EXPECT_EQ(j.get<DiskInfo>().source.type, "file");
}

TEST(DiskSourceJson, AnUnknownKeyInTheSourceIsRefused) {
  json j = rbd_disk();
  j["source"]["hosts"] = json::array({"mon1:6789"});
  auto read = strictly_read(j);
  ASSERT_FALSE(read.is_ok());
  EXPECT_EQ(read.status().code(), StatusCode::kInvalidArgument);
  EXPECT_THAT(read.status().message(), HasSubstr("'hosts'"));
}

// A type libvirt has and evac does not know yet (nvme, vhostuser) passes:
// the engines refuse what they cannot read, by name. What is not a type's
// name at all is refused.
TEST(DiskSourceJson, ATypeMustBeATypesNameNotOneEvacKnows) {
  json j = rbd_disk();
  j["source"]["type"] = "nvme";
  auto nvme = strictly_read(j);
  ASSERT_TRUE(nvme.is_ok()) << nvme.status().to_string();
  EXPECT_EQ(nvme->source.type, "nvme");
  j["source"]["type"] = "Tape Drive";
  auto read = strictly_read(j);
  ASSERT_FALSE(read.is_ok());
  EXPECT_EQ(read.status().code(), StatusCode::kInvalidArgument);
  EXPECT_THAT(read.status().message(), HasSubstr("'Tape Drive'"));
  EXPECT_THAT(read.status().hint(), HasSubstr("file, block, dir, network, volume"));
  j["source"]["type"] = "";
  EXPECT_FALSE(strictly_read(j).is_ok()) << "a type is not empty";

  j["source"]["type"] = 7;
  EXPECT_FALSE(strictly_read(j).is_ok()) << "a type is text";
  j["source"] = "network";
  EXPECT_FALSE(strictly_read(j).is_ok()) << "a source is an object";
  j["source"] = {{"type", "file"}, {"path", std::string(kMaxTextLength + 1, 'p')}};
  EXPECT_FALSE(strictly_read(j).is_ok()) << "a path is bounded like the disk's";
}

}  // namespace
}  // namespace evac
