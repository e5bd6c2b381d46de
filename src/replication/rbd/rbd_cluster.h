// One site's Ceph cluster as the RBD adapter reaches it: librados and
// librbd with every call bounded in time (a cluster that is gone makes a
// call fail with ETIMEDOUT instead of hanging forever), errors as Status.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <rados/librados.hpp>
#include <rbd/librbd.hpp>

#include "core/status.h"

namespace evac::rbd {

struct ClusterSettings {
  std::string conf;                     // ceph.conf of this site's cluster
  std::string user = "admin";           // cephx client id (client.<user>)
  std::string keyring;                  // its key, when the conf does not say where

  std::chrono::seconds op_timeout{20};  // connect, monitor and OSD operations
};

// "pool/image" as libvirt names an rbd disk.
struct ImageName {
  std::string pool, image;
  std::string spec() const { return pool + "/" + image; }
};
Result<ImageName> parse_image_name(const std::string& name);

// A snapshot of an image as the adapter needs to see it.
struct Snapshot {
  std::uint64_t id = 0;
  std::string name;
  bool user = false;
  bool mirror = false;          // a mirror snapshot
  bool mirror_complete = false;
  bool mirror_non_primary = false;
  bool demoted = false;         // a primary's demotion or its copy
};

class Cluster {
 public:
  static Result<std::unique_ptr<Cluster>> connect(const ClusterSettings& settings);
  ~Cluster();

  // Opens pool/image (at `snap` when given).
  Result<std::unique_ptr<librbd::Image>> open(const ImageName& name, const std::string& snap = "");
  Result<librados::IoCtx*> pool(const std::string& name);
  librbd::RBD& rbd() { return rbd_; }
  // Failure text for an errno from Ceph, naming what was done: ETIMEDOUT
  // and the like are kUnavailable (the cluster may come back).
  Status error(int r, const std::string& doing) const;

  Result<std::vector<Snapshot>> snapshots(librbd::Image& image, const ImageName& name);

 private:
  explicit Cluster(ClusterSettings settings) : settings_(std::move(settings)) {}
  ClusterSettings settings_;
  librados::Rados rados_;
  librbd::RBD rbd_;
  std::map<std::string, std::unique_ptr<librados::IoCtx>> pools_;
};

}  // namespace evac::rbd
