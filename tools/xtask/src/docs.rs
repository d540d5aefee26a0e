//! `cargo xtask docs`: the documentation names only things that exist.
//!
//! For README.md and every `docs/**/*.md`:
//! - a relative link `[text](path#anchor)` names an existing file, and the anchor (when the
//!   target is Markdown) one of its headings, as GitHub makes anchors from headings;
//! - an inline code span that looks like a repository path (its first component is a top-level
//!   entry of the repository, other than `target/`) names an existing file or directory
//!   (`path:LINE` is allowed; spans with wildcards or placeholders such as `tests/NAME.rs`
//!   are skipped);
//! - `cargo test ... --test NAME` names a test file `tests/NAME.rs` of the workspace;
//! - `cargo xtask SUB` names a subcommand of this program;
//! - the first column of a table whose header starts with `command` holds shell commands the
//!   kernel has (the first word of each code span there is looked up in `kernel/src/shell/`).

use std::collections::BTreeSet;
use std::fmt;
use std::path::{Component, Path, PathBuf};

/// One thing in the docs that does not resolve.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The Markdown file, relative to the repository root.
    pub file: PathBuf,
    /// 1-based line number.
    pub line: usize,
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: {}", self.file.display(), self.line, self.message)
    }
}

/// What the docs are checked against.
pub struct Repository {
    root: PathBuf,
    /// `cargo xtask` subcommands.
    subcommands: Vec<&'static str>,
    /// The kernel shell's command names.
    shell_commands: BTreeSet<String>,
}

