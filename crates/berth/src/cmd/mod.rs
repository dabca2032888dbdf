//! One module per subcommand.

pub mod bench;
pub mod client;
pub mod demo;
pub mod server;
pub mod up;
pub mod worker;
