// RAII owners for libvirt objects, so every early return frees what it holds.
//
// Internal to the libvirt provider: nothing outside src/providers/libvirt
// includes libvirt's headers.
#pragma once

#include <libvirt/libvirt.h>

#include <cstdlib>
#include <memory>
#include <type_traits>
#include <vector>

namespace evac::libvirt {

struct ConnectRelease {
  // virConnectClose drops one reference; the connection closes with the last.
  void operator()(virConnectPtr c) const { virConnectClose(c); }
};
struct DomainRelease {
  void operator()(virDomainPtr d) const { virDomainFree(d); }
};
struct NetworkRelease {
  void operator()(virNetworkPtr n) const { virNetworkFree(n); }
};
struct StoragePoolRelease {
  void operator()(virStoragePoolPtr p) const { virStoragePoolFree(p); }
};
struct StorageVolRelease {
  void operator()(virStorageVolPtr v) const { virStorageVolFree(v); }
};
struct InterfaceRelease {
  void operator()(virInterfacePtr i) const { virInterfaceFree(i); }
};
struct MallocRelease {
  void operator()(void* p) const { std::free(p); }
};

using ConnectHandle = std::unique_ptr<std::remove_pointer_t<virConnectPtr>, ConnectRelease>;
using DomainHandle = std::unique_ptr<std::remove_pointer_t<virDomainPtr>, DomainRelease>;
using NetworkHandle = std::unique_ptr<std::remove_pointer_t<virNetworkPtr>, NetworkRelease>;
using StoragePoolHandle = std::unique_ptr<std::remove_pointer_t<virStoragePoolPtr>, StoragePoolRelease>;
using StorageVolHandle = std::unique_ptr<std::remove_pointer_t<virStorageVolPtr>, StorageVolRelease>;
using InterfaceHandle = std::unique_ptr<std::remove_pointer_t<virInterfacePtr>, InterfaceRelease>;
// Strings that libvirt allocates and the caller frees (XML descriptions).
using LibvirtString = std::unique_ptr<char, MallocRelease>;

// Takes ownership of an array filled by a virConnectListAll* call: every
// element and the array itself. `count` is that call's return value.
template <typename Handle, typename Raw>
std::vector<Handle> adopt_list(Raw* array, int count) {
  std::vector<Handle> owned;
  if (array == nullptr) return owned;
  owned.reserve(count > 0 ? static_cast<std::size_t>(count) : 0);
  for (int i = 0; i < count; ++i) owned.emplace_back(array[i]);
  std::free(array);
  return owned;
}

}  // namespace evac::libvirt
