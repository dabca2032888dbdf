//! The worker's GPU devices, detected with `nvidia-smi`.
//!
//! [`detect_nvidia`] runs `nvidia-smi --query-gpu=index,uuid,name,memory.total
//! --format=csv` and reads one [`GpuDevice`] per row: [`parse_nvidia_smi`] does the reading
//! and no I/O, so it is tested on real-looking outputs. A device `nvidia-smi` reports broken
//! (`ERR!`, `[GPU requires reset]`, `[Unknown Error]`) is kept with `healthy: false` rather
//! than dropped, so the operator sees it and it is never booked.

use berth_core::{DeviceError, GpuDevice, GpuType};
use std::ffi::OsStr;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// The arguments [`detect_nvidia`] gives `nvidia-smi`: one CSV row per device, with a
/// header line.
pub const NVIDIA_SMI_ARGS: [&str; 2] = ["--query-gpu=index,uuid,name,memory.total", "--format=csv"];

/// How long `nvidia-smi` may take: a wedged driver can make it hang, and the agent must not
/// hang with it.
pub const DETECT_TIMEOUT: Duration = Duration::from_secs(30);

/// What `nvidia-smi` prints in a field of a device it cannot talk to.
const BROKEN_MARKS: [&str; 3] = ["ERR!", "[GPU requires reset]", "[Unknown Error]"];

/// Why the GPUs could not be detected. Each message says what was run and what came back.
#[derive(Debug, thiserror::Error)]
pub enum GpuDetectError {
    /// The program does not exist (or is not on `PATH`).
    #[error(
        "cannot find {program}: install the NVIDIA driver's nvidia-smi, or declare the GPUs with --gpu TYPE:COUNT"
    )]
    NotFound {
        /// The program looked for.
        program: String,
    },
    /// The program exists but could not be started.
    #[error("cannot run `{command}`: {source}")]
    Spawn {
        /// The command line.
        command: String,
        /// The cause.
        source: io::Error,
    },
    /// The program ran longer than [`DETECT_TIMEOUT`] and was killed.
    #[error("`{command}` did not answer within {} s (a wedged driver?)", timeout.as_secs_f64())]
    TimedOut {
        /// The command line.
        command: String,
        /// How long it was given.
        timeout: Duration,
    },
    /// The program exited with an error.
    #[error("`{command}` failed ({status}): {output}")]
    Failed {
        /// The command line.
        command: String,
        /// Its exit status.
        status: String,
        /// What it printed (stderr, else stdout), trimmed.
        output: String,
    },
    /// A line of its output is not a device row.
    #[error(
        "`{command}` printed {text:?} (line {line}), which is not `index, uuid, name, memory.total`: {why}"
    )]
    Garbage {
        /// The command line.
        command: String,
        /// The line's number, from 1.
        line: usize,
        /// The line.
        text: String,
        /// What is wrong with it.
        why: String,
    },
    /// The devices it listed cannot be one worker's (two types, one index twice, a bad UUID).
    #[error("`{command}` listed devices one worker cannot register: {source}")]
    Devices {
        /// The command line.
        command: String,
        /// What is wrong with them.
        source: DeviceError,
    },
}

/// A row [`parse_nvidia_smi`] could not read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line} {text:?}: {why}")]
pub struct RowError {
    /// The line's number, from 1.
    pub line: usize,
    /// The line.
    pub text: String,
    /// What is wrong with it.
    pub why: String,
}

/// Runs `program` (`nvidia-smi`, or a path to it) with [`NVIDIA_SMI_ARGS`] and returns the
/// devices it lists, checked to be one worker's ([`GpuDevice::validate_all`]). An empty
/// list is not an error here: the caller decides whether a worker without GPUs is one.
pub fn detect_nvidia(program: &Path) -> Result<Vec<GpuDevice>, GpuDetectError> {
    detect_nvidia_within(program, DETECT_TIMEOUT)
}

