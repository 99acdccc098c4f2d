//! The broker's structure, checked on its sources: module dependencies point one way (no
//! import cycle among the top-level modules of `src/`), the service layer knows no wire
//! protocol, openraft stays inside rafka-raft, `anyhow` stays in binaries, files stay small.

use std::collections::BTreeMap;
use std::collections::BTreeSet;
use std::path::Path;
use std::path::PathBuf;

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// Every `.rs` file under `dir`.
fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for ent in std::fs::read_dir(&d).unwrap().flatten() {
            let p = ent.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|e| e == "rs") {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

/// The top-level module a file of `src/` belongs to (`None` for the crate root files).
fn module_of(file: &Path) -> Option<String> {
    let rel = file.strip_prefix(src()).unwrap();
    let first = rel.components().next()?.as_os_str().to_str()?.to_string();
    match first.as_str() {
        "lib.rs" | "main.rs" => None,
        f => Some(f.trim_end_matches(".rs").to_string()),
    }
}

/// The code of a file without comments (so prose may name anything).
fn code(file: &Path) -> String {
    let text = std::fs::read_to_string(file).unwrap();
    text.lines()
        .filter(|l| !l.trim_start().starts_with("//"))
        .map(|l| l.split(" // ").next().unwrap_or(l))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Top-level module → the top-level modules it uses (`crate::x`).
fn module_graph() -> BTreeMap<String, BTreeSet<String>> {
    let files = rust_files(&src());
    let modules: BTreeSet<String> = files.iter().filter_map(|f| module_of(f)).collect();
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for f in &files {
        let Some(m) = module_of(f) else { continue };
        let deps = graph.entry(m.clone()).or_default();
        let code = code(f);
        for (i, _) in code.match_indices("crate::") {
            let rest = &code[i + "crate::".len()..];
            let name: String =
                rest.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
            if name != m && modules.contains(&name) {
                deps.insert(name);
            }
        }
    }
    graph
}

/// A cycle through `graph`, if there is one.
fn find_cycle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        n: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(at) = path.iter().position(|p| p == n) {
            let mut cycle = path[at..].to_vec();
            cycle.push(n.to_string());
            return Some(cycle);
        }
        if done.contains(n) {
            return None;
        }
        path.push(n.to_string());
        for d in graph.get(n).into_iter().flatten() {
            if let Some(c) = visit(d, graph, path, done) {
                return Some(c);
            }
        }
        path.pop();
        done.insert(n.to_string());
        None
    }
    let mut done = BTreeSet::new();
    graph.keys().find_map(|n| visit(n, graph, &mut Vec::new(), &mut done))
}

#[test]
fn broker_modules_import_each_other_in_one_direction() {
    let graph = module_graph();
    assert!(graph.len() > 10, "found too few modules: {graph:?}");
    if let Some(cycle) = find_cycle(&graph) {
        panic!("import cycle among broker modules: {}", cycle.join(" -> "));
    }
}

#[test]
fn the_cycle_check_finds_cycles() {
    let mut g: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    g.entry("a".into()).or_default().insert("b".into());
    g.entry("b".into()).or_default().insert("c".into());
    g.entry("c".into()).or_default();
    assert_eq!(find_cycle(&g), None);
    g.entry("c".into()).or_default().insert("a".into());
    assert_eq!(find_cycle(&g).unwrap().join(">"), "a>b>c>a");
}

#[test]
fn the_service_layer_knows_no_wire_protocol() {
    let files = rust_files(&src().join("service"));
    assert!(!files.is_empty());
    for f in files {
        let code = code(&f);
        for banned in ["tonic", "prost", "rafka_proto::v1", "crate::internal"] {
            assert!(!code.contains(banned), "{} uses {banned}", f.display());
        }
    }
}

#[test]
fn openraft_and_anyhow_stay_out_of_the_broker_library() {
    for f in rust_files(&src()) {
        let code = code(&f);
        assert!(!code.contains("openraft::"), "{} names openraft", f.display());
        if !f.ends_with("main.rs") {
            assert!(!code.contains("anyhow"), "{} uses anyhow (binaries only)", f.display());
        }
    }
    let raft = Path::new(env!("CARGO_MANIFEST_DIR")).join("../raft/src");
    for f in rust_files(&raft) {
        assert!(!code(&f).contains("anyhow"), "{} uses anyhow (binaries only)", f.display());
    }
}

