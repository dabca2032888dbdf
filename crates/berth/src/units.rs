//! Quantities as Kubernetes users write them: CPU as `500m` or `2` (cores, decimals allowed),
//! memory as `512Mi`, `4Gi`, `1G`, `1000M` or plain bytes; GPUs as `TYPE[,TYPE...]:COUNT`
//! or `any:COUNT`, the count whole or a fraction of one GPU (`0.25`).

use berth_core::{GpuPreference, GpuType};

/// A quantity that does not parse, with what was expected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{what} {input:?}: {problem}")]
pub struct UnitError {
    /// Which quantity.
    pub what: &'static str,
    /// The input.
    pub input: String,
    /// What is wrong and what would be right.
    pub problem: String,
}

fn error(what: &'static str, input: &str, problem: &str) -> UnitError {
    UnitError {
        what,
        input: input.to_owned(),
        problem: problem.to_owned(),
    }
}

/// CPU in millicores: `500m` is 500, `2` is 2000, `0.5` is 500.
pub fn parse_cpu(input: &str) -> Result<u64, UnitError> {
    let text = input.trim();
    let bad = |problem: &str| error("cpu", input, problem);
    if let Some(milli) = text.strip_suffix('m') {
        return milli
            .parse::<u64>()
            .map_err(|_| bad("expected whole millicores such as 500m, or cores such as 2 or 0.5"));
    }
    let cores: f64 = text
        .parse()
        .map_err(|_| bad("expected millicores such as 500m, or cores such as 2 or 0.5"))?;
    if !cores.is_finite() || !(0.0..=1_048_576.0).contains(&cores) {
        return Err(bad("must be between 0 and 1048576 cores"));
    }
    let milli = (cores * 1000.0).round();
    if (milli - cores * 1000.0).abs() > 1e-6 {
        return Err(bad("finer than one millicore"));
    }
    Ok(milli as u64)
}

/// Memory in MiB: `512Mi`, `4Gi`, `1Ti`, `1G` (10^9 bytes), `1000M`, `1024Ki`, or bytes.
/// Rounded up to whole MiB.
pub fn parse_memory(input: &str) -> Result<u64, UnitError> {
    let text = input.trim();
    let bad = |problem: &str| error("memory", input, problem);
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, suffix) = text.split_at(split);
    let number: u128 = number
        .parse()
        .map_err(|_| bad("expected a whole number with a unit such as 512Mi or 4Gi"))?;
    let unit: u128 = match suffix {
        "" => 1,
        "Ki" => 1 << 10,
        "Mi" => 1 << 20,
        "Gi" => 1 << 30,
        "Ti" => 1 << 40,
        "K" | "k" => 1_000,
        "M" => 1_000_000,
        "G" => 1_000_000_000,
        "T" => 1_000_000_000_000,
        _ => {
            return Err(bad(
                "unknown unit; use Ki, Mi, Gi, Ti, K, M, G, T or plain bytes",
            ));
        }
    };
    let bytes = number.checked_mul(unit).ok_or_else(|| bad("too large"))?;
    u64::try_from(bytes.div_ceil(1 << 20)).map_err(|_| bad("too large"))
}

/// How many GPUs a container asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GpuAmount {
    /// Whole GPUs, each a device of its own.
    Whole(u32),
    /// A fraction of one GPU, in milli-GPUs (1 to 999).
    Milli(u32),
}

/// A GPU demand: `A10G,A100-40:1` (these types, preferred in order, one GPU), `any:2`, or
/// a fraction of one GPU such as `A10G:0.25` (250 milli-GPUs, to a thousandth).
pub fn parse_gpu(input: &str) -> Result<(GpuPreference, GpuAmount), UnitError> {
    let bad = |problem: &str| error("gpu", input, problem);
    let (types, count) = input.rsplit_once(':').ok_or_else(|| {
        bad("expected TYPE[,TYPE...]:COUNT or any:COUNT, e.g. A10G:1 or A10G:0.5")
    })?;
    let amount = parse_gpu_amount(count.trim()).map_err(&bad)?;
    if types.trim().eq_ignore_ascii_case("any") {
        return Ok((GpuPreference::Any, amount));
    }
    let parsed = types
        .split(',')
        .map(|t| t.parse::<GpuType>().map_err(|e| bad(&e.to_string())))
        .collect::<Result<Vec<_>, _>>()?;
    Ok((GpuPreference::Types(parsed), amount))
}

