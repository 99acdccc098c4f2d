//! The container image and the Compose cluster, with Docker on this machine: the test starts
//! a `dockerd` of its own, imports the runtime base image it builds with debootstrap (no
//! image can be pulled), builds `deploy/docker/Dockerfile` from the test build's binaries and
//! runs `deploy/compose.yaml`'s three brokers — on the host's network, every port on
//! 127.0.0.1 and chosen by the test (the published ports and the Compose network are left
//! out: nothing may reach Docker's bridge here). Then: the image's health check turns
//! healthy, a producer writes through the external listeners while one broker is restarted
//! (`docker-compose restart`), every acknowledged record is read back exactly once, and the
//! data survives `down` and `up` in the named volumes.
//!
//! `deploy/test.sh` runs this suite outside the private network namespace of the other
//! suites (dockerd needs the real root). Under CI it must not skip; elsewhere it skips with
//! the reason when Docker cannot run.

use std::collections::BTreeMap;
use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::Path;
use std::path::PathBuf;
use std::time::Duration;

use rafka_client::Admin;
use rafka_client::Client;
use rafka_client::Consumer;
use rafka_client::ConsumerConfig;
use rafka_client::Producer;
use rafka_client::ProducerConfig;
use rafka_tests::bounded;
use rafka_tests::broker::broker_binary;
use rafka_tests::docker::Docker;
use rafka_tests::docker::checked;
use rafka_tests::http::http_get;
use rafka_tests::load::Load;
use rafka_tests::ports::ReservedPort;
use rafka_tests::wait::poll;
use rafka_tests::wait::test_timeout;

const IMAGE: &str = "rafka:test";
const TOPIC: &str = "docker";
const PARTITIONS: u32 = 3;

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap()
}

/// Each broker's ports: the internal listener, HTTP and the external listener.
#[derive(Debug)]
struct Ports {
    listen: SocketAddr,
    http: SocketAddr,
    external: SocketAddr,
}

/// `deploy/compose.yaml` as `docker-compose config` resolves it, turned into a file for the
/// host's network: the brokers only, without published ports or host names, each listener
/// on its reserved 127.0.0.1 port (the external one advertised as `localhost`).
const TO_HOST_NETWORK: &str = r#"
import json, sys, yaml
doc = yaml.safe_load(sys.stdin)
ports, image = json.loads(sys.argv[1]), sys.argv[2]
cluster = ",".join(f"{i}=127.0.0.1:{p['listen']}" for i, p in sorted(ports.items()))
for name in list(doc["services"]):
    svc = doc["services"][name]
    if not name.startswith("rafka-"):
        del doc["services"][name]
        continue
    p = ports[name.split("-")[1]]
    for key in ("ports", "hostname", "networks"):
        svc.pop(key, None)
    svc["network_mode"] = "host"
    svc["image"] = image
    svc["environment"].update({
        "RAFKA_INITIAL_CLUSTER": cluster,
        "RAFKA_LISTEN": f"127.0.0.1:{p['listen']}",
        "RAFKA_ADVERTISE": f"127.0.0.1:{p['listen']}",
        "RAFKA_HTTP": f"127.0.0.1:{p['http']}",
        "RAFKA_LISTENERS": f"external=127.0.0.1:{p['external']}",
        "RAFKA_ADVERTISED_LISTENERS": f"external=localhost:{p['external']}",
    })
doc.pop("networks", None)
json.dump(doc, sys.stdout, indent=1)
"#;

/// A Compose project of the test; `down -v` on drop.
struct Project<'a> {
    docker: &'a Docker,
    name: String,
    file: PathBuf,
}

impl Project<'_> {
    fn command(&self, args: &[&str]) -> std::process::Command {
        let mut cmd = self.docker.compose();
        cmd.arg("--project-name").arg(&self.name).arg("--file").arg(&self.file).args(args);
        cmd
    }

    fn must(&self, args: &[&str]) -> String {
        let out = checked(self.command(args), &format!("docker-compose {}", args.join(" ")))
            .unwrap_or_else(|e| panic!("{e:#}\n--- dockerd:\n{}", self.docker.daemon_log()));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn logs(&self) -> String {
        self.command(&["logs", "--no-color", "--tail", "40"])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default()
    }
}

