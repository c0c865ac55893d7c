//! Tidy checks of the architecture invariants that a test can see (ARCHITECTURE.md): every
//! module has a `//!` doc; only `clavis-crypto` depends on the crypto library; storage depends
//! on no crypto; the core depends on no HTTP framework, SQL driver or crypto library; the HTTP
//! layer does no crypto and no SQL; no ignored or should-panic tests.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // Test code: a failure should stop the test loudly.

use std::path::{Path, PathBuf};

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().unwrap()
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// The names in a crate's `[dependencies]` table (not dev-dependencies).
fn dependencies(krate: &str) -> Vec<String> {
    let toml = std::fs::read_to_string(workspace().join("crates").join(krate).join("Cargo.toml")).unwrap();
    let mut in_deps = false;
    let mut out = Vec::new();
    for line in toml.lines() {
        let line = line.trim();
        if line.starts_with('[') {
            in_deps = line == "[dependencies]";
            continue;
        }
        if in_deps && !line.is_empty() && !line.starts_with('#') {
            out.push(line.split(['=', '.', ' ']).next().unwrap().to_owned());
        }
    }
    out
}

#[test]
fn every_module_has_a_doc_comment() {
    let mut files = Vec::new();
    for krate in std::fs::read_dir(workspace().join("crates")).unwrap() {
        let src = krate.unwrap().path().join("src");
        if src.exists() {
            rust_files(&src, &mut files);
        }
    }
    assert!(files.len() > 20);
    let missing: Vec<_> = files.iter().filter(|f| !std::fs::read_to_string(f).unwrap().trim_start().starts_with("//!")).collect();
    assert!(missing.is_empty(), "modules without a //! doc: {missing:?}");
}

#[test]
fn dependency_boundaries_hold() {
    let crates: Vec<String> =
        std::fs::read_dir(workspace().join("crates")).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    for krate in &crates {
        let deps = dependencies(krate);
        if krate != "clavis-crypto" {
            assert!(!deps.iter().any(|d| d == "aws-lc-rs" || d == "ring"), "{krate} must not use the crypto library directly");
        }
    }
    let forbidden = |krate: &str, names: &[&str]| {
        let deps = dependencies(krate);
        for n in names {
            assert!(!deps.iter().any(|d| d == n), "{krate} must not depend on {n}");
        }
    };
    forbidden("clavis-store", &["clavis-crypto", "rusqlite", "tokio-postgres", "sqlx", "zeroize"]);
    forbidden(
        "clavis-core",
        &[
            "axum",
            "hyper",
            "tower",
            "rusqlite",
            "tokio-postgres",
            "deadpool-postgres",
            "clavis-store-sqlite",
            "clavis-store-postgres",
            "clavis-server",
        ],
    );
    forbidden(
        "clavis-server",
        &["clavis-crypto", "rusqlite", "tokio-postgres", "clavis-store-sqlite", "clavis-store-postgres", "clavis-store"],
    );
    forbidden("clavis-sigv4", &["axum", "hyper", "clavis-core"]);
    forbidden("clavis-store-sqlite", &["clavis-crypto", "clavis-core"]);
    forbidden("clavis-store-postgres", &["clavis-crypto", "clavis-core", "rusqlite"]);
}

#[test]
fn no_ignored_or_should_panic_tests() {
    let mut files = Vec::new();
    rust_files(&workspace().join("crates"), &mut files);
    for f in files {
        let text = std::fs::read_to_string(&f).unwrap();
        for banned in ["#[ignore", "#[should_panic"] {
            // This file names the attributes it bans.
            if f.ends_with("tidy.rs") {
                continue;
            }
            assert!(!text.contains(banned), "{} contains {banned}", f.display());
        }
    }
}

/// The entries of the catalogue (`clavis-core/src/operation.rs`): (variant, wire name,
/// method). An entry is `Variant [as "WireName"] => method: Family, ...;`.
fn catalogue_entries() -> Vec<(String, String, String)> {
    let catalogue = std::fs::read_to_string(workspace().join("crates/clavis-core/src/operation.rs")).unwrap();
    catalogue
        .lines()
        .filter_map(|l| {
            let line = l.strip_prefix("    ")?;
            let (entry, _) = [": Kms,", ": Admin,", ": SecretsManager,"].iter().find_map(|f| line.split_once(f))?;
            let (op, method) = entry.split_once(" => ")?;
            let (variant, wire) = match op.split_once(" as ") {
                Some((v, w)) => (v.to_owned(), w.trim_matches('"').to_owned()),
                None => (op.to_owned(), op.to_owned()),
            };
            Some((variant, wire, method.to_owned()))
        })
        .collect()
}

