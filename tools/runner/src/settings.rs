//! The runner's environment variables (cargo passes command-line arguments to the kernel, so
//! the runner's own knobs are environment variables). An empty value counts as unset.

use std::ffi::OsString;
use std::path::PathBuf;

use crate::Mode;
use crate::error::Error;

/// Every environment knob, parsed and checked.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct EnvSettings {
    /// `KERNEL_ARGS`: kernel parameters put before the `--` of the command line.
    pub kernel_args: String,
    /// `QEMU_MACHINE`: `-M` value.
    pub machine: Option<String>,
    /// `QEMU_CPU`: `-cpu` value.
    pub cpu: Option<String>,
    /// `QEMU_MEM`: `-m` value.
    pub memory: Option<String>,
    /// `QEMU_SMP`: number of CPUs.
    pub smp: Option<u32>,
    /// `QEMU_ICOUNT`: deterministic instruction-count time.
    pub icount: bool,
    /// `QEMU_DISK`: path of the default data disk.
    pub disk: Option<PathBuf>,
    /// `QEMU_EXTRA_ARGS`: extra QEMU arguments, shell-split.
    pub extra_args: Vec<String>,
    /// `QEMU_TIMEOUT`: wall-clock limit in seconds; `Some(0)` disables it.
    pub timeout_secs: Option<u64>,
    /// `QEMU_VERBOSE`: print the QEMU command line.
    pub verbose: bool,
    /// `QEMU_GDB`: start QEMU's gdb server and wait for gdb.
    pub gdb: bool,
    /// `RUNNER_MODE`: `test` or `run`, overriding what the ELF's path suggests.
    pub mode: Option<Mode>,
    /// `CARGO_TARGET_DIR`: cargo's target directory, where `qemu/` disk images go.
    pub target_dir: Option<PathBuf>,
    /// `PATH`, to find QEMU.
    pub path: Option<OsString>,
}

