//! A distribution registry (Debian's `docker-registry`) on a free loopback port, and
//! `skopeo` to push layouts into it, for tests. Both must be installed (`scripts/test.sh`
//! installs them): a missing one is an error, never a skipped test.

use std::fs;
use std::io;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The registry binary of Debian's `docker-registry` package.
pub const REGISTRY_BINARY: &str = "docker-registry";

/// A registry process serving `127.0.0.1:<port>` from a temporary directory; stopped when
/// dropped. Its access log is kept, to count what clients fetched.
#[derive(Debug)]
pub struct LocalRegistry {
    child: Child,
    dir: tempfile::TempDir,
    /// `127.0.0.1:<port>`, the registry part of references to it.
    pub addr: String,
}

impl LocalRegistry {
    /// Starts a registry; with `htpasswd` (a file of `user:bcrypt hash` lines), it asks
    /// for basic auth.
    pub fn start(htpasswd: Option<&Path>) -> io::Result<LocalRegistry> {
        let dir = tempfile::tempdir()?;
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let addr = format!("127.0.0.1:{port}");
        let config = dir.path().join("config.yml");
        fs::write(&config, config_yaml(dir.path(), &addr, htpasswd))?;
        let log = fs::File::create(dir.path().join("access.log"))?;
        let child = Command::new(REGISTRY_BINARY)
            .arg("serve")
            .arg(&config)
            .stdout(log)
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| {
                io::Error::new(
                    e.kind(),
                    format!("{REGISTRY_BINARY}: {e} (apt-get install docker-registry)"),
                )
            })?;
        let registry = LocalRegistry { child, dir, addr };
        registry.wait_listening()?;
        Ok(registry)
    }

    /// Pushes the image tagged `tag` in the OCI layout `layout` to `<addr>/<target>`
    /// (`repo:tag`) with skopeo, as it is, with basic credentials if given.
    pub fn push(
        &self,
        layout: &Path,
        tag: &str,
        target: &str,
        creds: Option<&str>,
    ) -> io::Result<()> {
        let creds = creds.map(|creds| format!("--dest-creds={creds}"));
        self.skopeo_copy(layout, tag, target, creds.as_slice())
    }

    /// Like [`LocalRegistry::push`] without credentials, converted to Docker's image
    /// manifest (schema 2) and media types, as Docker Hub serves most images.
    pub fn push_docker_format(&self, layout: &Path, tag: &str, target: &str) -> io::Result<()> {
        self.skopeo_copy(layout, tag, target, &["--format=v2s2".to_owned()])
    }

    /// Like [`LocalRegistry::push`] without credentials, for an image index: every
    /// image it lists is pushed.
    pub fn push_all(&self, layout: &Path, tag: &str, target: &str) -> io::Result<()> {
        self.skopeo_copy(layout, tag, target, &["--all".to_owned()])
    }

    /// Writes a one-layer image of the host's `/bin/busybox` (at `bin/busybox`, with
    /// `PATH=/bin`) and `files` into a layout at `layout`, pushes it as `target`
    /// (`repo:tag`), and returns its reference (`<addr>/<target>`).
    pub fn push_busybox_image(
        &self,
        layout: &Path,
        files: &[(&str, &[u8], u32)],
        target: &str,
    ) -> io::Result<String> {
        let busybox = fs::read("/bin/busybox")?;
        let mut all = vec![("bin/busybox", busybox.as_slice(), 0o755)];
        all.extend_from_slice(files);
        let config = crate::ImageConfig {
            env: vec!["PATH=/bin".into()],
            ..crate::ImageConfig::default()
        };
        super::write_layout(layout, &all, &config, Some("v1"))?;
        self.push(layout, "v1", target, None)?;
        Ok(format!("{}/{target}", self.addr))
    }

    fn skopeo_copy(
        &self,
        layout: &Path,
        tag: &str,
        target: &str,
        extra: &[String],
    ) -> io::Result<()> {
        let output = Command::new("skopeo")
            .args(["copy", "--quiet", "--dest-tls-verify=false"])
            .args(extra)
            .arg(format!("oci:{}:{tag}", layout.display()))
            .arg(format!("docker://{}/{target}", self.addr))
            .output()
            .map_err(|e| {
                io::Error::new(e.kind(), format!("skopeo: {e} (apt-get install skopeo)"))
            })?;
        if !output.status.success() {
            return Err(io::Error::other(format!(
                "skopeo copy failed: {}",
                String::from_utf8_lossy(&output.stderr)
            )));
        }
        Ok(())
    }

    /// How many GETs of `kind` (`blobs` or `manifests`) the registry answered with 200
    /// so far, from its access log.
    pub fn gets(&self, kind: &str) -> io::Result<usize> {
        let log = fs::read_to_string(self.dir.path().join("access.log"))?;
        let path = format!("/{kind}/");
        Ok(log
            .lines()
            .filter(|line| {
                line.contains("\"GET /v2/") && line.contains(&path) && line.contains("\" 200 ")
            })
            .count())
    }

    /// The data file of blob `digest` (`sha256:<hex>`) in the registry's storage.
    pub fn blob_file(&self, digest: &str) -> PathBuf {
        let hex = digest.trim_start_matches("sha256:");
        self.dir
            .path()
            .join("storage/docker/registry/v2/blobs/sha256")
            .join(&hex[..2])
            .join(hex)
            .join("data")
    }

    fn wait_listening(&self) -> io::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(&self.addr).is_err() {
            if Instant::now() > deadline {
                return Err(io::Error::other(format!(
                    "{REGISTRY_BINARY} did not listen on {}",
                    self.addr
                )));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(())
    }
}

impl Drop for LocalRegistry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn config_yaml(dir: &Path, addr: &str, htpasswd: Option<&Path>) -> String {
    let auth = htpasswd.map_or(String::new(), |file| {
        format!(
            "auth:\n  htpasswd:\n    realm: berth-test\n    path: {}\n",
            file.display()
        )
    });
    format!(
        "version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: false\n\
         storage:\n  filesystem:\n    rootdirectory: {}\n\
         http:\n  addr: {addr}\n{auth}",
        dir.join("storage").display()
    )
}
