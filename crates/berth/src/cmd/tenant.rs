//! `berth tenant set | list | show | remove`: tenants' quotas and weights, and what each
//! holds (with an admin token; a client token may `show` its own tenant).

use super::client::{Connection, print, table};
use crate::units::{UnitError, parse_cpu, parse_gpus, parse_memory};
use berth_api::{QuotaView, TenantSpec, TenantView};
use std::collections::BTreeMap;

/// What to do with tenants.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum TenantAction {
    /// Sets a tenant's quota and weight, replacing its earlier ones (limits not given do
    /// not apply). Every replica enforces it within a second.
    Set {
        /// The tenant.
        name: String,
        #[command(flatten)]
        limits: LimitArgs,
    },
    /// Lists every tenant with a policy or holding something.
    List,
    /// Shows one tenant's policy and what it holds.
    Show {
        /// The tenant.
        name: String,
    },
    /// Removes a tenant's policy: no limits and weight 1 from then on.
    Remove {
        /// The tenant.
        name: String,
    },
}

/// A tenant's limits and weight on the command line.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct LimitArgs {
    /// Containers scheduled or running at once.
    #[arg(long)]
    pub containers: Option<u64>,
    /// CPU at once, as `16` or `1500m`.
    #[arg(long, value_parser = parse_cpu)]
    pub cpu: Option<u64>,
    /// Memory at once, as `64Gi`.
    #[arg(long, value_parser = parse_memory)]
    pub memory: Option<u64>,
    /// GPUs of every type at once, as `4` or `2.5`.
    #[arg(long, value_parser = parse_gpus)]
    pub gpus: Option<u64>,
    /// GPUs of one type at once, as `H100=2` (repeatable).
    #[arg(long = "gpus-of", value_parser = parse_typed_gpus)]
    pub gpus_of: Vec<(String, u64)>,
    /// Its share of contended capacity relative to other tenants (1 to 10000; default 1).
    #[arg(long)]
    pub weight: Option<u32>,
}

impl LimitArgs {
    /// The API's policy body.
    pub fn to_spec(&self) -> TenantSpec {
        TenantSpec {
            quota: QuotaView {
                containers: self.containers,
                cpu_millicores: self.cpu,
                memory_mib: self.memory,
                gpu_milli: self.gpus,
                gpu_milli_by_type: self.gpus_of.iter().cloned().collect::<BTreeMap<_, _>>(),
            },
            weight: self.weight,
        }
    }
}

/// `TYPE=GPUS`, e.g. `H100=2`.
fn parse_typed_gpus(input: &str) -> Result<(String, u64), UnitError> {
    let Some((gpu_type, amount)) = input.split_once('=') else {
        return Err(UnitError {
            what: "gpus-of",
            input: input.to_owned(),
            problem: "expected TYPE=GPUS, e.g. H100=2".to_owned(),
        });
    };
    Ok((gpu_type.trim().to_owned(), parse_gpus(amount)?))
}

/// Runs the action; the exit code is 0 on success.
pub async fn run(connection: &Connection, action: TenantAction) -> anyhow::Result<i32> {
    let client = connection.client()?;
    match action {
        TenantAction::Set { name, limits } => {
            let tenant = client.put_tenant(&name, &limits.to_spec()).await?;
            print(connection, &tenant, |t| {
                outln!("{}", tenants_table(std::slice::from_ref(t)))
            })?;
        }
        TenantAction::List => {
            let tenants = client.tenants().await?;
            print(connection, &tenants, |t| outln!("{}", tenants_table(t)))?;
        }
        TenantAction::Show { name } => {
            let tenant = client.tenant(&name).await?;
            print(connection, &tenant, |t| {
                outln!("{}", tenants_table(std::slice::from_ref(t)))
            })?;
        }
        TenantAction::Remove { name } => {
            let tenant = client.remove_tenant(&name).await?;
            print(connection, &tenant, |t| {
                outln!("removed the policy of tenant {}", t.name)
            })?;
        }
    }
    Ok(0)
}

/// `used/limit`, or `used` without a limit.
fn of(used: u64, limit: Option<u64>, unit: impl Fn(u64) -> String) -> String {
    match limit {
        Some(limit) => format!("{}/{}", unit(used), unit(limit)),
        None => unit(used),
    }
}

fn tenants_table(tenants: &[TenantView]) -> comfy_table::Table {
    let mut table = table([
        "TENANT",
        "WEIGHT",
        "CONTAINERS",
        "CPU",
        "MEMORY",
        "GPUS",
        "GPUS BY TYPE",
    ]);
    let plain = |n: u64| n.to_string();
    let cpu = |m: u64| format!("{m}m");
    let mem = |m: u64| format!("{m}Mi");
    let gpus = |m: u64| format!("{}.{:03}", m / 1000, m % 1000);
    for t in tenants {
        let (u, q) = (&t.usage, &t.quota);
        let mut types: Vec<&String> = q
            .gpu_milli_by_type
            .keys()
            .chain(u.gpu_milli_by_type.keys())
            .collect();
        types.sort();
        types.dedup();
        let by_type: Vec<String> = types
            .into_iter()
            .map(|ty| {
                let used = u.gpu_milli_by_type.get(ty).copied().unwrap_or(0);
                format!(
                    "{ty} {}",
                    of(used, q.gpu_milli_by_type.get(ty).copied(), gpus)
                )
            })
            .collect();
        table.add_row([
            t.name.clone(),
            t.weight.to_string(),
            of(u.containers, q.containers, plain),
            of(u.cpu_millicores, q.cpu_millicores, cpu),
            of(u.memory_mib, q.memory_mib, mem),
            of(u.gpu_milli, q.gpu_milli, gpus),
            by_type.join(", "),
        ]);
    }
    table
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // Tests may unwrap.
mod tests {
    use super::*;

    #[test]
    fn gpus_parse_whole_and_fractions() {
        assert_eq!(parse_gpus("4"), Ok(4000));
        assert_eq!(parse_gpus("2.5"), Ok(2500));
        assert_eq!(parse_typed_gpus("H100=2"), Ok(("H100".to_owned(), 2000)));
        assert!(parse_typed_gpus("H100").is_err());
        assert_eq!(parse_gpus("x").unwrap_err().what, "gpus");
    }
}
