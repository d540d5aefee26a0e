//! Links the guest as a static Linux executable at 0x40_0000, away from page zero and from
//! Linux's `mmap_min_addr`; rust-lld's default layout then gives separate read-only, executable
//! and writable PT_LOAD segments, which is all Linux's ELF loader needs.
fn main() {
    if std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("none") {
        println!("cargo:rustc-link-arg-bins=--image-base=0x400000");
        println!("cargo:rustc-link-arg-bins=--entry=_start");
    }
}