impl Drop for Project<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("--- compose logs:\n{}", self.logs());
        }
        let _ = self.command(&["down", "--volumes", "--timeout", "10"]).output();
    }
}

/// The resolved compose file for `ports`, written into `dir`.
fn host_network_file(docker: &Docker, ports: &BTreeMap<u64, Ports>, dir: &Path) -> PathBuf {
    let mut config = docker.compose();
    config.arg("--file").arg(repo().join("deploy/compose.yaml")).arg("config");
    let resolved = checked(config, "docker-compose config").unwrap_or_else(|e| panic!("{e:#}"));
    let spec: serde_json::Value = ports
        .iter()
        .map(|(id, p)| {
            let v = serde_json::json!({
                "listen": p.listen.port(), "http": p.http.port(), "external": p.external.port(),
            });
            (id.to_string(), v)
        })
        .collect::<serde_json::Map<_, _>>()
        .into();
    let mut python = std::process::Command::new("/usr/bin/python3");
    python
        .args(["-c", TO_HOST_NETWORK, &spec.to_string(), IMAGE])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = python.spawn().expect("python3 (docker-compose's own) runs");
    use std::io::Write;
    child.stdin.take().unwrap().write_all(&resolved.stdout).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let file = dir.join("compose.host.json");
    std::fs::write(&file, &out.stdout).unwrap();
    file
}

async fn wait_ready(ports: &Ports, timeout: Duration) {
    poll("broker /readyz", timeout, || async {
        match http_get(ports.http, "/readyz", Duration::from_secs(2)).await {
            Ok((200, _)) => Ok(()),
            Ok((code, body)) => Err(anyhow::anyhow!("{code}: {body}")),
            Err(e) => Err(anyhow::anyhow!("{e}")),
        }
    })
    .await
    .unwrap_or_else(|e| panic!("{e:#}"));
}

/// Every record of the topic, as (value, partition, offset), read from the beginning.
async fn read_all(client: &Client, at_least: usize) -> Vec<(String, u32, i64)> {
    let mut consumer = Consumer::new(client.clone(), ConsumerConfig::default()).unwrap();
    let partitions: Vec<(String, u32)> = (0..PARTITIONS).map(|p| (TOPIC.into(), p)).collect();
    consumer.assign(&partitions).unwrap();
    let mut read = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
    while read.len() < at_least && tokio::time::Instant::now() < deadline {
        for r in consumer.poll(Duration::from_millis(500)).await.unwrap() {
            let value = String::from_utf8_lossy(r.value.as_deref().unwrap_or_default());
            read.push((value.into_owned(), r.partition, r.offset));
        }
    }
    read
}

