//! The command line: what a run is asked to do, checked before anything starts. Bad
//! arguments are clap usage errors, which exit with code 2.

use std::path::PathBuf;

/// The longest run accepted, in seconds (a day).
pub const MAX_SECONDS: u64 = 86_400;

/// `berth-chaos --seconds N --seed S [--cluster] [--json PATH] [--berth PATH] [--keep]`.
#[derive(Debug, Clone, PartialEq, Eq, clap::Parser)]
#[command(
    name = "berth-chaos",
    about = "Runs real Redis, berth server and worker processes under load while a seeded \
             fault injector kills, stops and pauses them; then verifies that no accepted \
             request was lost, none was placed twice and no capacity leaked."
)]
pub struct Args {
    /// How long the load and the faults last, in seconds (1 to 86400). Start-up and the
    /// final drain come on top.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=MAX_SECONDS))]
    pub seconds: u64,
    /// The seed of the fault schedule and of the load: the same seed gives the same
    /// schedule and the same sequence of requests.
    #[arg(long)]
    pub seed: u64,
    /// Run on a 6-node Redis Cluster instead of a standalone Redis (adds primary kills).
    #[arg(long)]
    pub cluster: bool,
    /// Also write the summary as JSON to this file.
    #[arg(long, value_name = "PATH")]
    pub json: Option<PathBuf>,
    /// The `berth` binary to run (default: built with cargo when run by cargo, else the
    /// one next to this executable).
    #[arg(long, value_name = "PATH")]
    pub berth: Option<PathBuf>,
    /// Keep the temporary directory (logs, the start log) even when the run passes.
    #[arg(long)]
    pub keep: bool,
    /// The workers' container runtime: `process`, or `runc` (each container under runc
    /// with its booked limits; the start log is bound into every container).
    #[arg(long, default_value = "process", value_parser = ["process", "runc"])]
    pub runtime: String,
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // Tests may unwrap.
mod tests {
    use super::*;
    use clap::Parser;

    fn parse(args: &[&str]) -> Result<Args, clap::Error> {
        Args::try_parse_from(std::iter::once("berth-chaos").chain(args.iter().copied()))
    }

    #[test]
    fn a_full_command_line_parses() {
        let args = parse(&[
            "--seconds",
            "60",
            "--seed",
            "7",
            "--cluster",
            "--json",
            "out.json",
            "--keep",
        ])
        .unwrap();
        assert_eq!(args.seconds, 60);
        assert_eq!(args.seed, 7);
        assert!(args.cluster && args.keep);
        assert_eq!(args.json, Some(PathBuf::from("out.json")));
        assert_eq!(args.berth, None);
    }

    #[test]
    fn bad_arguments_are_usage_errors_with_exit_code_2() {
        for bad in [
            &["--seconds", "0", "--seed", "1"][..],
            &["--seconds", "ten", "--seed", "1"],
            &["--seconds", "-5", "--seed", "1"],
            &["--seconds", "86401", "--seed", "1"],
            &["--seconds", "60", "--seed", "x"],
            &["--seconds", "60"],
            &["--seed", "1"],
            &["--seconds", "60", "--seed", "1", "--workers", "3"],
        ] {
            let error = parse(bad).unwrap_err();
            assert_eq!(error.exit_code(), 2, "{bad:?}: {error}");
        }
    }
}
