//! The OCI runtime spec (config.json) of one container, written with the `oci-spec` crate:
//! runc's defaults (namespaces, masked and read-only paths, capabilities, no new
//! privileges) plus what the booking and the image say, and the container's GPU device
//! nodes.

use super::devices::DeviceNode;
use berth_core::Resources;
use oci_spec::OciSpecError;
use oci_spec::runtime::{
    LinuxCpuBuilder, LinuxDevice, LinuxDeviceBuilder, LinuxDeviceCgroup, LinuxDeviceCgroupBuilder,
    LinuxDeviceType, LinuxMemoryBuilder, LinuxNamespaceType, LinuxPidsBuilder,
    LinuxResourcesBuilder, Mount, MountBuilder, RootBuilder, Spec, UserBuilder,
};
use std::path::{Path, PathBuf};

/// The CFS period every container gets, in microseconds (100 ms, the kernel's default).
pub const CPU_PERIOD_US: u64 = 100_000;
/// The fewest CPU shares the kernel accepts.
const MIN_CPU_SHARES: u64 = 2;

/// Everything that varies between containers' specs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// The command, program first.
    pub args: Vec<String>,
    /// `NAME=value` pairs.
    pub env: Vec<String>,
    /// The working directory inside the container.
    pub cwd: String,
    /// The uid and gid it runs as.
    pub user: (u32, u32),
    /// The image's root filesystem (shared, mounted read-only).
    pub rootfs: PathBuf,
    /// The container's own writable directory on the host, mounted at `/work`.
    pub work: PathBuf,
    /// Its hostname.
    pub hostname: String,
    /// Its cgroup path.
    pub cgroup: String,
    /// What it booked.
    pub resources: Resources,
    /// The most processes and threads it may have.
    pub pids_limit: i64,
    /// Share the host's network namespace instead of getting an own one.
    pub host_network: bool,
    /// Host directories or files bound into the container.
    pub mounts: Vec<BindMount>,
    /// The host's device nodes it is given (its GPUs'), created in its `/dev` and allowed
    /// by its device cgroup.
    pub devices: Vec<DeviceNode>,
}

/// A host path bound into every container of a worker (a dataset, a cache, a socket): the
/// worker's operator chooses them, never a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BindMount {
    /// The path on the host.
    pub source: PathBuf,
    /// Where it appears in the container (absolute).
    pub destination: String,
    /// Mounted read-only.
    pub read_only: bool,
}

impl std::str::FromStr for BindMount {
    type Err = String;

    /// `HOST:CONTAINER` or `HOST:CONTAINER:ro`, both paths absolute.
    fn from_str(value: &str) -> Result<BindMount, String> {
        let parts: Vec<&str> = value.split(':').collect();
        let (source, destination, read_only) = match parts.as_slice() {
            [source, destination] => (*source, *destination, false),
            [source, destination, "ro"] => (*source, *destination, true),
            [source, destination, "rw"] => (*source, *destination, false),
            _ => {
                return Err(format!(
                    "mount {value:?}: expected HOST:CONTAINER or HOST:CONTAINER:ro"
                ));
            }
        };
        let absolute = |p: &str| p.starts_with('/') && !p.split('/').any(|c| c == "..");
        if !absolute(source) || !absolute(destination) || destination == "/" {
            return Err(format!(
                "mount {value:?}: both paths must be absolute, without `..`, and the container path not /"
            ));
        }
        Ok(BindMount {
            source: PathBuf::from(source),
            destination: destination.to_owned(),
            read_only,
        })
    }
}

/// The CPU shares, the CFS quota and the period for `millicores`: 1000 millicores are one
/// whole CPU per period, and shares keep Docker's scale (1024 per CPU).
pub fn cpu_limits(millicores: u64) -> (u64, i64, u64) {
    let shares = (millicores.saturating_mul(1024) / 1000).max(MIN_CPU_SHARES);
    let quota = millicores.saturating_mul(CPU_PERIOD_US) / 1000;
    (
        shares,
        i64::try_from(quota).unwrap_or(i64::MAX),
        CPU_PERIOD_US,
    )
}

