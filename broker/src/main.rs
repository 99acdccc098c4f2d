//! `rafka-broker`: the broker binary.

fn main() {
    let arg = std::env::args().nth(1);
    match arg.as_deref() {
        Some("--version") | Some("-V") => println!("rafka-broker {}", env!("CARGO_PKG_VERSION")),
        _ => {
            eprintln!(
                "rafka-broker {}: the broker is not implemented yet; this build provides the \
                 storage layer (crate rafka-raft) and the wire contract (crate rafka-proto).",
                env!("CARGO_PKG_VERSION")
            );
            std::process::exit(2);
        }
    }
}
