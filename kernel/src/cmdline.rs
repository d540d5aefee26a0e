//! The kernel command line (devicetree `/chosen/bootargs`, QEMU `-append`).
//!
//! Format: `[key=value ...] [-- ARGS]`. Before `--` come kernel parameters (`loglevel=debug`,
//! `reclaim=clock`, ...); after it come the arguments of the image's main program: shell
//! commands separated by `;` for the kernel, test filters for test images.

use spin::Once;

static CMDLINE: Once<&'static str> = Once::new();

/// Records the command line (the DTB it lives in stays reserved, hence `'static`).
pub fn init(bootargs: &'static str) {
    CMDLINE.call_once(|| bootargs.trim_matches(char::from(0)).trim());
}

/// The whole command line.
pub fn raw() -> &'static str {
    CMDLINE.get().copied().unwrap_or("")
}

/// Splits a command line into (parameters, arguments) at the first standalone `--`.
fn split(line: &str) -> (&str, &str) {
    let mut offset = 0;
    for word in line.split(' ') {
        if word == "--" {
            return (line[..offset].trim(), line[offset + 2..].trim());
        }
        offset += word.len() + 1;
    }
    (line.trim(), "")
}

fn param_in<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    split(line)
        .0
        .split_whitespace()
        .find_map(|word| word.strip_prefix(key)?.strip_prefix('='))
}

/// Value of kernel parameter `key` (`key=value` before `--`).
pub fn param(key: &str) -> Option<&'static str> {
    param_in(raw(), key)
}

/// Everything after `--`, as one string (quotes kept).
pub fn args_str() -> &'static str {
    split(raw()).1
}

/// Splits `text` into words at whitespace; a double-quoted run (the runner quotes arguments
/// that contain spaces) is one word, without its quotes.
fn words(text: &str) -> impl Iterator<Item = &str> {
    let mut rest = text.trim_start();
    core::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let (word, tail) = match rest.strip_prefix('"') {
            Some(quoted) => match quoted.split_once('"') {
                Some((word, tail)) => (word, tail),
                None => (quoted, ""),
            },
            None => rest.split_at(rest.find(char::is_whitespace).unwrap_or(rest.len())),
        };
        rest = tail.trim_start();
        Some(word)
    })
}

/// The words after `--`.
pub fn args() -> impl Iterator<Item = &'static str> {
    words(args_str())
}

#[cfg(test)]
mod tests {
    use super::{param_in, split, words};
    use crate::ktest::prelude::*;

    ktest! {
        fn parameters_and_arguments_are_split_at_double_dash() -> TestResult {
            check_eq!(split("loglevel=debug -- mem ; poweroff"), ("loglevel=debug", "mem ; poweroff"));
            check_eq!(split("-- paging"), ("", "paging"));
            check_eq!(split("reclaim=clock"), ("reclaim=clock", ""));
            check_eq!(split("a=1 -- x -- y"), ("a=1", "x -- y"));
            check_eq!(split("a=--b"), ("a=--b", ""));
            check_eq!(split(""), ("", ""));
            Ok(())
        }

        fn quoted_arguments_are_single_words() -> TestResult {
            let collected: alloc::vec::Vec<&str> = words(r#"mem "a b" ; "" "mem; poweroff" x"#).collect();
            check_eq!(collected, ["mem", "a b", ";", "", "mem; poweroff", "x"]);
            check_eq!(words("  ").count(), 0);
            check_eq!(words(r#""unterminated"#).collect::<alloc::vec::Vec<_>>(), ["unterminated"]);
            Ok(())
        }

        fn parameters_are_found_by_key() -> TestResult {
            let line = "loglevel=debug reclaim=clock -- reclaim=lru2";
            check_eq!(param_in(line, "reclaim"), Some("clock"));
            check_eq!(param_in(line, "loglevel"), Some("debug"));
            check_eq!(param_in(line, "log"), None);
            check_eq!(param_in(line, "missing"), None);
            Ok(())
        }
    }
}
