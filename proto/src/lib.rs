//! Shopeezy's gRPC contracts (`proto/`), generated at build time for both the
//! servers and the clients of the workspace.

/// `shopeezy.auth.v1`: the account service's `AuthService`.
pub mod auth {
    /// Version 1 of the authentication contract.
    pub mod v1 {
        #![allow(missing_docs, clippy::all)]
        tonic::include_proto!("shopeezy.auth.v1");
    }
}

pub mod client;

/// The encoded file descriptors of every service here, for gRPC reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("shopeezy_descriptor");
