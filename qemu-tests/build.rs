//! Links each bare-metal kernel with its architecture's linker script.

fn main() {
    let dir = std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    let os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    let arch = std::env::var("CARGO_CFG_TARGET_ARCH").unwrap_or_default();
    if os == "none" {
        println!("cargo:rustc-link-arg-bins=-T{dir}/link/{arch}.ld");
        println!("cargo:rerun-if-changed=link/{arch}.ld");
    }
}
