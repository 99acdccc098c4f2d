//! A Docker daemon of the test's own ([`Docker::start`]): `dockerd` with its data, sockets
//! and state in a temporary directory, no bridge and no iptables rules (containers use the
//! host's network, on 127.0.0.1 only), stopped and removed on drop. No image can be pulled
//! here, so [`Docker::import_base`] makes the runtime base image (`debian:bookworm-slim` in
//! the Dockerfile) from a `debootstrap --variant=minbase bookworm` tree, cached as a tarball
//! between runs ([`base_tarball`]).
//!
//! Needs root, `dockerd`, a `docker` client, `docker-compose` and (until the tarball is
//! cached) `debootstrap`: Debian's `docker.io`, `docker-compose` and `debootstrap`, which
//! `deploy/prereqs.sh --test` installs. [`Docker::start`] says what is missing.

use std::path::Path;
use std::path::PathBuf;
use std::process::Child;
use std::process::Command;
use std::process::Output;
use std::process::Stdio;
use std::time::Duration;

use anyhow::Context;
use anyhow::bail;

/// The tag the Dockerfile's runtime base is imported under.
pub const BASE_IMAGE: &str = "debian:bookworm-slim";

/// A running `dockerd` of this test.
#[derive(Debug)]
pub struct Docker {
    /// Taken by the drop, which waits for it.
    daemon: Option<Child>,
    socket: PathBuf,
    client: PathBuf,
    // Last: removed after the daemon stopped.
    dir: tempfile::TempDir,
}

/// Why Docker cannot run here.
#[derive(Debug)]
pub struct Unavailable(pub String);

fn which(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|d| d.join(name)).find(|p| p.is_file())
}

/// The cached base image tarball: `$XDG_CACHE_HOME` (or `~/.cache`)
/// `/rafka-docker/bookworm-minbase.tar.gz`.
pub fn base_tarball() -> PathBuf {
    let cache = std::env::var_os("XDG_CACHE_HOME").map(PathBuf::from).unwrap_or_else(|| {
        PathBuf::from(std::env::var_os("HOME").unwrap_or_else(|| "/root".into())).join(".cache")
    });
    cache.join("rafka-docker").join("bookworm-minbase.tar.gz")
}

impl Docker {
    /// Starts a daemon and waits until it answers (60 s at most).
    pub async fn start() -> Result<Docker, Unavailable> {
        if !nix::unistd::geteuid().is_root() {
            return Err(Unavailable("dockerd needs root".into()));
        }
        let mut missing = Vec::new();
        let dockerd = which("dockerd");
        // Debian's client (docker.io) matches its daemon; any other client on PATH works too.
        let client = Some(PathBuf::from("/usr/bin/docker"))
            .filter(|p| p.is_file())
            .or_else(|| which("docker"));
        for (tool, found) in [
            ("dockerd (docker.io)", dockerd.is_some()),
            ("docker (docker.io)", client.is_some()),
            ("docker-compose", which("docker-compose").is_some()),
            ("debootstrap", base_tarball().exists() || which("debootstrap").is_some()),
        ] {
            if !found {
                missing.push(tool);
            }
        }
        if !missing.is_empty() {
            return Err(Unavailable(format!(
                "missing {} (deploy/prereqs.sh --test installs them)",
                missing.join(", ")
            )));
        }
        let (dockerd, client) = (dockerd.unwrap(), client.unwrap());
        // Short paths: containerd's sockets live under exec-root (a socket path ≤ 108 bytes).
        let dir = tempfile::Builder::new()
            .prefix("rafka-dk-")
            .tempdir_in("/tmp")
            .map_err(|e| Unavailable(format!("temp dir: {e}")))?;
        let socket = dir.path().join("d.sock");
        let log = std::fs::File::create(dir.path().join("dockerd.log"))
            .map_err(|e| Unavailable(format!("dockerd log: {e}")))?;
        let daemon = Command::new(dockerd)
            .arg(format!("--host=unix://{}", socket.display()))
            .arg(format!("--data-root={}", dir.path().join("root").display()))
            .arg(format!("--exec-root={}", dir.path().join("x").display()))
            .arg(format!("--pidfile={}", dir.path().join("pid").display()))
            .args(["--bridge=none", "--iptables=false", "--ip6tables=false", "--ip-masq=false"])
            .stdin(Stdio::null())
            .stdout(log.try_clone().map_err(|e| Unavailable(e.to_string()))?)
            .stderr(log)
            .spawn()
            .map_err(|e| Unavailable(format!("spawning dockerd: {e}")))?;
        let docker = Docker { daemon: Some(daemon), socket, client, dir };
        let answered = crate::wait::poll("dockerd answers", Duration::from_secs(60), || async {
            docker.run(&["version"]).map(|_| ())
        })
        .await;
        match answered {
            Ok(()) => Ok(docker),
            Err(e) => Err(Unavailable(format!("{e:#}\n{}", docker.daemon_log()))),
        }
    }

    /// The end of the daemon's log, for failure messages.
    pub fn daemon_log(&self) -> String {
        let log = std::fs::read_to_string(self.dir.path().join("dockerd.log")).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }

