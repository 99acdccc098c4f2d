//! Compiles the internal Raft transport contract (`proto/raft.proto`) with protox: no protoc.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let files = ["proto/raft.proto"];
    for f in &files {
        println!("cargo:rerun-if-changed={f}");
    }
    let fds = protox::compile(files, ["proto"])?;
    tonic_prost_build::configure()
        // Entry payloads travel as `Bytes`: decoded straight out of the receive buffer.
        .bytes(".rafka.raft.v1")
        .compile_fds(fds)?;
    Ok(())
}
