//! The gateway's shape, checked: its modules form no cycle (each module uses only
//! modules below it; `lib.rs` only declares and re-exports), and it depends on no
//! control-plane crate (`sluice-registry`, `sluice-store`): the sources it is built
//! from are its public traits, implemented where roles are wired.

#![allow(clippy::unwrap_used, missing_docs)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The module a source file is, as `crate::` paths name it (`stages::retry`).
fn module_name(src: &Path, file: &Path) -> String {
    let relative = file.strip_prefix(src).unwrap().with_extension("");
    let parts: Vec<String> = relative
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    let name = parts.join("::");
    name.strip_suffix("::mod").unwrap_or(&name).to_owned()
}

fn source_files(dir: &Path, into: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            source_files(&path, into);
        } else if path.extension().is_some_and(|e| e == "rs") {
            into.push(path);
        }
    }
}

/// The modules `text` names through `crate::…` outside its tests and comments,
/// resolved against `modules` (longest match: `crate::stages::pick::x` is
/// `stages::pick`).
fn uses(text: &str, modules: &BTreeSet<String>) -> BTreeSet<String> {
    let code = text.split("#[cfg(test)]").next().unwrap_or("");
    let mut used = BTreeSet::new();
    for line in code.lines() {
        let line = line.trim_start();
        if line.starts_with("//") {
            continue;
        }
        let mut rest = line;
        while let Some(at) = rest.find("crate::") {
            rest = &rest[at + "crate::".len()..];
            // `crate::{a, b::c}` names several.
            let names: Vec<&str> = if let Some(group) = rest.strip_prefix('{') {
                let end = group.find('}').unwrap_or(group.len());
                group[..end].split(',').map(str::trim).collect()
            } else {
                vec![rest]
            };
            for name in names {
                let path: String = name
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == ':')
                    .collect();
                let mut candidate = path.trim_end_matches(':').to_owned();
                loop {
                    if modules.contains(&candidate) {
                        used.insert(candidate);
                        break;
                    }
                    match candidate.rfind("::") {
                        Some(cut) => candidate.truncate(cut),
                        None => break,
                    }
                }
            }
        }
    }
    used
}

#[test]
fn the_gateway_modules_form_no_cycle() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    source_files(&src, &mut files);
    let modules: BTreeSet<String> = files.iter().map(|f| module_name(&src, f)).collect();
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for file in &files {
        let name = module_name(&src, file);
        let mut used = uses(&std::fs::read_to_string(file).unwrap(), &modules);
        used.remove(&name);
        // A module's parent (`stages` for `stages::pick`) only declares it.
        graph.insert(name, used);
    }
    assert!(
        graph["lib"].is_empty(),
        "lib.rs only declares modules and re-exports: it uses {:?}",
        graph["lib"]
    );
    assert!(
        graph.len() > 20,
        "the check sees the gateway's modules: {graph:?}"
    );

    // Depth-first search; a back edge is a cycle.
    fn visit<'a>(
        node: &'a str,
        graph: &'a BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<&'a str>,
        done: &mut BTreeSet<&'a str>,
    ) -> Option<Vec<String>> {
        if let Some(at) = path.iter().position(|n| *n == node) {
            let mut cycle: Vec<String> = path[at..].iter().map(|n| (*n).to_owned()).collect();
            cycle.push(node.to_owned());
            return Some(cycle);
        }
        if done.contains(node) {
            return None;
        }
        path.push(node);
        for next in graph.get(node).into_iter().flatten() {
            if let Some(cycle) = visit(next, graph, path, done) {
                return Some(cycle);
            }
        }
        path.pop();
        done.insert(node);
        None
    }
    let mut done = BTreeSet::new();
    for node in graph.keys() {
        let cycle = visit(node, &graph, &mut Vec::new(), &mut done);
        assert!(
            cycle.is_none(),
            "module cycle: {}",
            cycle.unwrap().join(" -> ")
        );
    }
}

#[test]
fn the_cycle_check_sees_a_cycle() {
    let modules: BTreeSet<String> = ["proxy", "stages::pick", "table"]
        .iter()
        .map(|m| (*m).to_owned())
        .collect();
    let used = uses(
        "use crate::{table::Target, stages::pick::pick};\n// crate::proxy\nfn f() { crate::proxy::handle() }\n#[cfg(test)]\nuse crate::nothing;",
        &modules,
    );
    assert_eq!(
        used,
        ["proxy", "stages::pick", "table"]
            .iter()
            .map(|m| (*m).to_owned())
            .collect()
    );
}

#[test]
fn the_gateway_depends_on_no_control_plane_crate() {
    let manifest =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml")).unwrap();
    let manifest: toml::Table = manifest.parse().unwrap();
    for section in ["dependencies", "dev-dependencies"] {
        let Some(deps) = manifest.get(section).and_then(|d| d.as_table()) else {
            continue;
        };
        for forbidden in [
            "sluice-registry",
            "sluice-store",
            "sluice-api",
            "sluice-alarm",
        ] {
            assert!(
                !deps.contains_key(forbidden),
                "the gateway's [{section}] lists {forbidden}"
            );
        }
    }
}
