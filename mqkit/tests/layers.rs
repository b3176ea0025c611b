//! The layer rule of ARCHITECTURE.md, checked on the source: every
//! `crate::…` path in a layer folder names only its own layer or one below
//! (`core` < `amqp` < `app` < `addons` < `testing`), and `core` never
//! mentions lapin. Paths to crate-root items are allowed only where the
//! composition root hands something down (`__private::CONSUMERS`, `ADDONS`).

use std::fs;
use std::path::{Path, PathBuf};

const LAYERS: &[&str] = &["core", "amqp", "app", "addons", "testing"];
const ROOT_PATHS_ALLOWED: &[(&str, &str)] =
    &[("app/registry.rs", "__private"), ("app/addon.rs", "ADDONS")];

fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// `crate::<segment>` occurrences outside comments, with their line numbers.
fn crate_paths(text: &str) -> Vec<(usize, String)> {
    let mut found = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let code = line.split("//").next().unwrap_or("");
        let mut rest = code;
        while let Some(i) = rest.find("crate::") {
            let before = rest[..i].chars().next_back();
            let after = &rest[i + "crate::".len()..];
            let segment: String = after
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            // `$crate::` and `mqkit_crate::` are not this crate's paths.
            if !before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == '$') {
                found.push((n + 1, segment));
            }
            rest = after;
        }
    }
    found
}

#[test]
fn imports_go_one_way_and_core_has_no_lapin() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    sources(&src, &mut files);
    assert!(files.len() > 20, "found only {} source files", files.len());
    let mut problems = Vec::new();
    let mut checked = 0;
    for file in &files {
        let rel = file.strip_prefix(&src).unwrap_or(file);
        let rel_s = rel.to_string_lossy().replace('\\', "/");
        let layer = rel_s
            .split('/')
            .next()
            .unwrap_or("")
            .trim_end_matches(".rs")
            .to_owned();
        let Some(rank) = LAYERS.iter().position(|l| *l == layer) else {
            continue; // lib.rs and bin/: the composition root
        };
        checked += 1;
        let text = fs::read_to_string(file).unwrap_or_default();
        if layer == "core" && text.contains("lapin") {
            problems.push(format!("{rel_s}: the core mentions lapin"));
        }
        for (line, segment) in crate_paths(&text) {
            match LAYERS.iter().position(|l| *l == segment) {
                Some(target) if target <= rank => {}
                Some(_) => problems.push(format!(
                    "{rel_s}:{line}: layer `{layer}` uses the higher layer `{segment}`"
                )),
                None if ROOT_PATHS_ALLOWED.contains(&(rel_s.as_str(), segment.as_str())) => {}
                None => problems.push(format!(
                    "{rel_s}:{line}: `crate::{segment}` goes through the crate root; name the layer module"
                )),
            }
        }
    }
    assert!(checked > 20, "checked only {checked} layer files");
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn the_checker_sees_a_violation() {
    let sample = "use crate::app::config::Config; // crate::addons in a comment\n\
                  let x = $crate::thing; use crate::core::spec;";
    let found = crate_paths(sample);
    assert_eq!(found, vec![(1, "app".to_owned()), (2, "core".to_owned())]);
}
