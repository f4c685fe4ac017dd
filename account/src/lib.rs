//! Shopeezy's account service: users and roles, argon2id passwords, Ed25519
//! JWT access tokens with revocation, a REST API for people and the gRPC
//! `AuthService` for other services.

pub mod admins;
pub mod auth;
pub mod config;
pub mod domain;
pub mod error;
pub mod feed;
pub mod grpc;
pub mod http;
pub mod kv;
pub mod passwords;
pub mod revocation;
pub mod startup;
pub mod store;
pub mod throttle;
pub mod tokens;

pub use config::Config;
pub use startup::Application;
