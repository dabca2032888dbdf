//! Tenants' quotas on Redis, on the intake's slot `{q}` (see [`crate::Quotas`]):
//! `P:{q}:tenants` (tenant -> policy JSON), `P:{q}:charges` (container -> charge) and
//! `P:{q}:usage` (tenant -> the sum of its charges). The hold is one script; a charge is
//! taken and given back inside the settle, transition, cancel and reclaim scripts, in the
//! same atomic step as the record's move.

use super::codec::corrupt;
use super::reply::{self, expect_text, part, tagged, unexpected};
use super::scripts::{SCRIPTS, ScriptCall};
use super::store::RedisStore;
use crate::{Hold, HoldOutcome, Result, StoreError};
use berth_core::invariants::Dump;
use berth_core::quota::Exceeded;
use berth_core::{Charge, ContainerId, GpuType, Tenant, TenantName, Usage};
use redis::{Value, cmd};

impl RedisStore {
    /// HSET of one policy.
    pub(super) async fn store_tenant(&self, tenant: &Tenant) -> Result<()> {
        tenant
            .validate()
            .map_err(|e| StoreError::InvalidArgument(format!("tenant {}: {e}", tenant.name)))?;
        let key = self.keys.tenants();
        let mut hset = cmd("HSET");
        hset.arg(&key)
            .arg(tenant.name.as_str())
            .arg(serde_json::to_string(tenant)?);
        self.command(&key, hset).await?;
        Ok(())
    }

    /// HDEL of one policy.
    pub(super) async fn delete_tenant(&self, name: &TenantName) -> Result<bool> {
        let key = self.keys.tenants();
        let mut hdel = cmd("HDEL");
        hdel.arg(&key).arg(name.as_str());
        Ok(self.command(&key, hdel).await? == Value::Int(1))
    }

    /// HGETALL of the policies; one that does not read back is logged and left out.
    pub(super) async fn read_tenants(&self) -> Result<Vec<Tenant>> {
        let key = self.keys.tenants();
        let mut hgetall = cmd("HGETALL");
        hgetall.arg(&key);
        let fields = reply::fields(self.command(&key, hgetall).await?)?;
        let mut tenants: Vec<Tenant> = fields
            .iter()
            .filter_map(|(name, json)| match serde_json::from_str::<Tenant>(json) {
                Ok(tenant) if tenant.name.as_str() == name => Some(tenant),
                Ok(_) => {
                    tracing::warn!(key, name, "a tenant's policy is filed under another name; ignored");
                    None
                }
                Err(error) => {
                    tracing::warn!(key, name, %error, "a tenant's policy does not read back; ignored");
                    None
                }
            })
            .collect();
        tenants.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(tenants)
    }

    /// HGETALL of the usage; a tenant's entry that does not read back is logged and left out.
    pub(super) async fn read_usage(&self) -> Result<Vec<(String, Usage)>> {
        let key = self.keys.usage();
        let mut hgetall = cmd("HGETALL");
        hgetall.arg(&key);
        let fields = reply::fields(self.command(&key, hgetall).await?)?;
        let mut usage: Vec<(String, Usage)> = fields
            .iter()
            .filter_map(|(tenant, text)| match decode_usage(&key, tenant, text) {
                Ok(usage) => Some((tenant.clone(), usage)),
                Err(error) => {
                    tracing::warn!(%error, "a tenant's usage does not read back; left out");
                    None
                }
            })
            .collect();
        usage.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(usage)
    }

