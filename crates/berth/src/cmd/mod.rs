//! One module per subcommand.

pub mod check;
pub mod client;
pub mod server;
pub mod up;
pub mod worker;
