//! ARCHITECTURE.md's crate table is the layering: this test reads `cargo metadata` and fails
//! on any dependency between workspace crates that the table does not list (and on any the
//! table lists that is not there), so the table cannot drift from the manifests.

#![allow(clippy::unwrap_used)] // Tests may unwrap.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;

/// A crate's workspace dependencies: for its code, and for its tests only.
#[derive(Debug, Default, PartialEq, Eq)]
struct Edges {
    normal: BTreeSet<String>,
    tests_only: BTreeSet<String>,
}

fn workspace_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .and_then(Path::parent)
        .unwrap()
}

/// The workspace's crates and their dependencies on each other, from `cargo metadata`.
fn from_manifests() -> BTreeMap<String, Edges> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let output = Command::new(cargo)
        .args([
            "metadata",
            "--no-deps",
            "--format-version",
            "1",
            "--offline",
        ])
        .current_dir(workspace_root())
        .output()
        .unwrap();
    assert!(output.status.success(), "cargo metadata failed: {output:?}");
    let metadata: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let packages = metadata["packages"].as_array().unwrap();
    let members: BTreeSet<String> = packages
        .iter()
        .map(|p| p["name"].as_str().unwrap().to_owned())
        .collect();
    let mut crates = BTreeMap::new();
    for package in packages {
        let mut edges = Edges::default();
        for dep in package["dependencies"].as_array().unwrap() {
            let name = dep["name"].as_str().unwrap();
            if !members.contains(name) {
                continue;
            }
            match dep["kind"].as_str() {
                Some("dev") => edges.tests_only.insert(name.to_owned()),
                _ => edges.normal.insert(name.to_owned()),
            };
        }
        edges.tests_only.retain(|name| !edges.normal.contains(name));
        crates.insert(package["name"].as_str().unwrap().to_owned(), edges);
    }
    crates
}

/// The workspace crates named in one cell of the table (`berth-...` words).
fn crate_names(cell: &str) -> BTreeSet<String> {
    cell.split(|c: char| !(c.is_ascii_alphanumeric() || c == '-'))
        .filter(|word| *word == "berth" || word.starts_with("berth-"))
        .map(str::to_owned)
        .collect()
}

/// The crate table of ARCHITECTURE.md: `| crate | what | depends on | tests also use |`.
fn from_architecture() -> BTreeMap<String, Edges> {
    let text = std::fs::read_to_string(workspace_root().join("ARCHITECTURE.md")).unwrap();
    let mut rows = text
        .lines()
        .skip_while(|line| !line.starts_with("| crate |"))
        .take_while(|line| line.starts_with('|'));
    let header: Vec<&str> = rows.next().unwrap().split('|').map(str::trim).collect();
    assert_eq!(
        header,
        ["", "crate", "what", "depends on", "tests also use", ""],
        "ARCHITECTURE.md's crate table changed shape"
    );
    rows.skip(1)
        .map(|row| {
            let cells: Vec<&str> = row.split('|').map(str::trim).collect();
            let name = cells[1].trim_matches('`').to_owned();
            let edges = Edges {
                normal: crate_names(cells[3]),
                tests_only: crate_names(cells[4]),
            };
            (name, edges)
        })
        .collect()
}

#[test]
fn the_crate_table_lists_every_dependency_between_workspace_crates() {
    let manifests = from_manifests();
    let table = from_architecture();
    let names: BTreeSet<&String> = manifests.keys().chain(table.keys()).collect();
    let mut problems = Vec::new();
    for name in names {
        match (manifests.get(name), table.get(name)) {
            (Some(_), None) => problems.push(format!("{name}: a crate the table does not list")),
            (None, Some(_)) => problems.push(format!("{name}: in the table, not in the workspace")),
            (Some(real), Some(listed)) if real != listed => problems.push(format!(
                "{name}: the manifests say depends on {:?}, tests also use {:?}; the table says {:?} and {:?}",
                real.normal, real.tests_only, listed.normal, listed.tests_only
            )),
            _ => {}
        }
    }
    assert!(
        problems.is_empty(),
        "ARCHITECTURE.md's crate table and the manifests disagree:\n{}",
        problems.join("\n")
    );
}

#[test]
fn the_model_users_do_not_link_the_store() {
    let manifests = from_manifests();
    for name in ["berth-api", "berth-agent", "berth-chaos"] {
        let normal = &manifests[name].normal;
        assert!(
            normal.iter().all(
                |dep| ["berth-core", "berth-api", "berth-localredis", "berth-image"]
                    .contains(&dep.as_str())
            ),
            "{name} depends on {normal:?}: it may use only berth-core and berth-api (and, for the chaos harness, berth-localredis; for the agent's images, berth-image)"
        );
    }
}