/// [`detect_nvidia`] with its own timeout.
pub fn detect_nvidia_within(
    program: &Path,
    timeout: Duration,
) -> Result<Vec<GpuDevice>, GpuDetectError> {
    let command = command_line(program);
    let output = run(program, &command, timeout)?;
    if !output.status.success() {
        return Err(GpuDetectError::Failed {
            status: output.status.to_string(),
            output: what_it_said(&output),
            command,
        });
    }
    let stdout = String::from_utf8_lossy(&output.stdout);
    let devices = parse_nvidia_smi(&stdout).map_err(|err| GpuDetectError::Garbage {
        command: command.clone(),
        line: err.line,
        text: err.text,
        why: err.why,
    })?;
    GpuDevice::validate_all(&devices)
        .map_err(|source| GpuDetectError::Devices { command, source })?;
    Ok(devices)
}

/// `program` resolved the way a shell would: a name without a slash is looked up in the
/// directories of `path` (a `PATH` value), and must be an executable file there; a path is
/// taken as it is. `None` when the name is on none of them.
pub fn find_program(program: &Path, path: Option<&OsStr>) -> Option<PathBuf> {
    if program.components().count() != 1 || program.is_absolute() {
        return Some(program.to_path_buf());
    }
    std::env::split_paths(path?)
        .map(|dir| dir.join(program))
        .find(|candidate| is_executable(candidate))
}

fn is_executable(path: &Path) -> bool {
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

fn command_line(program: &Path) -> String {
    format!("{} {}", program.display(), NVIDIA_SMI_ARGS.join(" "))
}

/// Runs the query, killing it after `timeout`. The wait happens on a thread of its own so
/// that a full pipe cannot block the child while we wait for it to exit.
fn run(program: &Path, command: &str, timeout: Duration) -> Result<Output, GpuDetectError> {
    let child = Command::new(program)
        .args(NVIDIA_SMI_ARGS)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|source| match source.kind() {
            io::ErrorKind::NotFound => GpuDetectError::NotFound {
                program: program.display().to_string(),
            },
            _ => GpuDetectError::Spawn {
                command: command.to_owned(),
                source,
            },
        })?;
    let pid = child.id();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        // The receiver is gone only if we gave up on it; nothing to tell then.
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(timeout) {
        Ok(Ok(output)) => Ok(output),
        Ok(Err(source)) => Err(GpuDetectError::Spawn {
            command: command.to_owned(),
            source,
        }),
        Err(_) => {
            kill(pid);
            Err(GpuDetectError::TimedOut {
                command: command.to_owned(),
                timeout,
            })
        }
    }
}