impl Repository {
    /// The repository at `root`; shell commands are read from `kernel/src/shell/`.
    pub fn new(root: &Path, subcommands: &[&'static str]) -> Result<Self, String> {
        let shell_dir = root.join("kernel/src/shell");
        let mut shell_commands = BTreeSet::new();
        let entries = std::fs::read_dir(&shell_dir)
            .map_err(|err| format!("cannot read {}: {err}", shell_dir.display()))?;
        for entry in entries.flatten() {
            let path = entry.path();
            if path.extension().is_some_and(|ext| ext == "rs") {
                let text = std::fs::read_to_string(&path)
                    .map_err(|err| format!("cannot read {}: {err}", path.display()))?;
                shell_commands.extend(command_names(&text));
            }
        }
        if shell_commands.is_empty() {
            return Err(format!(
                "no `Command {{ name: \"...\"` entries found in {}",
                shell_dir.display()
            ));
        }
        Ok(Self {
            root: root.to_path_buf(),
            subcommands: subcommands.to_vec(),
            shell_commands,
        })
    }

    /// README.md and docs/**/*.md, relative to the root, sorted.
    pub fn markdown_files(&self) -> Vec<PathBuf> {
        let mut files = vec![PathBuf::from("README.md")];
        let mut dirs = vec![PathBuf::from("docs")];
        while let Some(dir) = dirs.pop() {
            let Ok(entries) = std::fs::read_dir(self.root.join(&dir)) else {
                continue;
            };
            for entry in entries.flatten() {
                let relative = dir.join(entry.file_name());
                if entry.file_type().is_ok_and(|kind| kind.is_dir()) {
                    dirs.push(relative);
                } else if relative.extension().is_some_and(|ext| ext == "md") {
                    files.push(relative);
                }
            }
        }
        files.sort();
        files
    }

    /// Every problem in every Markdown file.
    pub fn check_all(&self) -> Vec<Problem> {
        let mut problems = Vec::new();
        for file in self.markdown_files() {
            match std::fs::read_to_string(self.root.join(&file)) {
                Ok(text) => problems.extend(self.check_file(&file, &text)),
                Err(err) => problems.push(Problem {
                    file,
                    line: 0,
                    message: format!("cannot read: {err}"),
                }),
            }
        }
        problems
    }

    /// The problems in `text`, the content of `file` (relative to the root).
    pub fn check_file(&self, file: &Path, text: &str) -> Vec<Problem> {
        let mut problems = Vec::new();
        let mut report = |line: usize, message: String| {
            problems.push(Problem {
                file: file.to_path_buf(),
                line,
                message,
            })
        };
        let dir = file.parent().unwrap_or(Path::new(""));
        let mut in_fence = false;
        let mut in_command_table = false;
        for (index, line) in text.lines().enumerate() {
            let number = index + 1;
            let trimmed = line.trim_start();
            if trimmed.starts_with("```") {
                in_fence = !in_fence;
                continue;
            }
            for name in test_names(line) {
                if !self.test_exists(&name) {
                    report(number, format!("`--test {name}`: no tests/{name}.rs"));
                }
            }
            for sub in xtask_subcommands(line) {
                if !self.subcommands.contains(&sub.as_str()) {
                    report(
                        number,
                        format!(
                            "`cargo xtask {sub}`: no such subcommand (have: {})",
                            self.subcommands.join(", ")
                        ),
                    );
                }
            }
            if in_fence {
                continue;
            }
            for target in link_targets(line) {
                if let Err(message) = self.check_link(dir, file, text, &target) {
                    report(number, message);
                }
            }
            for span in code_spans(line) {
                if let Some(path) = self.repository_path(span)
                    && !self.root.join(path).exists()
                {
                    report(number, format!("`{span}`: no such file or directory"));
                }
            }
            match table_cells(trimmed) {
                Some(cells)
                    if cells
                        .first()
                        .is_some_and(|c| c.eq_ignore_ascii_case("command")) =>
                {
                    in_command_table = true;
                }
                Some(cells) if in_command_table => {
                    let first = cells.first().map_or("", String::as_str);
                    for span in code_spans(first) {
                        let command = span.split_whitespace().next().unwrap_or("");
                        if !command.is_empty() && !self.shell_commands.contains(command) {
                            report(
                                number,
                                format!("`{span}`: the kernel shell has no command `{command}`"),
                            );
                        }
                    }
                }
                Some(_) => {}
                None => in_command_table = false,
            }
        }
        problems
    }

    fn test_exists(&self, name: &str) -> bool {
        let file = format!("{name}.rs");
        if self.root.join("tests").join(&file).is_file() {
            return true;
        }
        ["crates", "tools", "user"].iter().any(|group| {
            std::fs::read_dir(self.root.join(group)).is_ok_and(|entries| {
                entries
                    .flatten()
                    .any(|entry| entry.path().join("tests").join(&file).is_file())
            })
        })
    }

    /// Checks a link target as written in `file` (in directory `dir`, content `text`).
    fn check_link(&self, dir: &Path, file: &Path, text: &str, target: &str) -> Result<(), String> {
        if target.contains("://") || target.starts_with("mailto:") {
            return Ok(());
        }
        let (path, anchor) = match target.split_once('#') {
            Some((path, anchor)) => (path, Some(anchor)),
            None => (target, None),
        };
        let (resolved, content) = if path.is_empty() {
            (file.to_path_buf(), Some(text.to_string()))
        } else {
            let resolved = normalize(&dir.join(path))
                .ok_or_else(|| format!("link `{target}` leaves the repository"))?;
            if !self.root.join(&resolved).exists() {
                return Err(format!(
                    "broken link `{target}`: {} does not exist",
                    resolved.display()
                ));
            }
            (
                resolved.clone(),
                std::fs::read_to_string(self.root.join(&resolved)).ok(),
            )
        };
        match (anchor, content) {
            (Some(anchor), Some(content))
                if resolved.extension().is_some_and(|ext| ext == "md") =>
            {
                if heading_anchors(&content).contains(anchor) {
                    Ok(())
                } else {
                    Err(format!(
                        "broken link `{target}`: {} has no heading with anchor #{anchor}",
                        resolved.display()
                    ))
                }
            }
            _ => Ok(()),
        }
    }

    /// The repository path a code span names, if it looks like one.
    fn repository_path<'a>(&self, span: &'a str) -> Option<&'a str> {
        if span.is_empty()
            || span.contains(|c: char| c.is_whitespace() || "*<>{}$|…".contains(c))
            || span.contains("...")
        {
            return None;
        }
        let path = strip_line_suffix(span);
        // `tests/NAME.rs`: a placeholder, not a path.
        let placeholder = path.split('/').skip(1).any(|part| {
            let stem = part.split('.').next().unwrap_or(part);
            stem.len() > 1 && stem.bytes().all(|b| b.is_ascii_uppercase() || b == b'_')
        });
        let first = path.split('/').next()?;
        if placeholder {
            return None;
        }
        if first.is_empty() || first == "target" || first == "." || first == ".." {
            return None;
        }
        if !path.contains('/') && !path.contains('.') {
            return None;
        }
        self.root.join(first).exists().then_some(path)
    }
}

