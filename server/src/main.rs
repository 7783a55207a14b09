//! The `sixpath-server` binary.

fn main() {
    eprintln!(
        "sixpath-server {}: not built yet in this release",
        env!("CARGO_PKG_VERSION")
    );
    std::process::exit(2);
}
