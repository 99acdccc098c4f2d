//! `deploy/k8s/`: the manifests pass Kubernetes' schema (strictly: no unknown fields) with
//! `kubernetes-validate` (offline, from the tests' Python venv), carry what a quorum of
//! brokers needs to form and survive disruptions, and the entrypoint turns the pod's ordinal
//! into the broker id.

use std::path::Path;
use std::path::PathBuf;

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap()
}

fn manifests() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(repo().join("deploy/k8s"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no manifests in deploy/k8s");
    files
}

#[test]
fn the_manifests_pass_kubernetes_schema_validation() {
    let python = rafka_tests::kafka::python();
    let tool = python.with_file_name("kubernetes-validate");
    assert!(tool.exists(), "{} is missing: run deploy/prereqs.sh --test", tool.display());
    let out = std::process::Command::new(&tool)
        .args(["--strict", "--quiet"])
        .args(manifests())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "kubernetes-validate: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn the_statefulset_forms_a_quorum_and_limits_disruptions() {
    let text: String = manifests().iter().map(|p| std::fs::read_to_string(p).unwrap()).collect();
    for needed in [
        "kind: StatefulSet",
        "podManagementPolicy: Parallel",
        "publishNotReadyAddresses: true",
        "kind: PodDisruptionBudget",
        "maxUnavailable: 1",
        "path: /readyz",
        "path: /healthz",
        "terminationGracePeriodSeconds:",
        "volumeClaimTemplates:",
    ] {
        assert!(text.contains(needed), "deploy/k8s lacks `{needed}`");
    }
}

#[test]
fn the_entrypoint_makes_the_broker_id_from_the_pod_ordinal_and_joins_beyond_three() {
    let text = std::fs::read_to_string(repo().join("deploy/k8s/rafka.yaml")).unwrap();
    let line = text
        .lines()
        .map(str::trim)
        .find_map(|l| l.strip_prefix("- export RAFKA_NODE_ID="))
        .expect("the entrypoint line");
    let script = format!("export RAFKA_NODE_ID={line}").replace(
        "exec rafka-broker",
        "echo \"$RAFKA_NODE_ID|${RAFKA_JOIN:-}|${RAFKA_INITIAL_CLUSTER:-}\"",
    );
    let founders =
        "1=rafka-0.rafka.ns.svc:9092,2=rafka-1.rafka.ns.svc:9092,3=rafka-2.rafka.ns.svc:9092";
    let joiners = "rafka-0.rafka.ns.svc:9092,rafka-1.rafka.ns.svc:9092,rafka-2.rafka.ns.svc:9092";
    let founding = |id: &str| format!("{id}||{founders}");
    let joining = |id: &str| format!("{id}|{joiners}|");
    for (pod, want) in [
        ("rafka-0", founding("1")),
        ("rafka-2", founding("3")),
        ("rafka-3", joining("4")),
        ("my-rafka-11", joining("12")),
    ] {
        let out = std::process::Command::new("/bin/sh")
            .args(["-c", &script])
            .env("POD_NAME", pod)
            .env("RAFKA_INITIAL_CLUSTER", founders)
            .output()
            .unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), want, "{pod}");
    }
}