/// The memory limit in bytes for `mib` MiB: exactly what was booked, no padding.
pub fn memory_limit(mib: u64) -> i64 {
    i64::try_from(mib.saturating_mul(1024 * 1024)).unwrap_or(i64::MAX)
}

/// The spec for `plan`.
pub fn build(plan: &Plan) -> Result<Spec, OciSpecError> {
    let mut spec = Spec::default();
    spec.set_hostname(Some(plan.hostname.clone()));
    spec.set_root(Some(
        RootBuilder::default()
            .path(plan.rootfs.clone())
            .readonly(true)
            .build()?,
    ));
    let mut process = spec.process().clone().unwrap_or_default();
    process.set_terminal(Some(false));
    process.set_args(Some(plan.args.clone()));
    process.set_env(Some(plan.env.clone()));
    process.set_cwd(PathBuf::from(&plan.cwd));
    process.set_no_new_privileges(Some(true));
    process.set_user(
        UserBuilder::default()
            .uid(plan.user.0)
            .gid(plan.user.1)
            .build()?,
    );
    spec.set_process(Some(process));
    spec.set_mounts(Some(mounts(plan)?));
    let mut linux = spec.linux().clone().unwrap_or_default();
    let mut namespaces = linux.namespaces().clone().unwrap_or_default();
    if plan.host_network {
        namespaces.retain(|ns| ns.typ() != LinuxNamespaceType::Network);
    }
    linux.set_namespaces(Some(namespaces));
    linux.set_cgroups_path(Some(PathBuf::from(&plan.cgroup)));
    linux.set_resources(Some(resources(plan)?));
    let mut devices = linux.devices().clone().unwrap_or_default();
    for node in &plan.devices {
        devices.push(linux_device(node)?);
    }
    linux.set_devices(Some(devices));
    spec.set_linux(Some(linux));
    Ok(spec)
}

fn resources(plan: &Plan) -> Result<oci_spec::runtime::LinuxResources, OciSpecError> {
    let (shares, quota, period) = cpu_limits(plan.resources.cpu_millicores);
    let memory = memory_limit(plan.resources.memory_mib);
    // Deny every device; runc adds back the ones every container needs (null, zero,
    // random, tty, ...); then allow the container's own GPU nodes, later rules winning.
    let deny_all = LinuxDeviceCgroupBuilder::default()
        .allow(false)
        .access("rwm")
        .build()?;
    let mut rules = vec![deny_all];
    for node in &plan.devices {
        rules.push(allow(node)?);
    }
    LinuxResourcesBuilder::default()
        .cpu(
            LinuxCpuBuilder::default()
                .shares(shares)
                .quota(quota)
                .period(period)
                .build()?,
        )
        // swap = limit: memory and swap together may not exceed the booking (no swap).
        .memory(
            LinuxMemoryBuilder::default()
                .limit(memory)
                .swap(memory)
                .build()?,
        )
        .pids(LinuxPidsBuilder::default().limit(plan.pids_limit).build()?)
        .devices(rules)
        .build()
}

fn linux_device(node: &DeviceNode) -> Result<LinuxDevice, OciSpecError> {
    LinuxDeviceBuilder::default()
        .path(&node.path)
        .typ(LinuxDeviceType::C)
        .major(node.major)
        .minor(node.minor)
        .file_mode(node.mode)
        .uid(node.uid)
        .gid(node.gid)
        .build()
}

fn allow(node: &DeviceNode) -> Result<LinuxDeviceCgroup, OciSpecError> {
    LinuxDeviceCgroupBuilder::default()
        .allow(true)
        .typ(LinuxDeviceType::C)
        .major(node.major)
        .minor(node.minor)
        .access("rwm")
        .build()
}

