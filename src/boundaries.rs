//! Imports run downwards (issue 24): a module may use the modules in the
//! layers below its own, never one beside or above it, so that the house
//! can be read bottom up and no two modules need each other. The test
//! reads every `crate::…` path in `src/` (tests left out) and fails on an
//! upward import. None is left; should one have to be allowed for a while,
//! it goes in `KNOWN_UPWARD`, and the test fails once it is gone, so that
//! list only shrinks.
//!
//! Functions a screen long: on the booking, commit and coordination paths
//! no function is longer than `FUNCTION_LINES_MAX` lines of code.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// The layers, bottom first. A module may import any module of a lower layer.
const LAYERS: &[&[&str]] = &[
    &["domain", "csv_text", "tasks"],
    &["codes"],
    &["clock", "telemetry", "tokens"],
    &["catalog", "accounts", "recent"],
    &["residents"],
    &["store"],
    &["demo", "cli", "login_guard"],
    &["cluster"],
    &["actors"],
    &["booking", "mail"],
    &["settings"],
    &["api"],
    &["startup"],
];

/// Upward imports allowed for a while, `(from, to)`. Empty since issue 24
/// removed the last three (store→settings, settings→api, cluster→actors).
const KNOWN_UPWARD: &[(&str, &str)] = &[];

fn layer_of(module: &str) -> Option<usize> {
    LAYERS.iter().position(|layer| layer.contains(&module))
}

/// The text of a file without its test module and comment lines.
fn code_of(text: &str) -> String {
    let mut code = String::new();
    let mut lines = text.lines().peekable();
    while let Some(line) = lines.next() {
        let trimmed = line.trim_start();
        if trimmed.starts_with("#[cfg(test)]")
            && lines
                .peek()
                .is_some_and(|next| next.trim_start().starts_with("mod "))
        {
            break;
        }
        if trimmed.starts_with("//") {
            continue;
        }
        code.push_str(line);
        code.push('\n');
    }
    code
}

/// The top-level modules a piece of code names through `crate::`.
fn named_modules(code: &str) -> BTreeSet<String> {
    let mut named = BTreeSet::new();
    let ident = |text: &str| -> String {
        text.chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect()
    };
    for (at, _) in code.match_indices("crate::") {
        let rest = &code[at + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            // `crate::{a, b::c, d::{e, f}}`: the first name of each item.
            let mut depth = 0usize;
            let mut item_start = true;
            for (i, c) in group.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => break,
                    '}' => depth -= 1,
                    ',' if depth == 0 => item_start = true,
                    c if item_start && (c.is_alphanumeric() || c == '_') => {
                        named.insert(ident(&group[i..]));
                        item_start = false;
                    }
                    _ => {}
                }
            }
        } else {
            named.insert(ident(rest));
        }
    }
    named
}

/// Every `(from, to)` edge between top-level modules, with a file that has it.
fn edges(src: &Path) -> BTreeMap<(String, String), String> {
    let mut found = BTreeMap::new();
    let mut stack = vec![src.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).expect("src is readable") {
            let path = entry.expect("an entry").path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            if path.extension().is_none_or(|e| e != "rs") {
                continue;
            }
            let relative = path.strip_prefix(src).expect("under src");
            let first = relative
                .components()
                .next()
                .and_then(|c| c.as_os_str().to_str())
                .expect("a name");
            let from = first.trim_end_matches(".rs").to_owned();
            if from == "lib" || from == "main" || from == "boundaries" {
                continue;
            }
            let text = std::fs::read_to_string(&path).expect("a source file");
            for to in named_modules(&code_of(&text)) {
                if to != from {
                    found
                        .entry((from.clone(), to))
                        .or_insert_with(|| relative.display().to_string());
                }
            }
        }
    }
    found
}

#[test]
fn imports_run_downwards_and_the_known_exceptions_only_shrink() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let found = edges(&src);
    let mut upward = Vec::new();
    for ((from, to), file) in &found {
        let (Some(low), Some(high)) = (layer_of(to), layer_of(from)) else {
            panic!("{from} or {to} is in no layer of boundaries.rs (seen in {file})");
        };
        if low >= high && !KNOWN_UPWARD.contains(&(from.as_str(), to.as_str())) {
            upward.push(format!("{file}: {from} uses {to}"));
        }
    }
    assert!(
        upward.is_empty(),
        "imports that do not run downwards (LAYERS in src/boundaries.rs):\n{}",
        upward.join("\n")
    );
    for (from, to) in KNOWN_UPWARD {
        assert!(
            found.contains_key(&((*from).to_owned(), (*to).to_owned())),
            "{from} no longer uses {to}: remove it from KNOWN_UPWARD"
        );
    }
}

#[test]
fn the_reader_finds_grouped_and_inline_paths_but_not_tests_or_comments() {
    let text = "use crate::{domain::{A, B}, store::C};\n\
                // use crate::api::X;\n\
                fn f() { crate::clock::now(); }\n\
                #[cfg(test)]\n\
                mod tests { use crate::startup; }\n";
    let named: Vec<String> = named_modules(&code_of(text)).into_iter().collect();
    assert_eq!(named, ["clock", "domain", "store"]);
}