    /// `DOCKER_HOST` of this daemon.
    pub fn host(&self) -> String {
        format!("unix://{}", self.socket.display())
    }

    /// Runs `docker args…` against this daemon; its output, or an error with it.
    pub fn run(&self, args: &[&str]) -> anyhow::Result<Output> {
        let mut cmd = Command::new(&self.client);
        cmd.env("DOCKER_HOST", self.host()).args(args);
        checked(cmd, &format!("docker {}", args.join(" ")))
    }

    /// A `docker-compose` command against this daemon (the caller adds arguments and runs
    /// it, e.g. with [`checked`]).
    pub fn compose(&self) -> Command {
        let mut cmd = Command::new("docker-compose");
        cmd.env("DOCKER_HOST", self.host()).stdin(Stdio::null());
        cmd
    }

    /// Imports the runtime base image, building the cached tarball first if it is missing.
    pub fn import_base(&self) -> anyhow::Result<()> {
        let tarball = base_tarball();
        if !tarball.exists() {
            build_base_tarball(&tarball)?;
        }
        self.run(&["import", &tarball.to_string_lossy(), BASE_IMAGE])?;
        Ok(())
    }

    /// Builds `deploy/docker/Dockerfile` as `tag` with a build context holding only
    /// `rafka-broker` and `rafka` from `bin_dir` (as `BIN_DIR=bin`).
    pub fn build_image(&self, repo: &Path, bin_dir: &Path, tag: &str) -> anyhow::Result<()> {
        let context = tempfile::Builder::new().prefix("rafka-image-").tempdir()?;
        std::fs::create_dir(context.path().join("bin"))?;
        for bin in ["rafka-broker", "rafka"] {
            let from = bin_dir.join(bin);
            std::fs::copy(&from, context.path().join("bin").join(bin))
                .with_context(|| format!("copying {}", from.display()))?;
        }
        let dockerfile = repo.join("deploy/docker/Dockerfile");
        self.run(&[
            "build",
            "--quiet",
            "--file",
            &dockerfile.to_string_lossy(),
            "--build-arg",
            "BIN_DIR=bin",
            "--tag",
            tag,
            &context.path().to_string_lossy(),
        ])?;
        Ok(())
    }
}

impl Drop for Docker {
    fn drop(&mut self) {
        if let Some(mut daemon) = self.daemon.take() {
            // SIGTERM: the daemon stops its containers and unmounts their layers. A thread
            // waits for its exit; past 30 s it is killed.
            let pid = nix::unistd::Pid::from_raw(daemon.id() as i32);
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
            let (tx, rx) = std::sync::mpsc::channel();
            std::thread::spawn(move || {
                let _ = daemon.wait();
                let _ = tx.send(());
            });
            if rx.recv_timeout(Duration::from_secs(30)).is_err() {
                let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
                let _ = rx.recv_timeout(Duration::from_secs(10));
            }
        }
        // The daemon leaves mounts behind (its network namespace's bind mount): unmount
        // everything under the directory, deepest first, so it can be removed.
        let mounts = std::fs::read_to_string("/proc/mounts").unwrap_or_default();
        let mut ours: Vec<&str> = mounts
            .lines()
            .filter_map(|l| l.split_whitespace().nth(1))
            .filter(|m| Path::new(m).starts_with(self.dir.path()))
            .collect();
        ours.sort_by_key(|m| std::cmp::Reverse(m.len()));
        for m in ours {
            let _ = Command::new("umount").arg("--lazy").arg(m).status();
        }
    }
}

/// Runs `cmd`; its output when it succeeded, else an error naming `what` with its output.
pub fn checked(mut cmd: Command, what: &str) -> anyhow::Result<Output> {
    let out = cmd.output().with_context(|| format!("running {what}"))?;
    if !out.status.success() {
        bail!(
            "{what}: {}\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(out)
}

/// `debootstrap --variant=minbase bookworm` (from Debian's default mirror), packed into
/// `tarball` (written aside and renamed, so a failed run leaves no partial cache).
fn build_base_tarball(tarball: &Path) -> anyhow::Result<()> {
    let root = tempfile::Builder::new().prefix("rafka-debootstrap-").tempdir()?;
    let tree = root.path().join("tree");
    let mut cmd = Command::new("debootstrap");
    cmd.args(["--variant=minbase", "bookworm"]).arg(&tree);
    checked(cmd, "debootstrap --variant=minbase bookworm")?;
    // Downloaded packages and docs are not part of a runtime base.
    for dir in ["var/cache/apt/archives", "var/lib/apt/lists", "usr/share/doc", "usr/share/man"] {
        let _ = std::fs::remove_dir_all(tree.join(dir));
    }
    std::fs::create_dir_all(tarball.parent().expect("a cache dir"))?;
    let partial = tarball.with_extension("partial");
    let mut cmd = Command::new("tar");
    cmd.arg("-C").arg(&tree).args(["-czf"]).arg(&partial).arg(".");
    checked(cmd, "tar of the debootstrap tree")?;
    std::fs::rename(&partial, tarball)?;
    Ok(())
}
