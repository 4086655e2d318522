//! `cargo airlock push`: OCI distribution API client that uploads layouts to registries.
//! The only module besides `vendor` that touches the network.
