//! Generates the gRPC code from `auth/v1/auth.proto` with a vendored `protoc`,
//! so a fresh clone needs no system protobuf compiler.

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protoc = protoc_bin_vendored::protoc_bin_path()?;
    let include = protoc_bin_vendored::include_path()?;
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    let mut config = tonic_prost_build::Config::new();
    config.protoc_executable(protoc);
    tonic_prost_build::configure()
        .file_descriptor_set_path(out_dir.join("shopeezy_descriptor.bin"))
        .compile_with_config(
            config,
            &[PathBuf::from("auth/v1/auth.proto")],
            &[PathBuf::from("."), include],
        )?;
    println!("cargo:rerun-if-changed=auth/v1/auth.proto");
    Ok(())
}
