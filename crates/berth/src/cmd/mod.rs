//! One module per subcommand.

pub mod check;
pub mod client;
pub mod follow;
pub mod redis_access;
pub mod server;
pub mod tenant;
pub mod token;
pub mod up;
pub mod worker;