fn health(docker: &Docker, container: &str) -> String {
    let out = docker
        .run(&["inspect", "--format", "{{.State.Health.Status}}", container])
        .unwrap_or_else(|e| panic!("{e:#}"));
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compose_cluster_in_docker() {
    let docker = match Docker::start().await {
        Ok(d) => d,
        Err(why) if std::env::var_os("CI").is_some() => {
            panic!("Docker must run under CI: {}", why.0)
        }
        Err(why) => {
            eprintln!("skipping the Docker suite: {}", why.0);
            return;
        }
    };
    bounded("the Docker suite", test_timeout(Duration::from_secs(900)), async {
        docker.import_base().unwrap_or_else(|e| panic!("{e:#}"));
        let bin = broker_binary().unwrap();
        docker
            .build_image(repo(), bin.parent().unwrap(), IMAGE)
            .unwrap_or_else(|e| panic!("{e:#}"));

        // The image: non-root, a data volume, the broker as entrypoint, a health check, the
        // CLI inside, and the build's version.
        let inspect =
            docker.run(&["image", "inspect", "--format", "{{json .Config}}", IMAGE]).unwrap();
        let config: serde_json::Value = serde_json::from_slice(&inspect.stdout).unwrap();
        assert_eq!(config["User"], "rafka", "{config}");
        assert!(config["Volumes"].get("/var/lib/rafka").is_some(), "{config}");
        assert_eq!(config["Entrypoint"], serde_json::json!(["rafka-broker"]), "{config}");
        assert!(config["Healthcheck"]["Test"].to_string().contains("/readyz"), "{config}");
        let version = docker.run(&["run", "--rm", "--network", "host", IMAGE, "--version"]);
        let version = String::from_utf8_lossy(&version.unwrap().stdout).into_owned();
        assert!(version.starts_with("rafka-broker 0.") && version.contains("commit"), "{version}");
        let cli = ["run", "--rm", "--network", "host", "--entrypoint", "rafka", IMAGE, "--version"];
        let cli = String::from_utf8_lossy(&docker.run(&cli).unwrap().stdout).into_owned();
        assert!(cli.starts_with("rafka 0."), "{cli}");

        // Three brokers from the Compose file on reserved loopback ports.
        let reserved: Vec<[ReservedPort; 3]> = (0..3)
            .map(|_| [(); 3].map(|()| ReservedPort::new().expect("a loopback port")))
            .collect();
        let ports: BTreeMap<u64, Ports> = reserved
            .iter()
            .enumerate()
            .map(|(i, [l, h, e])| {
                (i as u64 + 1, Ports { listen: l.addr(), http: h.addr(), external: e.addr() })
            })
            .collect();
        let dir = tempfile::tempdir().unwrap();
        let project = Project {
            docker: &docker,
            name: format!("rafka-test-{}", std::process::id()),
            file: host_network_file(&docker, &ports, dir.path()),
        };
        drop(reserved);
        project.must(&["up", "--detach"]);
        for p in ports.values() {
            wait_ready(p, Duration::from_secs(120)).await;
        }
        let containers: Vec<String> =
            project.must(&["ps", "--quiet"]).lines().map(str::to_string).collect();
        assert_eq!(containers.len(), 3, "three containers");
        for c in &containers {
            poll("the image's health check", Duration::from_secs(90), || async {
                match health(&docker, c) {
                    h if h == "healthy" => Ok(()),
                    h => Err(anyhow::anyhow!("{c} is {h}")),
                }
            })
            .await
            .unwrap_or_else(|e| panic!("{e:#}"));
        }

        // Produce through the external listeners while broker 2 restarts.
        let bootstrap: Vec<String> =
            ports.values().map(|p| format!("localhost:{}", p.external.port())).collect();
        let client = Client::connect(&bootstrap.join(",")).await.unwrap();
        Admin::new(client.clone())
            .create_topic(TOPIC, PARTITIONS, 3, Default::default())
            .await
            .unwrap();
        let producer = Producer::new(client.clone(), ProducerConfig::default()).unwrap();
        let load = Load::start(producer, TOPIC, "v", 300);
        load.wait_acked(300, Duration::from_secs(60)).await.unwrap();
        let (before_restart, started) = (load.acked(), std::time::Instant::now());
        let restart = project.command(&["restart", "--timeout", "30", "rafka-2"]);
        tokio::task::spawn_blocking(move || checked(restart, "docker-compose restart rafka-2"))
            .await
            .unwrap()
            .unwrap_or_else(|e| panic!("{e:#}"));
        wait_ready(&ports[&2], Duration::from_secs(120)).await;
        let so_far = load.acked();
        eprintln!(
            "broker 2 restarted and ready in {:?}; {} records acknowledged meanwhile",
            started.elapsed(),
            so_far - before_restart
        );
        load.wait_acked(so_far + 300, Duration::from_secs(60)).await.unwrap();
        let sent = load.finish().await;
        let (acked, failed) = (sent.acked, sent.failed);
        assert!(
            failed.is_empty(),
            "sends failed while a broker restarted: {:?}",
            &failed[..failed.len().min(5)]
        );
        assert!(acked.len() >= 100, "only {} records acknowledged", acked.len());

        let read = read_all(&client, acked.len()).await;
        let values: BTreeSet<String> = read.iter().map(|(v, ..)| v.clone()).collect();
        assert_eq!(values.len(), read.len(), "a record was stored twice");
        assert_eq!(values, acked, "the records read are the ones acknowledged");
        drop(client);

        // The data lives in the named volumes: `down` and `up` keep it.
        project.must(&["down", "--timeout", "30"]);
        project.must(&["up", "--detach"]);
        for p in ports.values() {
            wait_ready(p, Duration::from_secs(120)).await;
        }
        let client = Client::connect(&bootstrap.join(",")).await.unwrap();
        let again = read_all(&client, read.len()).await;
        let mut before = read.clone();
        before.sort();
        let mut after = again;
        after.sort();
        assert_eq!(after, before, "the same records at the same offsets after down/up");
    })
    .await;
}
