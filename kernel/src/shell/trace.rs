//! The `trace` command: log output per subsystem (see `kernel::trace`).

use super::{CommandError, CommandResult};
use crate::println;

pub const USAGE: &str = "[SUBSYSTEM on|off]";
pub const HELP: &str = "debug and trace log output per subsystem; `trace` lists them";

pub fn run(args: &[&str]) -> CommandResult {
    match args {
        [] => {
            println!("loglevel={}", crate::trace::level().as_str().to_lowercase());
            for (subsystem, traced) in crate::trace::subsystems() {
                let state = if traced { "on" } else { "off" };
                let setting = alloc::format!("{}={state}", subsystem.name);
                println!("{setting:<12} {}", subsystem.shows);
            }
            Ok(())
        }
        [name, switch @ ("on" | "off")] => crate::trace::set_traced(name, *switch == "on")
            .map_err(|err| CommandError::new(alloc::format!("{err}"))),
        _ => Err(CommandError::new("usage: trace [SUBSYSTEM on|off]")),
    }
}
