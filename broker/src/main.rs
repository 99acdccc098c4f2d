//! `rafka-broker`: the broker binary (being written).

fn main() {
    println!("rafka-broker {}", env!("CARGO_PKG_VERSION"));
}
