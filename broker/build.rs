//! Compiles the brokers' internal contract (`proto/internal.proto`) with protox: no protoc.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let files = ["proto/internal.proto"];
    for f in &files {
        println!("cargo:rerun-if-changed={f}");
    }
    let fds = protox::compile(files, ["proto"])?;
    tonic_prost_build::configure().compile_fds(fds)?;
    Ok(())
}