/// An amount of GPUs in milli-GPUs (a quota's): `4` is 4000, `2.5` is 2500, `250m` is 250.
pub fn parse_gpus(input: &str) -> Result<u64, UnitError> {
    parse_cpu(input).map_err(|e| UnitError {
        what: "gpus",
        problem: e.problem.replace("core", "GPU"),
        ..e
    })
}

/// `2` (whole GPUs, at least 1) or `0.25` (a fraction below 1, to a thousandth).
fn parse_gpu_amount(text: &str) -> Result<GpuAmount, &'static str> {
    let Some((whole, fraction)) = text.split_once('.') else {
        return match text.parse::<u32>() {
            Ok(0) => Err("the count must be at least 1, or a fraction such as 0.5"),
            Ok(count) => Ok(GpuAmount::Whole(count)),
            Err(_) => Err("the count after ':' must be a whole number or a fraction such as 0.5"),
        };
    };
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if whole != "0" || !digits(fraction) || fraction.len() > 3 {
        return Err(
            "a fraction is 0.001 to 0.999 of one GPU (ask for whole GPUs with a whole number)",
        );
    }
    let milli = format!("{fraction:0<3}")
        .parse::<u32>()
        .map_err(|_| "the fraction does not parse")?;
    if milli == 0 {
        return Err("a fraction must be above 0");
    }
    Ok(GpuAmount::Milli(milli))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // Tests may unwrap.
mod tests {
    use super::*;

    #[test]
    fn cpu_parses_millicores_and_cores() {
        assert_eq!(parse_cpu("500m"), Ok(500));
        assert_eq!(parse_cpu("2"), Ok(2000));
        assert_eq!(parse_cpu("0.25"), Ok(250));
        assert!(parse_cpu("1.0005").is_err());
        assert!(parse_cpu("-1").is_err());
        assert!(parse_cpu("lots").unwrap_err().to_string().contains("500m"));
    }

    #[test]
    fn memory_parses_binary_and_decimal_units() {
        assert_eq!(parse_memory("512Mi"), Ok(512));
        assert_eq!(parse_memory("4Gi"), Ok(4096));
        assert_eq!(parse_memory("1G"), Ok(954));
        assert_eq!(parse_memory("1048576"), Ok(1));
        assert_eq!(parse_memory("1"), Ok(1), "rounded up");
        assert!(parse_memory("4GB").unwrap_err().to_string().contains("Gi"));
        assert!(parse_memory("99999999999999999999Ti").is_err());
    }

    #[test]
    fn gpu_parses_preferences_and_any() {
        let (pref, n) = parse_gpu("A10G,A100-40:1").unwrap();
        assert_eq!(
            pref,
            GpuPreference::Types(vec![GpuType::A10G, GpuType::A100_40])
        );
        assert_eq!(n, GpuAmount::Whole(1));
        assert_eq!(
            parse_gpu("any:2"),
            Ok((GpuPreference::Any, GpuAmount::Whole(2)))
        );
        assert!(parse_gpu("A10G").is_err());
        assert!(parse_gpu("A10G:0").is_err());
        assert!(parse_gpu("A 10G:1").is_err());
    }

    #[test]
    fn gpu_fractions_are_thousandths_of_one_gpu() {
        let milli = |text: &str| parse_gpu(text).map(|(_, amount)| amount);
        assert_eq!(milli("A10G:0.25"), Ok(GpuAmount::Milli(250)));
        assert_eq!(milli("A10G:0.5"), Ok(GpuAmount::Milli(500)));
        assert_eq!(milli("any:0.001"), Ok(GpuAmount::Milli(1)));
        assert_eq!(milli("any:0.999"), Ok(GpuAmount::Milli(999)));
        for bad in [
            "A10G:0.0",
            "A10G:0.0001",
            "A10G:1.5",
            "A10G:.5",
            "A10G:0.",
            "A10G:0.-1",
        ] {
            assert!(parse_gpu(bad).is_err(), "{bad}");
        }
    }
}
