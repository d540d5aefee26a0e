//! The runner's single error type. Every variant is a problem the runner itself hit (bad input,
//! missing tool, I/O failure); `main` prints it as `runner: <message>` and exits with
//! [`crate::EXIT_RUNNER_ERROR`].

use std::fmt;
use std::io;
use std::path::PathBuf;

/// Everything that can stop the runner before or around a QEMU run.
#[derive(Debug)]
pub enum Error {
    /// Bad command line (no ELF path given).
    Usage(String),
    /// A file-system operation failed.
    Io {
        /// What the runner was doing, e.g. "read kernel ELF".
        action: &'static str,
        /// The file or directory involved.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// The kernel ELF cannot be turned into an Image.
    Elf {
        /// The ELF file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// The `.qemu_config` section has a bad directive.
    Config {
        /// Where: "line 3" or "block 2, line 3" when the section holds several blocks.
        location: String,
        /// What is wrong.
        message: String,
    },
    /// An environment variable has a value the runner cannot use.
    Env {
        /// The variable's name.
        var: &'static str,
        /// What is wrong with its value.
        message: String,
    },
    /// A runner argument cannot be put on the kernel command line.
    KernelArgument(String),
    /// No directory for disk images could be found.
    TargetDirNotFound {
        /// The ELF whose ancestors were searched.
        elf: PathBuf,
    },
    /// A disk image path cannot be expressed in QEMU's `blkdebug:` syntax.
    BlkdebugPath(PathBuf),
    /// `qemu-system-aarch64` is not on `PATH`.
    QemuNotFound,
    /// QEMU could not be started or waited for.
    Qemu(io::Error),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Usage(message) => write!(f, "{message}"),
            Error::Io {
                action,
                path,
                source,
            } => write!(f, "cannot {action} {}: {source}", path.display()),
            Error::Elf { path, reason } => write!(f, "{}: {reason}", path.display()),
            Error::Config { location, message } => write!(f, ".qemu_config {location}: {message}"),
            Error::Env { var, message } => write!(f, "environment variable {var}: {message}"),
            Error::KernelArgument(message) => write!(f, "kernel argument {message}"),
            Error::TargetDirNotFound { elf } => write!(
                f,
                "cannot find cargo's target directory above {} (no `target` ancestor); \
                 set CARGO_TARGET_DIR",
                elf.display()
            ),
            Error::BlkdebugPath(path) => write!(
                f,
                "blkdebug config path {} contains ':', which QEMU's blkdebug: syntax cannot express",
                path.display()
            ),
            Error::QemuNotFound => {
                write!(f, "qemu-system-aarch64 not found; run tools/setup.sh")
            }
            Error::Qemu(source) => write!(f, "cannot run qemu-system-aarch64: {source}"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Io { source, .. } | Error::Qemu(source) => Some(source),
            _ => None,
        }
    }
}

/// Shorthand for wrapping an [`io::Error`] with what was being done to which path.
pub(crate) fn io_error(
    action: &'static str,
    path: impl Into<PathBuf>,
) -> impl FnOnce(io::Error) -> Error {
    let path = path.into();
    move |source| Error::Io {
        action,
        path,
        source,
    }
}
