//! The user programs built from user/programs and embedded in the kernel image (see
//! kernel/build.rs).

include!(concat!(env!("OUT_DIR"), "/programs.rs"));
