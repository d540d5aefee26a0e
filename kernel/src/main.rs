//! The kernel image: boots, then runs the shell on the console.
#![no_std]
#![no_main]

kernel::entry_point!(kernel::shell::run);
