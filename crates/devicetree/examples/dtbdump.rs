//! Prints a DTB file as the kernel shell's `dtb` command would: the tree, then the machine
//! summary. `cargo run -p devicetree --example dtbdump --target host-tuple -- FILE.dtb`
use std::process::ExitCode;

use devicetree::{Fdt, MachineInfo, write_summary, write_tree};

fn main() -> ExitCode {
    let Some(path) = std::env::args().nth(1) else {
        eprintln!("usage: dtbdump FILE.dtb");
        return ExitCode::FAILURE;
    };
    let blob = match std::fs::read(&path) {
        Ok(blob) => blob,
        Err(error) => {
            eprintln!("{path}: {error}");
            return ExitCode::FAILURE;
        }
    };
    let fdt = match Fdt::new(&blob) {
        Ok(fdt) => fdt,
        Err(error) => {
            eprintln!("{path}: {error}");
            return ExitCode::FAILURE;
        }
    };
    let mut text = String::new();
    // Writing to a String cannot fail.
    let _ = write_tree(&fdt, &mut text);
    print!("{text}");
    match MachineInfo::from_fdt(&fdt) {
        Ok(info) => {
            text.clear();
            let _ = write_summary(&info, &mut text);
            print!("{text}");
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("{path}: {error}");
            ExitCode::FAILURE
        }
    }
}
