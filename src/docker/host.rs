//! Facts about the host the swarm runs on that change how ccci deploys, read from the kernel
//! rather than asked of docker.

use std::path::Path;

/// True when the kernel has IPVS, which the swarm's service virtual IPs and routing mesh need.
/// Without it (some VMs and sandboxes), a service's name resolves to a virtual IP that answers
/// "no route to host", so services must be deployed with `endpoint_mode: dnsrr`.
pub fn has_ipvs() -> bool {
    has_ipvs_under(Path::new("/"))
}

/// [`has_ipvs`] with the kernel's `/proc` and `/sys` under `root`, for tests.
pub fn has_ipvs_under(root: &Path) -> bool {
    root.join("proc/net/ip_vs").exists() || root.join("sys/module/ip_vs").exists()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipvs_is_seen_in_proc_or_sys() {
        let root = tempfile::tempdir().unwrap();
        assert!(!has_ipvs_under(root.path()));
        std::fs::create_dir_all(root.path().join("sys/module/ip_vs")).unwrap();
        assert!(has_ipvs_under(root.path()));
        let other = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(other.path().join("proc/net")).unwrap();
        std::fs::write(other.path().join("proc/net/ip_vs"), "").unwrap();
        assert!(has_ipvs_under(other.path()));
    }
}
