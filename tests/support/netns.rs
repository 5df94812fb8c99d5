//! Several places on one machine: network namespaces the test makes itself (it runs as
//! root, as CI does). A `core` namespace holds a bridge with the store and the targets; each
//! location is a namespace with a veth into that bridge. Every address lives inside these
//! namespaces (10.X.Y.0/24, drawn per net so parallel tests never meet); everything is
//! deleted when the [`Net`] is dropped. Where namespaces cannot be made, [`Net::new`] panics
//! saying why: the test fails, it never skips.

use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};

/// A core namespace and `n` location namespaces bridged to it.
pub struct Net {
    pub core: String,
    pub locations: Vec<String>,
    /// The first three octets of the subnet: `10.X.Y`.
    prefix: String,
    /// The location end of each veth (in the location's namespace).
    veths: Vec<String>,
}

static NETS: AtomicU32 = AtomicU32::new(0);

/// Runs `ip args...`, panicking with its output when it fails.
pub fn ip(args: &[&str]) -> Output {
    let out = Command::new("ip")
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run ip (iproute2): {e}"));
    assert!(
        out.status.success(),
        "ip {} failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

impl Net {
    /// Makes the namespaces; panics, naming the reason, when it cannot (not root, no
    /// iproute2, no veth or bridge support).
    pub fn new(n: usize) -> Net {
        let uid = Command::new("id")
            .arg("-u")
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned());
        assert_eq!(
            uid.as_deref().unwrap_or(""),
            "0",
            "network namespaces need root (ip netns add): run the tests as root, as CI does"
        );
        let k = NETS.fetch_add(1, Ordering::Relaxed);
        let tag = format!("{:04x}", (std::process::id() as u32 ^ (k << 12)) & 0xffff);
        let prefix = format!("10.{}.{}", 100 + std::process::id() % 100, 10 + k);
        let core = format!("p14c{tag}");
        let mut net = Net {
            core: core.clone(),
            locations: Vec::new(),
            prefix,
            veths: Vec::new(),
        };
        ip(&["netns", "add", &core]);
        ip(&["-n", &core, "link", "set", "lo", "up"]);
        ip(&["-n", &core, "link", "add", "br0", "type", "bridge"]);
        ip(&["-n", &core, "link", "set", "br0", "up"]);
        for host in [1, 2, 3] {
            let a = format!("{}/24", net.core_ip(host));
            ip(&["-n", &core, "addr", "add", &a, "dev", "br0"]);
        }
        for i in 0..n {
            let ns = format!("p14l{tag}{i}");
            let (v, vc) = (format!("v{tag}{i}"), format!("v{tag}{i}c"));
            ip(&["netns", "add", &ns]);
            net.locations.push(ns.clone());
            ip(&["-n", &ns, "link", "set", "lo", "up"]);
            ip(&["link", "add", &v, "type", "veth", "peer", "name", &vc]);
            ip(&["link", "set", &v, "netns", &ns]);
            ip(&["link", "set", &vc, "netns", &core]);
            ip(&["-n", &core, "link", "set", &vc, "master", "br0"]);
            ip(&["-n", &core, "link", "set", &vc, "up"]);
            let a = format!("{}/24", net.location_ip(i));
            ip(&["-n", &ns, "addr", "add", &a, "dev", &v]);
            ip(&["-n", &ns, "link", "set", &v, "up"]);
            net.veths.push(v);
        }
        net
    }

    /// An address on the core's bridge: `.1` the store and the mail relay, `.2` the
    /// targets, `.3` a reference.
    pub fn core_ip(&self, host: u8) -> String {
        format!("{}.{host}", self.prefix)
    }

    /// Location `i`'s address.
    pub fn location_ip(&self, i: usize) -> String {
        format!("{}.{}", self.prefix, 11 + i)
    }

    /// `cmd args...` inside namespace `ns`.
    pub fn command(ns: &str, cmd: &str) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", ns, cmd]);
        c
    }

    /// Location `i` can no longer reach `addr` (a blackhole route), or can again.
    pub fn blackhole(&self, i: usize, addr: &str, on: bool) {
        let ns = &self.locations[i];
        let route = format!("{addr}/32");
        ip(&[
            "-n",
            ns,
            "route",
            if on { "add" } else { "del" },
            "blackhole",
            &route,
        ]);
    }

    /// Location `i` cut off entirely (its link down), or back.
    pub fn cut(&self, i: usize, off: bool) {
        ip(&[
            "-n",
            &self.locations[i],
            "link",
            "set",
            &self.veths[i],
            if off { "down" } else { "up" },
        ]);
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        for ns in self.locations.iter().chain(std::iter::once(&self.core)) {
            let _ = Command::new("ip").args(["netns", "del", ns]).output();
        }
    }
}
