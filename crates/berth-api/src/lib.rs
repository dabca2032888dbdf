//! # berth-api
//!
//! The berth server's HTTP API as Rust types, and a typed client.
//!
//! - [`spec`]: [`ContainerSpec`], what a client submits, and its validation into a
//!   [`berth_core::ContainerRequest`] ([`ContainerSpec::into_request`]). A container's
//!   timeout travels to its worker in the environment under [`spec::TIMEOUT_ENV`].
//! - [`types`]: every other body: container and worker views, the worker protocol
//!   (registration, heartbeats, assignments, status reports, releases), demand and the
//!   invariant check.
//! - [`error`](mod@error): [`ErrorBody`], the body of every error response, its
//!   [`ErrorCode`] (one HTTP status each) and [`ApiError`], the validation error.
//! - [`client`]: [`Client`], one method per endpoint; [`ClientError`] carries the server's
//!   [`ErrorBody`] and status, or says how to start a server when none answers.
//!
//! Every type derives [`utoipa::ToSchema`], so the server's OpenAPI document describes
//! exactly these shapes. Request bodies refuse unknown fields.

pub mod client;
pub mod error;
pub mod secret_file;
pub mod spec;
pub mod types;

pub use client::{Client, ClientError};
pub use error::{ApiError, ErrorBody, ErrorCode};
pub use spec::{ContainerSpec, FallbackSpec, GpuSpec, GpuTypes, TIMEOUT_ENV};
pub use types::*;
