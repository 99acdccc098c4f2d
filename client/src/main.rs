//! `rafka`: the command-line tool.

fn main() {
    let arg = std::env::args().nth(1);
    match arg.as_deref() {
        Some("--version") | Some("-V") => println!("rafka {}", env!("CARGO_PKG_VERSION")),
        _ => {
            eprintln!("rafka {}: the CLI is not implemented yet.", env!("CARGO_PKG_VERSION"));
            std::process::exit(2);
        }
    }
}