#[test]
fn no_source_file_passes_800_lines() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    for krate in ["proto", "raft", "broker", "client", "tests"] {
        for f in rust_files(&root.join(krate)) {
            if f.components().any(|c| c.as_os_str() == "target") {
                continue;
            }
            let lines = std::fs::read_to_string(&f).unwrap().lines().count();
            assert!(lines <= 800, "{} has {lines} lines", f.display());
        }
    }
}

/// Every text file of the repository (not `target/`, not `.git/`).
fn repo_text_files() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut out = Vec::new();
    let mut stack = vec![root];
    while let Some(d) = stack.pop() {
        for ent in std::fs::read_dir(&d).unwrap().flatten() {
            let p = ent.path();
            let name = ent.file_name();
            if p.is_dir() {
                if !["target", ".git", "rafka-data"].iter().any(|n| name == *n) {
                    stack.push(p);
                }
            } else if std::fs::read_to_string(&p).is_ok() {
                out.push(p);
            }
        }
    }
    out
}

/// The design lives in `docs/ARCHITECTURE.md`; code and docs refer to it, never to documents
/// outside the repository or to issue numbers.
#[test]
fn references_point_inside_the_repository() {
    let files = repo_text_files();
    assert!(files.iter().any(|f| f.ends_with("docs/ARCHITECTURE.md")));
    let readme = files.iter().find(|f| f.ends_with("README.md")).expect("README.md");
    let readme = std::fs::read_to_string(readme).unwrap();
    assert!(readme.contains("docs/ARCHITECTURE.md"), "the README links the design");
    let design_doc = ["DESIGN", ".md"].concat();
    for f in files {
        let text = std::fs::read_to_string(&f).unwrap().to_lowercase();
        assert!(!text.contains(&design_doc.to_lowercase()), "{} names {design_doc}", f.display());
        for (i, _) in text.match_indices("issue") {
            let after = text[i + "issue".len()..].trim_start_matches([' ', '#']);
            assert!(
                !after.starts_with(|c: char| c.is_ascii_digit()),
                "{} refers to an issue number: {}",
                f.display(),
                &text[i..(i + 12).min(text.len())]
            );
        }
    }
}

/// rafka-raft's public API names no openraft type: the modules that speak openraft's types
/// are public only to its own tests (`test-hooks`), and nothing public elsewhere aliases or
/// re-exports an openraft type.
#[test]
fn rafka_raft_keeps_openraft_to_itself() {
    let raft = Path::new(env!("CARGO_MANIFEST_DIR")).join("../raft/src");
    let lib = std::fs::read_to_string(raft.join("lib.rs")).unwrap();
    let lines: Vec<&str> = lib.lines().collect();
    for internal in ["codec", "log", "meta", "types", "wire"] {
        let decl = format!("pub mod {internal};");
        let at = lines.iter().position(|l| *l == decl).unwrap_or_else(|| panic!("{decl}"));
        assert_eq!(lines[at - 1], "#[cfg(feature = \"test-hooks\")]", "{decl} is public");
    }
    for l in lines.iter().filter(|l| l.starts_with("pub use ")) {
        assert!(!l.contains("openraft") && !l.contains("types::TypeConfig"), "{l}");
    }
    for f in rust_files(&raft) {
        let name = f.file_name().unwrap().to_str().unwrap();
        let public_module = !["types.rs", "codec.rs", "meta.rs", "wire.rs"].contains(&name)
            && !f.components().any(|c| c.as_os_str() == "log");
        if !public_module {
            continue;
        }
        let code = code(&f);
        let mut previous = "";
        for l in code.lines() {
            let l = l.trim_start();
            let test_only = previous == "#[cfg(feature = \"test-hooks\")]";
            previous = l;
            let public = l.starts_with("pub fn")
                || l.starts_with("pub async fn")
                || l.starts_with("pub type")
                || l.starts_with("pub use");
            assert!(
                test_only || !(public && (l.contains("openraft") || l.contains("RaftMetrics"))),
                "{}: public item names openraft: {l}",
                f.display()
            );
        }
    }
}
