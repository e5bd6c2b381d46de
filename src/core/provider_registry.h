// Compute providers by kind. The composition root (evacd) registers each
// kind it was built with, and everything else asks the registry for a
// provider by the kind its configuration names, so the core and the services
// never include a backend's headers. libvirt's driver table is the model
// (src/driver-hypervisor.h, with the test driver's testRegister adding its
// table at start-up).
//
// Register before serving: add() is meant for start-up, while one thread
// runs; create() and kinds() may then be called from any thread.
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "core/compute_provider.h"
#include "core/status.h"

namespace evac {

// Builds a provider from its configuration, unconnected; a configuration it
// cannot use is refused with kInvalidArgument.
using ProviderFactory = std::function<Result<std::unique_ptr<ComputeProvider>>(const ProviderConfig&)>;

class ProviderRegistry {
 public:
  static ProviderRegistry& instance();

  // Adding a kind again replaces its factory, so registering twice is harmless.
  void add(const std::string& kind, ProviderFactory factory);
  // A kind nobody registered is kInvalidArgument naming the kinds there are.
  Result<std::unique_ptr<ComputeProvider>> create(const ProviderConfig& config) const;
  // The registered kinds, sorted.
  std::vector<std::string> kinds() const;

 private:
  std::map<std::string, ProviderFactory> factories_;
};

}  // namespace evac