    /// Every charge and the usage, read together (read_quota.lua), into the check's dump;
    /// what does not read back is reported as unreadable.
    pub(super) async fn dump_quota(&self, dump: &mut Dump) -> Result<()> {
        let (charges_key, usage_key) = (self.keys.charges(), self.keys.usage());
        let call = ScriptCall::new(
            &SCRIPTS.read_quota,
            vec![charges_key.clone(), usage_key.clone()],
            Vec::new(),
        );
        let mut parts = reply::items(self.script(call).await?)?;
        let charges = reply::fields(part(&mut parts, 0, "charges")?)?;
        let usage = reply::fields(part(&mut parts, 1, "usage")?)?;
        let unreadable = |error: StoreError| berth_core::Violation {
            subject: charges_key.clone(),
            detail: error.to_string(),
        };
        for (container, text) in &charges {
            let read = ContainerId::new(container)
                .map_err(|e| corrupt(&charges_key, container, &e.to_string()))
                .and_then(|id| Ok((id, decode_charge(&charges_key, container, text)?)));
            match read {
                Ok(charge) => dump.charges.push(charge),
                Err(error) => dump.unreadable.push(unreadable(error)),
            }
        }
        for (tenant, text) in &usage {
            match decode_usage(&usage_key, tenant, text) {
                Ok(u) => dump.usage.push((tenant.clone(), u)),
                Err(error) => dump.unreadable.push(unreadable(error)),
            }
        }
        Ok(())
    }

    /// See [`crate::Quotas::hold`]: one hold.lua call.
    pub(super) async fn hold_quota(&self, holds: &[Hold]) -> Result<Vec<HoldOutcome>> {
        if holds.is_empty() {
            return Ok(Vec::new());
        }
        let mut args = vec![self.keys.record_prefix()];
        for hold in holds {
            args.push(hold.container.to_string());
            args.push(encode_charge(&hold.charge)?);
        }
        let call = ScriptCall::new(&SCRIPTS.hold, vec![self.keys.tenants()], args);
        let outcomes = reply::items(self.script(call).await?)?;
        if outcomes.len() != holds.len() {
            return Err(unexpected("one outcome per hold", &Value::Array(outcomes)));
        }
        holds
            .iter()
            .zip(outcomes)
            .map(|(hold, value)| decode_hold(&hold.charge.tenant, value))
            .collect()
    }
}

/// A charge as the scripts keep it: `tenant cpu mem gpu_milli [gpu_type]`. Refused when the
/// tenant is empty or holds whitespace, or a number is above what Lua counts exactly.
pub(super) fn encode_charge(charge: &Charge) -> Result<String> {
    if charge.tenant.is_empty() || charge.tenant.chars().any(char::is_whitespace) {
        return Err(StoreError::InvalidArgument(format!(
            "tenant {:?} is empty or holds whitespace",
            charge.tenant
        )));
    }
    let numbers = [charge.cpu_millicores, charge.memory_mib, charge.gpu_milli];
    if numbers.iter().any(|n| *n > super::codec::MAX_LUA_INT) {
        return Err(StoreError::InvalidArgument(format!(
            "the charge of tenant {} is too large to store",
            charge.tenant
        )));
    }
    let mut text = format!(
        "{} {} {} {}",
        charge.tenant, charge.cpu_millicores, charge.memory_mib, charge.gpu_milli
    );
    if let Some(gpu_type) = &charge.gpu_type {
        text.push(' ');
        text.push_str(&gpu_type.to_string());
    }
    Ok(text)
}

/// A stored charge (see [`encode_charge`]).
pub(super) fn decode_charge(key: &str, container: &str, text: &str) -> Result<Charge> {
    let bad = |problem: String| corrupt(key, container, &problem);
    let parts: Vec<&str> = text.split(' ').collect();
    let (tenant, numbers, gpu_type) = match parts.as_slice() {
        [tenant, cpu, mem, gpu] => (*tenant, [*cpu, *mem, *gpu], None),
        [tenant, cpu, mem, gpu, gpu_type] => (*tenant, [*cpu, *mem, *gpu], Some(*gpu_type)),
        _ => return Err(bad(format!("{text:?} is not a charge"))),
    };
    let number = |s: &str| {
        s.parse::<u64>()
            .map_err(|e| bad(format!("{s:?} in {text:?}: {e}")))
    };
    Ok(Charge {
        tenant: tenant.to_owned(),
        cpu_millicores: number(numbers[0])?,
        memory_mib: number(numbers[1])?,
        gpu_milli: number(numbers[2])?,
        gpu_type: gpu_type
            .map(|t| t.parse::<GpuType>().map_err(|e| bad(e.to_string())))
            .transpose()?,
    })
}