fn kill(pid: u32) {
    if let Ok(pid) = i32::try_from(pid) {
        // It may have ended meanwhile: then there is nothing to kill.
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
}

fn what_it_said(output: &Output) -> String {
    let stderr = String::from_utf8_lossy(&output.stderr).trim().to_owned();
    let text = if stderr.is_empty() {
        String::from_utf8_lossy(&output.stdout).trim().to_owned()
    } else {
        stderr
    };
    if text.is_empty() {
        "no output".to_owned()
    } else {
        text.chars().take(500).collect()
    }
}

/// The devices in `nvidia-smi --query-gpu=index,uuid,name,memory.total --format=csv`'s
/// output (the header line may be there or not; blank lines are skipped). Memory that is
/// `[N/A]` or `[Not Supported]` is 0; a UUID that is not known is `None`. A row marked
/// broken is a device with `healthy: false`, as long as its index reads; its type is the
/// other devices' when its name is unreadable.
pub fn parse_nvidia_smi(output: &str) -> Result<Vec<GpuDevice>, RowError> {
    let mut devices = Vec::new();
    let mut nameless = Vec::new();
    for (number, line) in output.lines().enumerate() {
        let text = line.trim();
        if text.is_empty() || is_header(text) {
            continue;
        }
        let row = parse_row(text).map_err(|why| RowError {
            line: number + 1,
            text: text.to_owned(),
            why,
        })?;
        if row.gpu_type.is_none() {
            nameless.push(devices.len());
        }
        devices.push(row);
    }
    let known = devices.iter().find_map(|row| row.gpu_type.clone());
    let fallback = known.unwrap_or_else(|| GpuType::Other("UNKNOWN".to_owned()));
    Ok(devices
        .into_iter()
        .map(|row| row.into_device(&fallback))
        .collect())
}

fn is_header(line: &str) -> bool {
    line.to_ascii_lowercase().starts_with("index")
}

/// One row as read: its type is `None` only for a broken device whose name is unreadable.
struct Row {
    index: u32,
    uuid: Option<String>,
    gpu_type: Option<GpuType>,
    memory_mib: u64,
    healthy: bool,
}

impl Row {
    fn into_device(self, fallback: &GpuType) -> GpuDevice {
        GpuDevice {
            index: self.index,
            gpu_type: self.gpu_type.unwrap_or_else(|| fallback.clone()),
            memory_mib: self.memory_mib,
            uuid: self.uuid,
            healthy: self.healthy,
        }
    }
}

fn parse_row(text: &str) -> Result<Row, String> {
    let fields: Vec<&str> = text.split(',').map(str::trim).collect();
    // A name never has a comma in practice; if one does, it is what lies between the UUID
    // and the memory.
    let (index, uuid, name, memory) = match fields.as_slice() {
        [index, uuid, name @ .., memory] if !name.is_empty() => {
            (*index, *uuid, name.join(","), *memory)
        }
        _ => {
            return Err(format!(
                "expected 4 comma-separated fields, got {}",
                fields.len()
            ));
        }
    };
    let index: u32 = index
        .parse()
        .map_err(|_| format!("the index {index:?} is not a number"))?;
    let healthy = !fields.iter().any(|f| is_broken(f));
    let memory_mib = match parse_memory(memory) {
        Some(mib) => mib,
        None if !healthy => 0,
        None => return Err(format!("the memory {memory:?} is not `<number> MiB`")),
    };
    let gpu_type = match known(&name).and_then(gpu_type_of) {
        Some(ty) => Some(ty),
        None if !healthy => None,
        None => return Err(format!("the name {name:?} is not a GPU model")),
    };
    Ok(Row {
        index,
        uuid: known(uuid).map(str::to_owned),
        gpu_type,
        memory_mib,
        healthy,
    })
}

fn is_broken(field: &str) -> bool {
    BROKEN_MARKS.iter().any(|mark| field.contains(mark))
}

/// A field's value, or `None` for `[N/A]`, `[Not Supported]` and the broken marks.
fn known(field: &str) -> Option<&str> {
    let unknown = field.is_empty() || field.starts_with('[') || is_broken(field);
    (!unknown).then_some(field)
}

/// `23028 MiB` (or `23028`, as `nounits` prints it) in MiB; `[N/A]` and `[Not Supported]`
/// are 0; anything else is `None`.
fn parse_memory(field: &str) -> Option<u64> {
    let Some(value) = known(field) else {
        return (field.starts_with('[') && !is_broken(field)).then_some(0);
    };
    let number = value.strip_suffix("MiB").unwrap_or(value).trim();
    number.parse().ok()
}

/// The vendor words `nvidia-smi` puts before the model.
const VENDOR_WORDS: [&str; 4] = ["NVIDIA", "TESLA", "GEFORCE", "QUADRO"];

/// The [`GpuType`] of a device name as `nvidia-smi` prints it: `NVIDIA A10G` is
/// [`GpuType::A10G`], `NVIDIA A100-SXM4-80GB` is [`GpuType::A100_80`], and so on; a model
/// berth does not know is [`GpuType::Other`] of its name (vendor words dropped, only
/// letters, digits, `-`, `_` and `.`, at most 32 characters). `None` for a name with no
/// letter or digit.
pub fn gpu_type_of(name: &str) -> Option<GpuType> {
    let upper = name.to_ascii_uppercase();
    let words: Vec<&str> = upper
        .split_whitespace()
        .filter(|word| !VENDOR_WORDS.contains(word))
        .collect();
    let model = words.join(" ");
    known_model(&model).or_else(|| other_model(&words))
}

fn known_model(model: &str) -> Option<GpuType> {
    let ty = match model {
        "A10G" => GpuType::A10G,
        "T4" => GpuType::T4,
        "L4" => GpuType::L4,
        "L40S" => GpuType::L40S,
        "RTX A6000" | "A6000" => GpuType::A6000,
        "RTX 4090" => GpuType::Rtx4090,
        m if m.starts_with("H100") => GpuType::H100,
        m if m.starts_with("H200") => GpuType::H200,
        m if m.starts_with("A100") && m.contains("80GB") => GpuType::A100_80,
        m if m.starts_with("A100") => GpuType::A100_40,
        _ => return None,
    };
    Some(ty)
}

fn other_model(words: &[&str]) -> Option<GpuType> {
    let ok = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.');
    let name: String = words
        .join("-")
        .chars()
        .map(|c| if ok(c) { c } else { '-' })
        .take(32)
        .collect();
    let name = name.trim_matches('-');
    if !name.chars().any(|c| c.is_ascii_alphanumeric()) {
        return None;
    }
    name.parse().ok()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // Tests may unwrap.
mod tests {
    use super::*;
    use std::io::Write;

    const A10G_X2: &str = "index, uuid, name, memory.total [MiB]
0, GPU-5a3c1f2e-8a9b-4c7d-9e0f-1a2b3c4d5e6f, NVIDIA A10G, 23028 MiB
1, GPU-6b4d2a3f-9b0c-4d8e-8f1a-2b3c4d5e6f70, NVIDIA A10G, 23028 MiB
";

    fn device(index: u32, uuid: &str, memory_mib: u64) -> GpuDevice {
        GpuDevice {
            index,
            gpu_type: GpuType::A10G,
            memory_mib,
            uuid: Some(uuid.to_owned()),
            healthy: true,
        }
    }

    #[test]
    fn reads_the_rows_under_the_header() {
        let devices = parse_nvidia_smi(A10G_X2).unwrap();
        assert_eq!(
            devices,
            vec![
                device(0, "GPU-5a3c1f2e-8a9b-4c7d-9e0f-1a2b3c4d5e6f", 23028),
                device(1, "GPU-6b4d2a3f-9b0c-4d8e-8f1a-2b3c4d5e6f70", 23028),
            ]
        );
        assert_eq!(GpuDevice::validate_all(&devices), Ok(()));
    }

    #[test]
    fn whitespace_blank_lines_no_header_and_no_units_are_fine() {
        let text = "\n  3 ,GPU-abc ,  Tesla T4 ,15360\r\n\n";
        let devices = parse_nvidia_smi(text).unwrap();
        assert_eq!(devices.len(), 1);
        assert_eq!(devices[0].index, 3);
        assert_eq!(devices[0].gpu_type, GpuType::T4);
        assert_eq!(devices[0].memory_mib, 15360);
        assert_eq!(devices[0].uuid.as_deref(), Some("GPU-abc"));
        assert_eq!(
            parse_nvidia_smi("index, uuid, name, memory.total [MiB]\n").unwrap(),
            []
        );
        assert_eq!(parse_nvidia_smi("").unwrap(), []);
    }

    #[test]
    fn unknown_memory_and_uuid_are_zero_and_none() {
        let text = "0, [N/A], NVIDIA L4, [N/A]\n1, GPU-x, NVIDIA L4, [Not Supported]\n";
        let devices = parse_nvidia_smi(text).unwrap();
        assert_eq!(devices[0].memory_mib, 0);
        assert_eq!(devices[0].uuid, None);
        assert!(devices[0].healthy);
        assert_eq!(devices[1].memory_mib, 0);
        assert_eq!(devices[1].uuid.as_deref(), Some("GPU-x"));
    }

    #[test]
    fn a_broken_device_is_kept_unhealthy_with_its_neighbours_type() {
        let text = "index, uuid, name, memory.total [MiB]
0, GPU-aaa, NVIDIA H100 80GB HBM3, 81559 MiB
1, [GPU requires reset], [GPU requires reset], [GPU requires reset]
2, GPU-ccc, ERR!, ERR!
3, [Unknown Error], NVIDIA H100 80GB HBM3, [Unknown Error]
";
        let devices = parse_nvidia_smi(text).unwrap();
        assert_eq!(devices.len(), 4);
        assert!(devices[0].healthy);
        for broken in &devices[1..] {
            assert!(!broken.healthy, "{broken:?}");
            assert_eq!(broken.gpu_type, GpuType::H100);
            assert_eq!(broken.memory_mib, 0);
        }
        assert_eq!(devices[1].uuid, None);
        assert_eq!(devices[2].uuid.as_deref(), Some("GPU-ccc"));
        assert_eq!(GpuDevice::validate_all(&devices), Ok(()));
    }

    #[test]
    fn garbage_says_which_line_and_why() {
        for (text, line, why) in [
            ("index, uuid\nNo devices were found", 2, "4 comma-separated"),
            ("x, GPU-1, NVIDIA A10G, 1 MiB", 1, "index"),
            ("0, GPU-1, NVIDIA A10G, lots", 1, "memory"),
            ("0, GPU-1, ---, 1 MiB", 1, "name"),
            ("ERR!, ERR!, ERR!, ERR!", 1, "index"),
        ] {
            let err = parse_nvidia_smi(text).unwrap_err();
            assert_eq!(err.line, line, "{text:?}: {err}");
            assert!(err.why.contains(why), "{text:?}: {err}");
        }
    }

    #[test]
    fn model_names_map_to_gpu_types() {
        for (name, ty) in [
            ("NVIDIA A10G", GpuType::A10G),
            ("Tesla T4", GpuType::T4),
            ("NVIDIA L4", GpuType::L4),
            ("NVIDIA L40S", GpuType::L40S),
            ("NVIDIA A100-SXM4-40GB", GpuType::A100_40),
            ("NVIDIA A100-PCIE-40GB", GpuType::A100_40),
            ("NVIDIA A100-SXM4-80GB", GpuType::A100_80),
            ("NVIDIA A100 80GB PCIe", GpuType::A100_80),
            ("NVIDIA H100 80GB HBM3", GpuType::H100),
            ("NVIDIA H100 PCIe", GpuType::H100),
            ("NVIDIA H200", GpuType::H200),
            ("NVIDIA RTX A6000", GpuType::A6000),
            ("NVIDIA GeForce RTX 4090", GpuType::Rtx4090),
            ("NVIDIA L40", GpuType::Other("L40".into())),
            (
                "Tesla V100-SXM2-16GB",
                GpuType::Other("V100-SXM2-16GB".into()),
            ),
            (
                "NVIDIA RTX 6000 Ada Generation",
                GpuType::Other("RTX-6000-ADA-GENERATION".into()),
            ),
            (
                "NVIDIA GeForce RTX 4090 D",
                GpuType::Other("RTX-4090-D".into()),
            ),
        ] {
            assert_eq!(gpu_type_of(name), Some(ty), "{name}");
        }
        let long = gpu_type_of("NVIDIA Some (Very) Long Model Name That Goes On And On").unwrap();
        assert_eq!(long.name().len(), 32);
        assert_eq!(long.name(), "SOME--VERY--LONG-MODEL-NAME-THAT");
        assert_eq!(gpu_type_of("NVIDIA"), None);
        assert_eq!(gpu_type_of("  "), None);
    }

    /// A fake `nvidia-smi` in `dir` that checks its arguments and runs `body`.
    fn fake_smi(dir: &Path, body: &str) -> PathBuf {
        let path = dir.join("nvidia-smi");
        let script = format!(
            "#!/bin/sh\n[ \"$*\" = \"{}\" ] || {{ echo \"unexpected arguments: $*\" >&2; exit 64; }}\n{body}\n",
            NVIDIA_SMI_ARGS.join(" ")
        );
        let mut file = std::fs::File::create(&path).unwrap();
        file.write_all(script.as_bytes()).unwrap();
        drop(file);
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        path
    }

    #[test]
    fn detects_with_a_fake_nvidia_smi() {
        let dir = tempfile::tempdir().unwrap();
        let smi = fake_smi(dir.path(), &format!("cat <<'EOF'\n{A10G_X2}EOF"));
        let devices = detect_nvidia(&smi).unwrap();
        assert_eq!(devices.len(), 2);
        assert_eq!(devices[1].index, 1);
        assert_eq!(devices[1].gpu_type, GpuType::A10G);
    }

    #[test]
    fn detection_failures_say_what_ran_and_what_came_back() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("no-such-smi");
        let err = detect_nvidia(&missing).unwrap_err();
        assert!(matches!(err, GpuDetectError::NotFound { .. }), "{err}");
        assert!(err.to_string().contains("no-such-smi"), "{err}");

        let smi = fake_smi(
            dir.path(),
            "echo 'NVIDIA-SMI has failed because it could not communicate with the NVIDIA driver.' >&2; exit 9",
        );
        let err = detect_nvidia(&smi).unwrap_err().to_string();
        assert!(
            err.contains("--query-gpu=index,uuid,name,memory.total --format=csv"),
            "{err}"
        );
        assert!(err.contains("could not communicate"), "{err}");
        assert!(err.contains("9"), "{err}");

        let smi = fake_smi(dir.path(), "echo 'hello, world'");
        let err = detect_nvidia(&smi).unwrap_err();
        assert!(
            matches!(err, GpuDetectError::Garbage { line: 1, .. }),
            "{err}"
        );
        assert!(err.to_string().contains("hello, world"), "{err}");

        let smi = fake_smi(
            dir.path(),
            "echo '0, GPU-a, NVIDIA A10G, 1 MiB'; echo '1, GPU-b, Tesla T4, 1 MiB'",
        );
        let err = detect_nvidia(&smi).unwrap_err();
        assert!(
            matches!(
                err,
                GpuDetectError::Devices {
                    source: DeviceError::MixedTypes { index: 1, .. },
                    ..
                }
            ),
            "{err}"
        );
    }

    #[test]
    fn a_hanging_nvidia_smi_is_killed() {
        let dir = tempfile::tempdir().unwrap();
        let smi = fake_smi(dir.path(), "exec sleep 30");
        let began = std::time::Instant::now();
        let err = detect_nvidia_within(&smi, Duration::from_millis(200)).unwrap_err();
        assert!(matches!(err, GpuDetectError::TimedOut { .. }), "{err}");
        assert!(began.elapsed() < Duration::from_secs(5));
    }

    #[test]
    fn programs_are_found_on_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let smi = fake_smi(dir.path(), "true");
        let other = tempfile::tempdir().unwrap();
        std::fs::write(other.path().join("nvidia-smi"), "not executable").unwrap();
        let path = std::env::join_paths([other.path(), dir.path()]).unwrap();
        let name = Path::new("nvidia-smi");
        assert_eq!(find_program(name, Some(&path)), Some(smi.clone()));
        assert_eq!(find_program(name, Some(other.path().as_os_str())), None);
        assert_eq!(find_program(name, None), None);
        assert_eq!(find_program(&smi, None), Some(smi.clone()));
        assert_eq!(
            find_program(Path::new("./nvidia-smi"), None),
            Some(PathBuf::from("./nvidia-smi"))
        );
    }
}
