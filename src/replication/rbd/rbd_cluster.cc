#include "replication/rbd/rbd_cluster.h"

#include <cerrno>
#include <cstring>

namespace evac::rbd {

Result<ImageName> parse_image_name(const std::string& name) {
  auto slash = name.find('/');
  if (slash == std::string::npos || slash == 0 || slash + 1 == name.size() || name.find('/', slash + 1) != std::string::npos ||
      name.find('@') != std::string::npos)
    return invalid_argument("rbd disk '" + name + "' is not POOL/IMAGE",
                            "name the disk's image as libvirt does: <source protocol='rbd' name='POOL/IMAGE'>");
  return ImageName{name.substr(0, slash), name.substr(slash + 1)};
}

Status Cluster::error(int r, const std::string& doing) const {
  const int e = r < 0 ? -r : r;
  const std::string text = doing + ": " + std::strerror(e);
  switch (e) {
    case ETIMEDOUT:
    case ECONNREFUSED:
    case ESHUTDOWN:
    case EAGAIN:
      return unavailable(text + " (cluster " + settings_.conf + " as client." + settings_.user + ")",
                         "check that the cluster's monitors and OSDs run and are reachable from this host");
    case ENOENT:
      return not_found(text);
    case EROFS:
      return failed_precondition(text, "the image is not primary here: it follows the other site's");
    case EPERM:
    case EACCES:
      return permission_denied(text, "give client." + settings_.user + " 'profile rbd' caps on the pool");
    case EEXIST:
      return already_exists(text);
    default:
      return internal_error(text);
  }
}

Result<std::unique_ptr<Cluster>> Cluster::connect(const ClusterSettings& settings) {
  std::unique_ptr<Cluster> c(new Cluster(settings));
  int r = c->rados_.init(settings.user.c_str());
  if (r < 0) return c->error(r, "initialising librados");
  r = c->rados_.conf_read_file(settings.conf.c_str());
  if (r < 0) return c->error(r, "reading " + settings.conf);
  if (!settings.keyring.empty() && (r = c->rados_.conf_set("keyring", settings.keyring.c_str())) < 0)
    return c->error(r, "setting keyring " + settings.keyring);
  const std::string t = std::to_string(settings.op_timeout.count());
  for (const char* key : {"client_mount_timeout", "rados_mon_op_timeout", "rados_osd_op_timeout"})
    if ((r = c->rados_.conf_set(key, t.c_str())) < 0) return c->error(r, std::string("setting ") + key);
  r = c->rados_.connect();
  if (r < 0) return c->error(r, "connecting to the cluster of " + settings.conf);
  return c;
}

Cluster::~Cluster() {
  pools_.clear();
  rados_.shutdown();
}

Result<librados::IoCtx*> Cluster::pool(const std::string& name) {
  auto it = pools_.find(name);
  if (it != pools_.end()) return it->second.get();
  auto io = std::make_unique<librados::IoCtx>();
  int r = rados_.ioctx_create(name.c_str(), *io);
  if (r < 0) return error(r, "opening pool " + name);
  return (pools_[name] = std::move(io)).get();
}

Result<std::unique_ptr<librbd::Image>> Cluster::open(const ImageName& name, const std::string& snap) {
  EVAC_ASSIGN_OR_RETURN(librados::IoCtx * io, pool(name.pool));
  auto image = std::make_unique<librbd::Image>();
  int r = snap.empty() ? rbd_.open(*io, *image, name.image.c_str())
                       : rbd_.open_read_only(*io, *image, name.image.c_str(), snap.c_str());
  if (r < 0) return error(r, "opening image " + name.spec() + (snap.empty() ? "" : "@" + snap));
  return image;
}

Result<std::vector<Snapshot>> Cluster::snapshots(librbd::Image& image, const ImageName& name) {
  std::vector<librbd::snap_info_t> infos;
  int r = image.snap_list(infos);
  if (r < 0) return error(r, "listing the snapshots of " + name.spec());
  std::vector<Snapshot> out;
  for (const auto& info : infos) {
    Snapshot s;
    s.id = info.id;
    s.name = info.name;
    librbd::snap_namespace_type_t type;
    if (image.snap_get_namespace_type(info.id, &type) < 0) continue;
    s.user = type == RBD_SNAP_NAMESPACE_TYPE_USER;
    if (type == RBD_SNAP_NAMESPACE_TYPE_MIRROR) {
      librbd::snap_mirror_namespace_t m;
      if (image.snap_get_mirror_namespace(info.id, &m, sizeof m) < 0) continue;
      s.mirror = true;
      s.mirror_complete = m.complete;
      s.mirror_non_primary =
          m.state == RBD_SNAP_MIRROR_STATE_NON_PRIMARY || m.state == RBD_SNAP_MIRROR_STATE_NON_PRIMARY_DEMOTED;
      s.demoted = m.state == RBD_SNAP_MIRROR_STATE_PRIMARY_DEMOTED || m.state == RBD_SNAP_MIRROR_STATE_NON_PRIMARY_DEMOTED;
    }
    out.push_back(std::move(s));
  }
  return out;
}

}  // namespace evac::rbd
