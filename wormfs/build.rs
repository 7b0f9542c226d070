//! Generates the gRPC code from `proto/wormfs.proto` when the `rpc` feature is on, and the
//! node-to-node messages from `proto/wormfs_p2p.proto` when the `cluster` feature is on.
//!
//! `protoc` comes from the `protoc-bin-vendored` crate, so a machine with only the Rust
//! toolchain builds WormFS; `PROTOC` names another one, and a platform the crate has no
//! binary for uses the `protoc` on the `PATH`.

/// Messages the admin REST API sends as JSON.
#[cfg(feature = "rpc")]
const REST_ANSWERS: &[&str] = &[
    "ClusterStatusReply",
    "NodeStatus",
    "DiskStatus",
    "PolicyInfo",
    "PolicyReply",
    "FileLayoutReply",
    "Attr",
    "Layout",
    "StripeLayout",
    "ChunkLayout",
    "WorkersReply",
    "WorkerInfo",
    "RiskReply",
    "FileRisk",
    "UsersReply",
    "UserInfo",
    "TokensReply",
    "TokenInfo",
    "ReadDirReply",
    "DirEntry",
    "AddNodeReply",
];

/// Messages the admin REST API takes as JSON bodies.
#[cfg(feature = "rpc")]
const REST_BODIES: &[&str] = &[
    "WorkerRequest",
    "RiskRequest",
    "DiskRequest",
    "AddNodeRequest",
    "SetPolicyRequest",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    if std::env::var_os("CARGO_FEATURE_RPC").is_none() {
        return Ok(());
    }
    #[cfg(feature = "rpc")]
    {
        println!("cargo:rerun-if-env-changed=PROTOC");
        if std::env::var_os("PROTOC").is_none() {
            if let Ok(vendored) = protoc_bin_vendored::protoc_bin_path() {
                // SAFETY (for editions where this is unsafe): a build script runs one
                // thread, and nothing reads the environment concurrently.
                std::env::set_var("PROTOC", vendored);
            }
        }
        // `proto` is a link to the workspace's `proto/`, so a published package holds it too.
        let proto = "proto/wormfs.proto";
        println!("cargo:rerun-if-changed={proto}");
        let mut config = tonic_prost_build::configure()
            // Stripe pieces are sliced from and into buffers without copying.
            .bytes(".wormfs.v1.StripePiece.data");
        // The messages the admin REST API answers with (`wormfs::admin`): JSON, and
        // described in its OpenAPI document.
        for m in REST_ANSWERS {
            config = config.type_attribute(
                format!(".wormfs.v1.{m}"),
                "#[derive(serde::Serialize)] #[cfg_attr(feature = \"node\", derive(utoipa::ToSchema))]",
            );
        }
        for m in REST_BODIES {
            config = config.type_attribute(
                format!(".wormfs.v1.{m}"),
                "#[derive(serde::Deserialize)] #[serde(default)] #[cfg_attr(feature = \"node\", derive(utoipa::ToSchema))]",
            );
        }
        config
            .build_server(true)
            .build_client(true)
            .compile_protos(&[proto], &["proto"])?;
        if std::env::var_os("CARGO_FEATURE_CLUSTER").is_some() {
            let p2p = "proto/wormfs_p2p.proto";
            println!("cargo:rerun-if-changed={p2p}");
            tonic_prost_build::configure()
                .build_server(false)
                .build_client(false)
                .compile_protos(&[p2p], &["proto"])?;
        }
    }
    Ok(())
}