/// The longest function, in lines of code (comment lines left out), on the
/// booking, commit and coordination paths: a screen.
const FUNCTION_LINES_MAX: usize = 70;

/// Where `FUNCTION_LINES_MAX` holds: the booking, commit and coordination paths.
const SHORT_FUNCTIONS_IN: &[&str] = &["booking", "actors", "store", "cluster", "startup.rs"];

/// Each function with a body in `code` (as `code_of` leaves it): its name,
/// first line (1-based, in `code`) and length in lines.
fn functions(code: &str) -> Vec<(String, usize, usize)> {
    let lines: Vec<&str> = code.lines().collect();
    let mut found = Vec::new();
    for (at, line) in lines.iter().enumerate() {
        let trimmed = line.trim_start();
        let mut rest = trimmed;
        loop {
            let before = rest;
            for qualifier in ["pub ", "async ", "const ", "unsafe "] {
                rest = rest.strip_prefix(qualifier).unwrap_or(rest);
            }
            if let Some(after) = rest.strip_prefix("pub(") {
                rest = after.split_once(") ").map_or(rest, |(_, r)| r);
            }
            if rest == before {
                break;
            }
        }
        let Some(signature) = rest.strip_prefix("fn ") else {
            continue;
        };
        let name: String = signature
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect();
        let indent = &line[..line.len() - trimmed.len()];
        let closing = format!("{indent}}}");
        let mut end = None;
        for (offset, later) in lines[at..].iter().enumerate() {
            let later = later.trim_end();
            if offset == 0 && later.ends_with('}') {
                end = Some(at);
                break;
            }
            if later.ends_with(';')
                && !lines[at..=at + offset]
                    .iter()
                    .any(|l| l.trim_end().ends_with('{'))
            {
                break; // a declaration without a body
            }
            if later == closing {
                end = Some(at + offset);
                break;
            }
        }
        if let Some(end) = end {
            found.push((name, at + 1, end - at + 1));
        }
    }
    found
}

#[test]
fn functions_on_the_booking_commit_and_coordination_paths_are_a_screen_long() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut long = Vec::new();
    let mut stack: Vec<_> = SHORT_FUNCTIONS_IN.iter().map(|p| src.join(p)).collect();
    while let Some(path) = stack.pop() {
        if path.is_dir() {
            for entry in std::fs::read_dir(&path).expect("a readable folder") {
                stack.push(entry.expect("an entry").path());
            }
            continue;
        }
        if path.extension().is_none_or(|e| e != "rs") {
            continue;
        }
        let code = code_of(&std::fs::read_to_string(&path).expect("a source file"));
        for (name, _, lines) in functions(&code) {
            if lines > FUNCTION_LINES_MAX {
                let file = path.strip_prefix(&src).expect("under src").display();
                long.push(format!("{file}: {name} is {lines} lines"));
            }
        }
    }
    assert!(
        long.is_empty(),
        "longer than {FUNCTION_LINES_MAX} lines (split them, see src/boundaries.rs):\n{}",
        long.join("\n")
    );
}

#[test]
fn the_function_reader_measures_bodies_and_skips_declarations() {
    let code = "impl X {\n    pub(crate) async fn a(\n        x: u8,\n    ) -> u8 {\n        x\n    }\n    fn b(&self);\n    fn c(\n        &self,\n    ) -> u8;\n    const fn d() -> u8 { 1 }\n}\n";
    let found = functions(code);
    assert_eq!(
        found,
        [("a".to_owned(), 2, 5), ("d".to_owned(), 11, 1)],
        "{found:?}"
    );
}

/// ARCHITECTURE's "Boundaries" table is `LAYERS`, row for row: a newcomer
/// reads the rule where it is explained, and it cannot drift from the test.
#[test]
fn the_architecture_documents_the_layers_as_they_are() {
    let doc =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("ARCHITECTURE.md"))
            .expect("ARCHITECTURE.md");
    let section = doc
        .split("\n## Boundaries\n")
        .nth(1)
        .and_then(|rest| rest.split("\n## ").next())
        .expect("a Boundaries section");
    let documented: Vec<Vec<String>> = section
        .lines()
        .filter_map(|line| {
            let cells: Vec<&str> = line.split('|').map(str::trim).collect();
            // `| 3 | `catalog`, `accounts` | … |`
            cells.get(1)?.parse::<usize>().ok()?;
            Some(
                cells[2]
                    .split(',')
                    .map(|name| name.trim().trim_matches('`').to_owned())
                    .collect(),
            )
        })
        .collect();
    let actual: Vec<Vec<String>> = LAYERS
        .iter()
        .map(|layer| layer.iter().map(|m| (*m).to_owned()).collect())
        .collect();
    assert_eq!(
        documented, actual,
        "ARCHITECTURE.md's Boundaries table against LAYERS"
    );
}
