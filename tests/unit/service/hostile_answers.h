// The fixture the site service's and the plan service's cases of a paired
// site's answers of the wrong shape share.
#pragma once

#include <map>
#include <memory>
#include <string>

#include "fakes/fake_scripted_peer_transport.h"
#include "unit/two_sites.h"

namespace evac::testing {

// Site-a's store and VMs, talking to a scripted site-b.
class HostileAnswersTest : public TwoSitesTest {
 protected:
  std::unique_ptr<SiteService> scripted_site_a() {
    auto provider = std::make_unique<FakeComputeProvider>("kvm-a");
    provider->add_network("prod");
    provider->add_network("backup");
    provider->add_pool("images", "/a/images");
    provider->add_vm(make_vm("web01", "u-web01", {{"vda", "/a/images/web01.qcow2", "qcow2", "virtio", "disk", "images"}},
                             {{"52:54:00:00:00:01", "prod", "network", "virtio"}}));
    std::map<std::string, std::unique_ptr<ComputeProvider>> providers;
    providers.emplace("kvm-a", std::move(provider));
    return std::make_unique<SiteService>(SiteIdentity{"site-a", "https://a:1", "sha256//pin-a"}, *a_.store,
                                         std::move(providers), peer_, [this] { return now_; });
  }
  // Site-b's real inventory, as it answers it.
  nlohmann::json inventory_of_b() {
    auto caller = b_.store->find_peer("site-a");
    auto inventory = b_.service->handle_peer_inventory(**caller);
    EXPECT_TRUE(inventory.is_ok());
    return *inventory;
  }
  FakeScriptedPeerTransport peer_;
};

}  // namespace evac::testing
