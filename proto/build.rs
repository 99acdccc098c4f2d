//! Compiles `proto/rafka/v1/*.proto` with protox (pure Rust: no protoc binary needed).

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let files = ["proto/rafka/v1/rafka.proto", "proto/rafka/v1/groups.proto"];
    for f in &files {
        println!("cargo:rerun-if-changed={f}");
    }
    let fds = protox::compile(files, ["proto"])?;
    tonic_prost_build::configure()
        // Batches travel as `Bytes` from socket to segment file and back, without copies.
        .bytes(".rafka.v1")
        .compile_fds(fds)?;
    Ok(())
}