/// `path:12` or `path:12:3` -> `path`.
fn strip_line_suffix(span: &str) -> &str {
    let mut path = span;
    for _ in 0..2 {
        match path.rsplit_once(':') {
            Some((head, tail)) if !tail.is_empty() && tail.bytes().all(|b| b.is_ascii_digit()) => {
                path = head;
            }
            _ => break,
        }
    }
    path
}

/// `a/./b/../c` -> `a/c`; None if it climbs above the start.
fn normalize(path: &Path) -> Option<PathBuf> {
    let mut parts: Vec<&std::ffi::OsStr> = Vec::new();
    for component in path.components() {
        match component {
            Component::Normal(part) => parts.push(part),
            Component::CurDir => {}
            Component::ParentDir => {
                parts.pop()?;
            }
            Component::RootDir | Component::Prefix(_) => return None,
        }
    }
    Some(parts.iter().collect())
}

/// Inline code spans of a line (backtick runs of equal length delimit a span).
pub fn code_spans(line: &str) -> Vec<&str> {
    let mut spans = Vec::new();
    let mut rest = line;
    while let Some(start) = rest.find('`') {
        let ticks = rest[start..].bytes().take_while(|&b| b == b'`').count();
        let fence = &rest[start..start + ticks];
        let after = &rest[start + ticks..];
        match after.find(fence) {
            Some(end) => {
                spans.push(after[..end].trim());
                rest = &after[end + ticks..];
            }
            None => break,
        }
    }
    spans
}

/// Targets of inline links `[text](target)` outside code spans.
pub fn link_targets(line: &str) -> Vec<String> {
    let mut plain = String::with_capacity(line.len());
    let mut rest = line;
    // Blank out code spans so that `[a](b)` inside one is not a link.
    while let Some(start) = rest.find('`') {
        plain.push_str(&rest[..start]);
        let ticks = rest[start..].bytes().take_while(|&b| b == b'`').count();
        let after = &rest[start + ticks..];
        match after.find(&rest[start..start + ticks]) {
            Some(end) => rest = &after[end + ticks..],
            None => {
                rest = after;
                break;
            }
        }
    }
    plain.push_str(rest);
    let mut targets = Vec::new();
    let mut search = plain.as_str();
    while let Some(found) = search.find("](") {
        let after = &search[found + 2..];
        match after.find(')') {
            Some(end) => {
                let target = after[..end].split_whitespace().next().unwrap_or("");
                if !target.is_empty() {
                    targets.push(target.trim_matches(|c| c == '<' || c == '>').to_string());
                }
                search = &after[end..];
            }
            None => break,
        }
    }
    targets
}

/// GitHub's anchors for the headings of a Markdown text (`## Lab 1: Boot` -> `lab-1-boot`),
/// with `-1`, `-2`, ... for repeats.
pub fn heading_anchors(text: &str) -> BTreeSet<String> {
    let mut anchors = BTreeSet::new();
    let mut in_fence = false;
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            in_fence = !in_fence;
            continue;
        }
        if in_fence || !line.starts_with('#') {
            continue;
        }
        let title = line.trim_start_matches('#');
        if !title.starts_with(' ') {
            continue;
        }
        let slug: String = title
            .trim()
            .to_lowercase()
            .chars()
            .filter_map(|c| match c {
                ' ' => Some('-'),
                c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
                _ => None,
            })
            .collect();
        let mut candidate = slug.clone();
        let mut n = 0;
        while anchors.contains(&candidate) {
            n += 1;
            candidate = format!("{slug}-{n}");
        }
        anchors.insert(candidate);
    }
    anchors
}