fn mounts(plan: &Plan) -> Result<Vec<Mount>, OciSpecError> {
    let mut mounts: Vec<Mount> = Spec::default().mounts().clone().unwrap_or_default();
    if plan.host_network {
        // sysfs cannot be mounted without an own network namespace: bind the host's.
        mounts.retain(|m| m.destination() != Path::new("/sys"));
        mounts.push(bind(
            "/sys",
            Path::new("/sys"),
            &["rbind", "nosuid", "noexec", "nodev", "ro"],
        )?);
        for file in ["/etc/resolv.conf", "/etc/hosts"] {
            if Path::new(file).exists() {
                mounts.push(bind(file, Path::new(file), &["bind", "ro"])?);
            }
        }
    }
    mounts.push(bind(
        "/work",
        &plan.work,
        &["rbind", "rw", "nosuid", "nodev"],
    )?);
    // A tmpfs is charged to the container's memory cgroup, so /tmp cannot outgrow the booking.
    let size = format!("size={}", memory_limit(plan.resources.memory_mib));
    mounts.push(
        MountBuilder::default()
            .destination("/tmp")
            .typ("tmpfs")
            .source("tmpfs")
            .options(vec![
                "nosuid".to_owned(),
                "nodev".to_owned(),
                "mode=1777".to_owned(),
                size,
            ])
            .build()?,
    );
    // The operator's mounts come last, so one under /tmp or /work is not hidden by those.
    for mount in &plan.mounts {
        let mode = if mount.read_only { "ro" } else { "rw" };
        mounts.push(bind(
            &mount.destination,
            &mount.source,
            &["rbind", mode, "nosuid", "nodev"],
        )?);
    }
    Ok(mounts)
}

