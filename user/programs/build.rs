//! Links every program with user/user.ld (EL0 layout, one segment per permission set).
fn main() {
    let manifest = std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    let script = std::path::Path::new(&manifest).join("../user.ld");
    let script = script.canonicalize().expect("user/user.ld exists");
    println!("cargo:rerun-if-changed={}", script.display());
    println!("cargo:rustc-link-arg=-T{}", script.display());
}