/// The cells of a table row `| a | b |`, trimmed; None if the line is not one.
fn table_cells(line: &str) -> Option<Vec<String>> {
    let inner = line.strip_prefix('|')?.trim_end().strip_suffix('|')?;
    // Pipes inside code spans (`a|b`) do not split cells.
    let mut cells = Vec::new();
    let mut cell = String::new();
    let mut in_code = false;
    for c in inner.chars() {
        match c {
            '`' => {
                in_code = !in_code;
                cell.push(c);
            }
            '|' if !in_code => cells.push(std::mem::take(&mut cell)),
            _ => cell.push(c),
        }
    }
    cells.push(cell);
    Some(cells.into_iter().map(|c| c.trim().to_string()).collect())
}

/// Names after `--test ` / `--test=` in a line mentioning `cargo test`.
pub fn test_names(line: &str) -> Vec<String> {
    if !line.contains("cargo test") {
        return Vec::new();
    }
    let mut names = Vec::new();
    let mut rest = line;
    while let Some(found) = rest.find("--test") {
        let after = &rest[found + "--test".len()..];
        rest = after;
        let Some(value) = after.strip_prefix(' ').or_else(|| after.strip_prefix('=')) else {
            continue;
        };
        let name: String = value
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == '-')
            .collect();
        if !name.is_empty() && name.chars().any(|c| c.is_ascii_lowercase()) {
            names.push(name);
        }
    }
    names
}

/// Subcommands after `cargo xtask ` (`a|b|c` lists several).
pub fn xtask_subcommands(line: &str) -> Vec<String> {
    let mut subs = Vec::new();
    let mut rest = line;
    while let Some(found) = rest.find("cargo xtask ") {
        let after = &rest[found + "cargo xtask ".len()..];
        rest = after;
        let word: String = after
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '|' || *c == '_')
            .collect();
        subs.extend(
            word.split('|')
                .filter(|sub| !sub.is_empty())
                .map(str::to_string),
        );
    }
    subs
}

/// Names in `Command { name: "NAME"` entries of a Rust source.
fn command_names(source: &str) -> Vec<String> {
    const KEY: &str = "Command { name: \"";
    source
        .match_indices(KEY)
        .filter_map(|(at, _)| {
            let rest = &source[at + KEY.len()..];
            rest.find('"').map(|end| rest[..end].to_string())
        })
        .collect()
}