fn bind(destination: &str, source: &Path, options: &[&str]) -> Result<Mount, OciSpecError> {
    MountBuilder::default()
        .destination(destination)
        .typ("bind")
        .source(source)
        .options(options.iter().map(|o| (*o).to_owned()).collect::<Vec<_>>())
        .build()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // Tests may unwrap.
mod tests {
    use super::*;

    fn plan() -> Plan {
        Plan {
            args: vec!["sh".into(), "-c".into(), "true".into()],
            env: vec!["PATH=/bin".into()],
            cwd: "/work".into(),
            user: (65534, 65534),
            rootfs: "/images/x/rootfs".into(),
            work: "/bundles/a/work".into(),
            hostname: "c-1".into(),
            cgroup: "/berth/w/a".into(),
            resources: Resources::new(250, 64, 0),
            pids_limit: 512,
            host_network: false,
            mounts: vec!["/data:/data:ro".parse().unwrap()],
            devices: Vec::new(),
        }
    }

    #[test]
    fn bind_mounts_parse_and_refuse_what_is_unsafe() {
        let mount: BindMount = "/srv/data:/data:ro".parse().unwrap();
        assert_eq!(mount.source, PathBuf::from("/srv/data"));
        assert_eq!(mount.destination, "/data");
        assert!(mount.read_only);
        assert!(!"/a:/b".parse::<BindMount>().unwrap().read_only);
        for bad in ["a:/b", "/a:b", "/a", "/a:/", "/a:/b:x", "/a:/b/../etc"] {
            assert!(bad.parse::<BindMount>().is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn cpu_limits_follow_the_millicores() {
        assert_eq!(cpu_limits(250), (256, 25_000, 100_000));
        assert_eq!(cpu_limits(1000), (1024, 100_000, 100_000));
        assert_eq!(cpu_limits(2500), (2560, 250_000, 100_000));
        assert_eq!(cpu_limits(1), (2, 100, 100_000));
        assert_eq!(memory_limit(64), 67_108_864);
    }

    #[test]
    fn the_spec_enforces_the_booking_and_isolates() {
        let spec = build(&plan()).unwrap();
        let json = serde_json::to_value(&spec).unwrap();
        let resources = &json["linux"]["resources"];
        assert_eq!(resources["memory"]["limit"], 67_108_864);
        assert_eq!(resources["memory"]["swap"], 67_108_864);
        assert_eq!(resources["cpu"]["quota"], 25_000);
        assert_eq!(resources["cpu"]["period"], 100_000);
        assert_eq!(resources["cpu"]["shares"], 256);
        assert_eq!(resources["pids"]["limit"], 512);
        assert_eq!(resources["devices"][0]["allow"], false);
        assert_eq!(json["root"]["readonly"], true);
        assert_eq!(json["process"]["user"]["uid"], 65534);
        assert_eq!(json["process"]["noNewPrivileges"], true);
        assert_eq!(json["process"]["terminal"], false);
        assert_eq!(json["linux"]["cgroupsPath"], "/berth/w/a");
        let namespaces: Vec<&str> = json["linux"]["namespaces"]
            .as_array()
            .unwrap()
            .iter()
            .map(|ns| ns["type"].as_str().unwrap())
            .collect();
        for ns in ["pid", "mount", "ipc", "uts", "network"] {
            assert!(namespaces.contains(&ns), "{ns} missing from {namespaces:?}");
        }
        assert!(!json["linux"]["maskedPaths"].as_array().unwrap().is_empty());
        assert!(
            !json["linux"]["readonlyPaths"]
                .as_array()
                .unwrap()
                .is_empty()
        );
        let work = json["mounts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["destination"] == "/work")
            .unwrap();
        assert_eq!(work["source"], "/bundles/a/work");
        let data = json["mounts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["destination"] == "/data")
            .unwrap();
        assert!(data["options"].as_array().unwrap().contains(&"ro".into()));
    }

    #[test]
    fn one_whole_gpu_of_two_gets_its_node_and_the_control_node_only() {
        let dir = tempfile::tempdir().unwrap();
        super::super::devices::make_fake_nodes(
            dir.path(),
            &[("nvidia0", 0), ("nvidia1", 1), ("nvidiactl", 255)],
        );
        let spec = build(&Plan {
            devices: super::super::devices::gpu_nodes(dir.path(), &[0]),
            ..plan()
        })
        .unwrap();
        let json = serde_json::to_value(&spec).unwrap();
        let devices: Vec<(&str, &str, i64, i64)> = json["linux"]["devices"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| {
                let number = |key: &str| d[key].as_i64().unwrap();
                let path = d["path"].as_str().unwrap();
                (
                    path,
                    d["type"].as_str().unwrap(),
                    number("major"),
                    number("minor"),
                )
            })
            .collect();
        assert_eq!(
            devices,
            [
                ("/dev/nvidia0", "c", 195, 0),
                ("/dev/nvidiactl", "c", 195, 255)
            ]
        );
        let rules = json["linux"]["resources"]["devices"].as_array().unwrap();
        assert_eq!(rules.len(), 3, "{rules:?}");
        assert_eq!(rules[0]["allow"], false);
        for (rule, minor) in rules[1..].iter().zip([0, 255]) {
            assert_eq!(rule["allow"], true);
            assert_eq!(rule["type"], "c");
            assert_eq!(rule["major"], 195);
            assert_eq!(rule["minor"], minor);
            assert_eq!(rule["access"], "rwm");
        }
    }

    #[test]
    fn no_gpu_no_device_rule_but_the_deny() {
        let json = serde_json::to_value(build(&plan()).unwrap()).unwrap();
        let rules = json["linux"]["resources"]["devices"].as_array().unwrap();
        assert_eq!(rules.len(), 1);
        let nodes = json["linux"]["devices"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        assert!(
            nodes
                .iter()
                .all(|n| !n["path"].as_str().unwrap().contains("nvidia"))
        );
    }

    #[test]
    fn host_networking_drops_the_network_namespace_only() {
        let spec = build(&Plan {
            host_network: true,
            ..plan()
        })
        .unwrap();
        let json = serde_json::to_value(&spec).unwrap();
        let namespaces = json["linux"]["namespaces"].as_array().unwrap();
        assert!(namespaces.iter().all(|ns| ns["type"] != "network"));
        assert!(namespaces.iter().any(|ns| ns["type"] == "pid"));
        let sys = json["mounts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["destination"] == "/sys")
            .unwrap();
        assert_eq!(sys["type"], "bind");
    }
}
