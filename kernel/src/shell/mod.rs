//! The console shell: the kernel binary's main program.
//!
//! With arguments on the command line (`cargo run -- mem ";" poweroff`, i.e. the text after
//! `--`), it runs those `;`-separated commands and powers off. The exit status is 1 if any
//! command failed, 0 otherwise (for `poweroff` in a session too). Otherwise it prompts on the console. A line editor handles backspace, Ctrl-U (erase
//! line) and Ctrl-C (discard line); end of input (Ctrl-D, which the host runner also sends when
//! its standard input ends) powers off.

mod blk;
mod commands;
mod line;
mod trace;
mod vm;

use crate::{print, println};
use alloc::string::String;
use core::fmt;
use core::sync::atomic::{AtomicBool, Ordering};
use line::{LineEditor, LineEvent};

/// A command's failure, printed as one line `error: <message>`.
pub struct CommandError(String);

impl CommandError {
    pub fn new(message: impl Into<String>) -> Self {
        Self(message.into())
    }
}

impl fmt::Display for CommandError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<fmt::Error> for CommandError {
    fn from(_: fmt::Error) -> Self {
        Self(String::from("console output failed"))
    }
}

pub type CommandResult = Result<(), CommandError>;

/// One shell command.
pub struct Command {
    pub name: &'static str,
    /// Arguments, e.g. `DEV SECTOR [COUNT]`.
    pub usage: &'static str,
    pub help: &'static str,
    pub run: fn(&[&str]) -> CommandResult,
}

/// Set when any command failed; the exit status then is 1.
static ANY_FAILED: AtomicBool = AtomicBool::new(false);

/// Runs one command line (one command and its arguments); false if it failed.
pub fn execute(line: &str) -> bool {
    let mut words = line.split_whitespace();
    let Some(name) = words.next() else {
        return true;
    };
    let args: alloc::vec::Vec<&str> = words.collect();
    let result = match commands::find(name) {
        Some(command) => {
            (command.run)(&args).map_err(|err| alloc::format!("{}: {err}", command.name))
        }
        None => Err(alloc::format!(
            "unknown command `{name}` (type `help` for the list)"
        )),
    };
    if let Err(message) = &result {
        println!("error: {message}");
        ANY_FAILED.store(true, Ordering::Relaxed);
    }
    result.is_ok()
}

/// Leaves the shell: exit status 1 if any command failed, else 0.
pub fn power_off() -> ! {
    crate::power::exit(u32::from(ANY_FAILED.load(Ordering::Relaxed)))
}

/// The kernel binary's main function.
pub fn run() -> ! {
    let script = crate::cmdline::args()
        .collect::<alloc::vec::Vec<_>>()
        .join(" ");
    if !script.is_empty() {
        for line in script
            .split(';')
            .map(str::trim)
            .filter(|line| !line.is_empty())
        {
            println!("> {line}");
            execute(line);
        }
        power_off();
    }

    println!("\nType `help` for commands; Ctrl-D or `poweroff` to quit.");
    let mut editor = LineEditor::new();
    loop {
        print!("> ");
        let line = loop {
            let byte = crate::console::read_byte();
            match editor.feed(byte) {
                LineEvent::Echo(text) => print!("{text}"),
                LineEvent::Line(line) => {
                    println!();
                    break Some(line);
                }
                LineEvent::Cancel => {
                    println!("^C");
                    break None;
                }
                LineEvent::EndOfInput => {
                    println!();
                    power_off();
                }
                LineEvent::None => {}
            }
        };
        if let Some(line) = line {
            execute(&line);
        }
    }
}