/// `cargo xtask docs`: prints every problem; true if there were none.
pub fn run(root: &Path, subcommands: &[&'static str]) -> bool {
    let repository = match Repository::new(root, subcommands) {
        Ok(repository) => repository,
        Err(err) => {
            eprintln!("xtask docs: {err}");
            return false;
        }
    };
    let files = repository.markdown_files();
    let problems = repository.check_all();
    for problem in &problems {
        println!("{problem}");
    }
    println!(
        "docs: {} files checked, {} problems",
        files.len(),
        problems.len()
    );
    problems.is_empty()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A scratch repository: files with content, removed on drop.
    struct Scratch(PathBuf);

    impl Scratch {
        fn new(name: &str, files: &[(&str, &str)]) -> Self {
            let root =
                std::env::temp_dir().join(format!("xtask-docs-{name}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&root);
            for (path, content) in files {
                let path = root.join(path);
                std::fs::create_dir_all(path.parent().unwrap()).unwrap();
                std::fs::write(path, content).unwrap();
            }
            Self(root)
        }

        fn problems(&self) -> Vec<String> {
            Repository::new(&self.0, &["test", "lint", "docs"])
                .unwrap()
                .check_all()
                .iter()
                .map(Problem::to_string)
                .collect()
        }
    }

    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    const COMMANDS: &str = r#"static COMMANDS: &[Command] = &[
    Command { name: "help", usage: "", help: "", run: help },
    Command { name: "blk", usage: "", help: "", run: blk },
];"#;

    fn base<'a>(extra: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
        let mut files = vec![
            ("kernel/src/shell/commands.rs", COMMANDS),
            ("tests/memory.rs", ""),
            ("tools/runner/tests/trace.rs", ""),
            (
                "docs/guide.md",
                "# Guide\n\n## Lab 1: Boot and console\n\ntext\n",
            ),
        ];
        files.extend_from_slice(extra);
        files
    }

    #[test]
    fn resolving_docs_have_no_problems() {
        let readme = "\
# Project
See [the guide](docs/guide.md), [lab 1](docs/guide.md#lab-1-boot-and-console),
[above](#project) and [the web](https://example.org/x.md).
Files: `kernel/src/shell/commands.rs`, `kernel/src/shell/commands.rs:2`, `tests/`,
`kernel::shell`, `tests/virtio_*.rs`, `tests/NAME.rs`, `target/qemu/disk0.img`, `src/hal.rs`.
Run `cargo test --test memory`, `cargo test --target host-tuple -p runner --test trace`,
`cargo xtask test|lint` and `cargo xtask docs`.

| command | what |
|---|---|
| `help` | list |
| `blk read DEV SECTOR` / `blk` | read |

| variable | meaning |
|---|---|
| `QEMU_CPU` | cpu |
```sh
cargo run -- mem   # [not a link](nowhere.md) `nowhere/at/all`
```
";
        let scratch = Scratch::new("clean", &base(&[("README.md", readme)]));
        assert_eq!(scratch.problems(), Vec::<String>::new());
    }

    #[test]
    fn each_kind_of_problem_is_reported_with_file_and_line() {
        let lab = "\
# Lab
Broken: [missing](../missing.md) and [bad anchor](../guide.md#lab-2).
A path: `kernel/src/nothing.rs:10`.

```sh
cargo test --test nonexistent
```
Then `cargo xtask frobnicate`.

| command | what |
|---|---|
| `blk` | fine |
| `stress zipf 64` | not in the kernel |
";
        let scratch = Scratch::new(
            "broken",
            &base(&[
                ("README.md", "# Readme\n[lab](docs/labs/01.md)\n"),
                ("docs/labs/01.md", lab),
            ]),
        );
        assert_eq!(
            scratch.problems(),
            [
                "docs/labs/01.md:2: broken link `../missing.md`: docs/missing.md does not exist",
                "docs/labs/01.md:2: broken link `../guide.md#lab-2`: docs/guide.md has no heading \
                 with anchor #lab-2",
                "docs/labs/01.md:3: `kernel/src/nothing.rs:10`: no such file or directory",
                "docs/labs/01.md:6: `--test nonexistent`: no tests/nonexistent.rs",
                "docs/labs/01.md:8: `cargo xtask frobnicate`: no such subcommand (have: test, \
                 lint, docs)",
                "docs/labs/01.md:13: `stress zipf 64`: the kernel shell has no command `stress`",
            ]
        );
    }

    #[test]
    fn links_may_not_leave_the_repository() {
        let scratch = Scratch::new("escape", &base(&[("README.md", "[x](../../etc/passwd)\n")]));
        assert_eq!(
            scratch.problems(),
            ["README.md:1: link `../../etc/passwd` leaves the repository"]
        );
    }

    #[test]
    fn anchors_follow_github_rules() {
        let anchors = heading_anchors(
            "# Lab 4: Page reclaim (MGLRU)\n## In the kernel\n## In the kernel\n\
             ```\n# not a heading\n```\n#hashtag\n### `trace` and gdb\n",
        );
        let expected: BTreeSet<String> = [
            "lab-4-page-reclaim-mglru",
            "in-the-kernel",
            "in-the-kernel-1",
            "trace-and-gdb",
        ]
        .into_iter()
        .map(String::from)
        .collect();
        assert_eq!(anchors, expected);
    }

    #[test]
    fn spans_links_and_commands_are_found_in_a_line() {
        assert_eq!(code_spans("a `b` c ``d `e` f`` `g"), ["b", "d `e` f"]);
        assert_eq!(
            link_targets("[a](x.md) `[b](y.md)` [c](<z.md>) [d](e.md \"title\")"),
            ["x.md", "z.md", "e.md"]
        );
        assert_eq!(
            test_names("cargo test --test a_b; cargo test --test=c -- --test-threads 1"),
            ["a_b", "c"]
        );
        assert!(test_names("to rerun pass `--test x`").is_empty());
        assert_eq!(
            xtask_subcommands("`cargo xtask test|host` or cargo xtask boot-matrix FILTER"),
            ["test", "host", "boot-matrix"]
        );
        assert_eq!(strip_line_suffix("a/b.rs:12:3"), "a/b.rs");
        assert_eq!(strip_line_suffix("a/b.rs:x"), "a/b.rs:x");
        assert_eq!(command_names(COMMANDS), ["help", "blk"]);
    }
}