/// Invariant: authorization is decided in the core for every operation. The dispatch generated
/// from the catalogue takes the identity step for the entry before its method runs; each
/// entry's method takes it again for its own entry as its first statement, so that a caller of
/// the method (a Rust test, a later front end) gets the same check and a method cannot name
/// another entry's operation.
#[test]
fn every_catalogue_method_authorizes_its_own_operation_first() {
    let mut files = Vec::new();
    rust_files(&workspace().join("crates/clavis-core/src/ops"), &mut files);
    let texts: Vec<(PathBuf, String)> = files.into_iter().map(|f| (f.clone(), std::fs::read_to_string(&f).unwrap())).collect();
    let entries = catalogue_entries();
    assert!(entries.len() > 40, "catalogue entries found: {entries:?}");
    for (op, _, method) in &entries {
        let signature = format!("    pub async fn {method}(");
        let found: Vec<_> = texts.iter().filter(|(_, t)| t.contains(&signature)).collect();
        assert_eq!(found.len(), 1, "{op}: its method {method} must be defined once in clavis-core/src/ops");
        let (file, text) = found[0];
        let after = &text[text.find(&signature).unwrap()..];
        let body = &after[after.find("{\n").unwrap() + 2..];
        let first = body.lines().next().unwrap_or_default().trim();
        assert!(
            first == format!("self.authorize(caller, Operation::{op})?;")
                || first == format!("self.authorize(caller, crate::Operation::{op})?;"),
            "{}: {method} (catalogue entry {op}) begins with `{first}`, not the identity step for {op}",
            file.display()
        );
    }
}

/// The catalogue (`clavis-core/src/operation.rs`) is the one list of operations: each one is
/// documented in docs/api.md, and no other module keeps a list of operation names.
#[test]
fn the_catalogue_is_the_one_list_of_operations() {
    let entries = catalogue_entries();
    let names: Vec<&str> = entries.iter().map(|(_, wire, _)| wire.as_str()).collect();
    assert!(names.len() > 40, "catalogue entries found: {names:?}");
    let api = std::fs::read_to_string(workspace().join("docs/api.md")).unwrap();
    for name in &names {
        assert!(api.contains(name), "{name} is not documented in docs/api.md");
    }
    // The lists the catalogue replaced must not come back.
    let mut files = Vec::new();
    rust_files(&workspace().join("crates"), &mut files);
    for f in files {
        let text = std::fs::read_to_string(&f).unwrap();
        for old in [
            "READER_OPS",
            "WRITER_OPS",
            "MANAGER_OPS",
            "CROSS_ACCOUNT_ACTIONS",
            "GRANT_OPERATIONS",
            "KEY_OPERATIONS",
            "fn is_admin_operation",
        ] {
            assert!(
                !text.contains(&format!("const {old}")) && !text.contains(&format!("{old}(")) || f.ends_with("tidy.rs"),
                "{}: {old}",
                f.display()
            );
        }
    }
}

/// Every secret member of the API shapes (typed `SecretText` or `SecretBlob`) is in the audit's
/// redaction list, so a response that returns it once never has it copied into a record.
#[test]
fn every_secret_member_is_redacted_from_records() {
    let api = std::fs::read_to_string(workspace().join("crates/clavis-core/src/api.rs")).unwrap();
    let audit = std::fs::read_to_string(workspace().join("crates/clavis-core/src/audit.rs")).unwrap();
    let list_start = audit.find("pub const REDACTED_MEMBERS").unwrap();
    let list = &audit[list_start..list_start + audit[list_start..].find("];").unwrap()];
    let mut checked = 0;
    let lines: Vec<&str> = api.lines().collect();
    for (i, line) in lines.iter().enumerate() {
        let line = line.trim();
        let Some(field) = line.strip_prefix("pub ").and_then(|l| l.split_once(':')) else { continue };
        if !(field.1.contains("SecretText") || field.1.contains("SecretBlob")) || field.0.contains(' ') {
            continue;
        }
        // The member's wire name: a `#[serde(rename = "...")]` just above, or PascalCase.
        let renamed = lines[..i].iter().rev().take(3).find_map(|l| l.trim().strip_prefix("#[serde(rename = \"")?.split('"').next());
        let wire: String =
            renamed.map(str::to_owned).unwrap_or_else(|| field.0.split('_').map(|w| w[..1].to_uppercase() + &w[1..]).collect());
        assert!(list.contains(&format!("\"{wire}\"")), "secret member {wire} (api.rs line {}) is not in REDACTED_MEMBERS", i + 1);
        checked += 1;
    }
    assert!(checked >= 5, "found only {checked} secret members");
}
