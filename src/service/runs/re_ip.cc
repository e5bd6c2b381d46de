#include "service/runs/re_ip.h"

#include <algorithm>

namespace evac {

using nlohmann::json;

std::string guest_config_rewriter(std::string_view root) {
  // Where Linux distributions keep a NIC's static addresses: ifupdown,
  // netplan, NetworkManager's keyfiles, the Red Hat ifcfg files and
  // systemd-networkd. Whole addresses only: 10.77.0.1 is not in 10.77.0.11.
  const std::string r(root);
  const std::string files = r + "/etc/network/interfaces " + r + "/etc/network/interfaces.d/* " + r + "/etc/netplan/*.yaml " +
                            r + "/etc/NetworkManager/system-connections/* " + r + "/etc/sysconfig/network-scripts/ifcfg-* " +
                            r + "/etc/systemd/network/*.network";
  const std::string edge = "[^0-9A-Fa-f:.]";
  const std::string match = "(^|" + edge + ")$p(" + edge + "|$)";
  // Each substitution runs twice: a match takes the character after the
  // address, which the next address on the line may need as its own edge.
  return "evac_persist() { p=$(printf %s \"$1\" | sed 's/[.]/\\\\./g'); for f in " + files +
         "; do if [ -f \"$f\" ] && grep -qE \"" + match + "\" \"$f\"; then sed -i -E -e \"s/" + match +
         "/\\1$2\\2/g\" -e \"s/" + match + "/\\1$2\\2/g\" \"$f\" || return 1; echo \"persisted $f\"; fi; done; }\n";
}

Result<ReIpScript> re_ip_script(const std::string& vm_name, const std::vector<NicInfo>& nics,
                                const std::map<std::string, std::string>& source_networks,
                                const std::vector<IpRule>& rules, const std::vector<GuestInterface>& interfaces) {
  ReIpScript out;
  for (const auto& nic : nics) {
    const std::string here = attachment_of(nic).key();
    auto src = source_networks.find(here);
    const std::string network = src == source_networks.end() ? here : src->second;
    const std::string& mac = nic.mac;  // lower case, like GuestInterface::mac
    auto iface = std::find_if(interfaces.begin(), interfaces.end(), [&](const GuestInterface& i) { return i.mac == mac; });
    for (const auto& rule : rules) {
      // A rule names the protected site's network, or its bridge or device
      // by its key ("bridge:br0") or bare name.
      if (rule.network != network && rule.network != parse_attachment(network).name) continue;
      if (iface == interfaces.end())
        return failed_precondition("the guest of " + vm_name + " shows no interface with MAC " + mac + " (network '" +
                                       network + "')",
                                   "check the guest's network drivers, or drop the rule");
      std::vector<std::string> addresses = iface->ipv4;
      addresses.insert(addresses.end(), iface->ipv6.begin(), iface->ipv6.end());
      for (const auto& address : addresses) {
        auto moved = map_address(rule, address);
        if (!moved) continue;
        // An IPv6 route needs the family said (ip assumes IPv4 for `default`).
        const std::string ip = moved->find(':') == std::string::npos ? "ip " : "ip -6 ";
        auto bare = [](const std::string& a) { return a.substr(0, a.find('/')); };
        // The guest's configuration files first, then the running address: a
        // step run again after a crash finds the address still in `from`
        // until the files are done, and re-runs both.
        out.script += "evac_persist " + bare(address) + " " + bare(*moved) + " && " + ip + "addr del " + address +
                      " dev " + iface->name + " && " + ip + "addr add " + *moved + " dev " + iface->name + " && ";
        if (!rule.gateway.empty()) {
          // The old default gateway, as the guest routes now, is what its
          // files name; it is replaced there too.
          out.script += "g=$(" + ip + "route show default 2>/dev/null | sed -n 's/^default via \\([^ ]*\\).*/\\1/p' | head -n 1) && "
                        "{ [ -z \"$g\" ] || [ \"$g\" = " + rule.gateway + " ] || evac_persist \"$g\" " + rule.gateway +
                        "; } && " + ip + "route replace default via " + rule.gateway + " && ";
        }
        if (!rule.dns.empty()) {
          out.script += "{ ";
          for (const auto& d : rule.dns) out.script += "echo nameserver " + d + "; ";
          out.script += "} > /etc/resolv.conf && ";
        }
        out.changed.push_back(json{{"interface", iface->name}, {"mac", mac}, {"from", address}, {"to", *moved}});
      }
    }
  }
  if (!out.script.empty()) out.script = guest_config_rewriter("") + out.script + "true";
  return out;
}

}  // namespace evac