/// A tenant's stored usage: `containers cpu mem gpu_milli [TYPE=milli ...]`.
pub(super) fn decode_usage(key: &str, tenant: &str, text: &str) -> Result<Usage> {
    let bad = |problem: String| corrupt(key, tenant, &problem);
    let mut parts = text.split(' ');
    let mut number = |what: &str| -> Result<u64> {
        let part = parts.next().unwrap_or_default();
        part.parse::<u64>()
            .map_err(|e| bad(format!("{what} {part:?} in {text:?}: {e}")))
    };
    let mut usage = Usage {
        containers: number("containers")?,
        cpu_millicores: number("cpu")?,
        memory_mib: number("memory")?,
        gpu_milli: number("gpu_milli")?,
        gpu_milli_by_type: Default::default(),
    };
    for typed in parts {
        let (name, milli) = typed
            .split_once('=')
            .ok_or_else(|| bad(format!("{typed:?} is not TYPE=milli")))?;
        let gpu_type = name.parse::<GpuType>().map_err(|e| bad(e.to_string()))?;
        let milli = milli
            .parse::<u64>()
            .map_err(|e| bad(format!("{typed:?}: {e}")))?;
        usage.gpu_milli_by_type.insert(gpu_type, milli);
    }
    Ok(usage)
}

/// One outcome of hold.lua.
fn decode_hold(tenant: &str, value: Value) -> Result<HoldOutcome> {
    let (tag, mut parts) = tagged(value)?;
    if tag == "held" {
        return Ok(HoldOutcome::Held);
    }
    let mut text =
        |i: usize, what: &str| -> Result<String> { expect_text(what, &part(&mut parts, i, what)?) };
    let dimension = text(0, "dimension")?;
    let mut number = |i: usize, what: &str| -> Result<u64> {
        let t = text(i, what)?;
        t.parse()
            .map_err(|_| unexpected(what, &Value::SimpleString(t)))
    };
    let exceeded = Exceeded {
        tenant: tenant.to_owned(),
        dimension,
        limit: number(1, "limit")?,
        in_use: number(2, "in use")?,
        asked: number(3, "asked")?,
    };
    match tag.as_str() {
        "over" => Ok(HoldOutcome::Over(exceeded)),
        "never" => Ok(HoldOutcome::Never(exceeded)),
        _ => Err(unexpected("hold", &Value::SimpleString(tag))),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // Tests may unwrap.
mod tests {
    use super::*;

    #[test]
    fn charges_read_back_as_written() {
        let charge = Charge {
            tenant: "acme".to_owned(),
            cpu_millicores: 1500,
            memory_mib: 512,
            gpu_milli: 250,
            gpu_type: Some(GpuType::A100_80),
        };
        let text = encode_charge(&charge).unwrap();
        assert_eq!(text, "acme 1500 512 250 A100-80");
        assert_eq!(decode_charge("k", "c", &text).unwrap(), charge);
        let cpu = Charge {
            gpu_milli: 0,
            gpu_type: None,
            ..charge
        };
        assert_eq!(
            decode_charge("k", "c", &encode_charge(&cpu).unwrap()).unwrap(),
            cpu
        );
        assert!(decode_charge("k", "c", "acme 1 2").is_err());
        assert!(
            encode_charge(&Charge {
                tenant: "a b".to_owned(),
                ..cpu
            })
            .is_err()
        );
    }

    #[test]
    fn usage_reads_with_its_types() {
        let usage = decode_usage("k", "t", "2 3000 1024 1500 A10G=500 H100=1000").unwrap();
        assert_eq!(usage.containers, 2);
        assert_eq!(usage.gpu_milli_by_type.get(&GpuType::H100), Some(&1000));
        assert!(decode_usage("k", "t", "2 3000").is_err());
        assert!(decode_usage("k", "t", "2 3000 1 1 H100").is_err());
    }
}