impl EnvSettings {
    /// Reads the settings through `lookup` (normally [`std::env::var_os`]).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<OsString>) -> Result<Self, Error> {
        let get = |var: &'static str| lookup(var).filter(|value| !value.is_empty());
        let text = |var: &'static str| -> Result<Option<String>, Error> {
            get(var)
                .map(|value| {
                    value.into_string().map_err(|_| Error::Env {
                        var,
                        message: "is not valid UTF-8".to_string(),
                    })
                })
                .transpose()
        };
        let flag = |var: &'static str| -> Result<bool, Error> {
            match text(var)?.as_deref() {
                None => Ok(false),
                Some("1" | "true" | "yes" | "on") => Ok(true),
                Some("0" | "false" | "no" | "off") => Ok(false),
                Some(other) => Err(Error::Env {
                    var,
                    message: format!("`{other}` is not 1/0, true/false, yes/no or on/off"),
                }),
            }
        };
        let number = |var: &'static str, zero_allowed: bool| -> Result<Option<u64>, Error> {
            text(var)?
                .map(|value| match value.trim().parse::<u64>() {
                    Ok(number) if zero_allowed || number > 0 => Ok(number),
                    _ => Err(Error::Env {
                        var,
                        message: format!(
                            "`{value}` is not a {} integer",
                            if zero_allowed {
                                "non-negative"
                            } else {
                                "positive"
                            }
                        ),
                    }),
                })
                .transpose()
        };
        let smp = number("QEMU_SMP", false)?
            .map(|smp| {
                u32::try_from(smp).map_err(|_| Error::Env {
                    var: "QEMU_SMP",
                    message: format!("`{smp}` is too large"),
                })
            })
            .transpose()?;
        let extra_args = match text("QEMU_EXTRA_ARGS")? {
            None => Vec::new(),
            Some(value) => shell_words::split(&value).map_err(|error| Error::Env {
                var: "QEMU_EXTRA_ARGS",
                message: format!("unbalanced quoting: {error}"),
            })?,
        };
        let mode = match text("RUNNER_MODE")?.as_deref() {
            None => None,
            Some("test") => Some(Mode::Test),
            Some("run") => Some(Mode::Run),
            Some(other) => {
                return Err(Error::Env {
                    var: "RUNNER_MODE",
                    message: format!("`{other}` is not `test` or `run`"),
                });
            }
        };
        Ok(EnvSettings {
            mode,
            kernel_args: text("KERNEL_ARGS")?.unwrap_or_default(),
            machine: text("QEMU_MACHINE")?,
            cpu: text("QEMU_CPU")?,
            memory: text("QEMU_MEM")?,
            smp,
            icount: flag("QEMU_ICOUNT")?,
            disk: get("QEMU_DISK").map(PathBuf::from),
            extra_args,
            timeout_secs: number("QEMU_TIMEOUT", true)?,
            verbose: flag("QEMU_VERBOSE")?,
            gdb: flag("QEMU_GDB")?,
            target_dir: get("CARGO_TARGET_DIR").map(PathBuf::from),
            path: get("PATH"),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn settings(vars: &[(&str, &str)]) -> Result<EnvSettings, Error> {
        let map: HashMap<String, OsString> = vars
            .iter()
            .map(|(key, value)| (key.to_string(), OsString::from(value)))
            .collect();
        EnvSettings::from_lookup(|var| map.get(var).cloned())
    }

    fn error(vars: &[(&str, &str)]) -> String {
        settings(vars).unwrap_err().to_string()
    }

    #[test]
    fn nothing_set() {
        assert_eq!(settings(&[]).unwrap(), EnvSettings::default());
    }

    #[test]
    fn every_variable() {
        let parsed = settings(&[
            ("KERNEL_ARGS", "reclaim=clock"),
            ("QEMU_MACHINE", "virt,virtualization=on"),
            ("QEMU_CPU", "max"),
            ("QEMU_MEM", "256M"),
            ("QEMU_SMP", "2"),
            ("QEMU_ICOUNT", "1"),
            ("QEMU_DISK", "/tmp/d.img"),
            ("QEMU_EXTRA_ARGS", "-d int -D '/tmp/qemu log'"),
            ("QEMU_TIMEOUT", "30"),
            ("QEMU_VERBOSE", "yes"),
            ("QEMU_GDB", "on"),
            ("RUNNER_MODE", "test"),
            ("CARGO_TARGET_DIR", "/build"),
            ("PATH", "/usr/bin"),
        ])
        .unwrap();
        assert_eq!(
            parsed,
            EnvSettings {
                kernel_args: "reclaim=clock".into(),
                machine: Some("virt,virtualization=on".into()),
                cpu: Some("max".into()),
                memory: Some("256M".into()),
                smp: Some(2),
                icount: true,
                disk: Some("/tmp/d.img".into()),
                extra_args: vec![
                    "-d".into(),
                    "int".into(),
                    "-D".into(),
                    "/tmp/qemu log".into()
                ],
                timeout_secs: Some(30),
                verbose: true,
                gdb: true,
                mode: Some(Mode::Test),
                target_dir: Some("/build".into()),
                path: Some("/usr/bin".into()),
            }
        );
    }

    #[test]
    fn empty_values_count_as_unset_and_zero_timeout_is_kept() {
        let parsed =
            settings(&[("QEMU_CPU", ""), ("QEMU_GDB", "0"), ("QEMU_TIMEOUT", "0")]).unwrap();
        assert_eq!(parsed.cpu, None);
        assert!(!parsed.gdb);
        assert_eq!(parsed.timeout_secs, Some(0));
    }

    #[test]
    fn bad_values() {
        assert_eq!(
            error(&[("QEMU_SMP", "0")]),
            "environment variable QEMU_SMP: `0` is not a positive integer"
        );
        assert_eq!(
            error(&[("QEMU_SMP", "many")]),
            "environment variable QEMU_SMP: `many` is not a positive integer"
        );
        assert_eq!(
            error(&[("QEMU_SMP", "4294967296")]),
            "environment variable QEMU_SMP: `4294967296` is too large"
        );
        assert_eq!(
            error(&[("QEMU_TIMEOUT", "-1")]),
            "environment variable QEMU_TIMEOUT: `-1` is not a non-negative integer"
        );
        assert_eq!(
            error(&[("QEMU_ICOUNT", "maybe")]),
            "environment variable QEMU_ICOUNT: `maybe` is not 1/0, true/false, yes/no or on/off"
        );
        assert_eq!(
            error(&[("QEMU_EXTRA_ARGS", "-D 'open")]),
            "environment variable QEMU_EXTRA_ARGS: unbalanced quoting: missing closing quote"
        );
        assert_eq!(
            error(&[("RUNNER_MODE", "bench")]),
            "environment variable RUNNER_MODE: `bench` is not `test` or `run`"
        );
    }

    #[test]
    fn non_utf8_value() {
        use std::os::unix::ffi::OsStringExt;
        let result = EnvSettings::from_lookup(|var| {
            (var == "QEMU_CPU").then(|| OsString::from_vec(vec![0x6d, 0xff]))
        });
        assert_eq!(
            result.unwrap_err().to_string(),
            "environment variable QEMU_CPU: is not valid UTF-8"
        );
    }
}
