//! The `sixpath-client` binary.

fn main() {
    eprintln!(
        "sixpath-client {}: not built yet in this release",
        env!("CARGO_PKG_VERSION")
    );
    std::process::exit(2);
}
