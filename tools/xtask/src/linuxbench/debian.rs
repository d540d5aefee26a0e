//! Debian's Linux 6.1 arm64 kernel, fetched once into a cache and reused.
//!
//! The download goes through apt itself, run with a private configuration (`APT_CONFIG`) whose
//! state, caches, source list and settings all live in the cache directory, with arm64 as the
//! only architecture: the host's package configuration is never touched, and apt checks the
//! index signatures against Debian's keyring as usual. The mirrors are the Debian ones the host's
//! own apt sources name (falling back to deb.debian.org). `linux-image-arm64` in bookworm points
//! at the newest 6.1 kernel package; that package's `vmlinuz`, config and the virtio modules it
//! needs are copied out and the rest (about 60 MB of .deb, 350 MB unpacked) deleted.

use super::{Error, kmod};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

/// Suites that carry bookworm's 6.1 kernels (point releases, updates, security fixes).
const SUITES: &[&str] = &["bookworm", "bookworm-updates", "bookworm-security"];
/// Debian's archive keyring, used when a source names no key of its own.
const DEBIAN_KEYRING: &str = "/usr/share/keyrings/debian-archive-keyring.gpg";
/// The metapackage that depends on the newest kernel package of the release.
const METAPACKAGE: &str = "linux-image-arm64";
/// The kernel options the benchmark needs, built in (`y`) or as modules (`m`).
const NEEDED_OPTIONS: &[(&str, &str)] = &[
    ("CONFIG_VIRTIO_MMIO", "virtio_mmio"),
    ("CONFIG_VIRTIO_BLK", "virtio_blk"),
];
const MANIFEST: &str = "manifest.txt";

/// One `deb` line's worth of source: a mirror URI, a suite, and the key that signs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AptSource {
    pub uri: String,
    pub suite: String,
    pub signed_by: Option<String>,
}

/// A kernel ready to boot: where its files are and what it is.
pub struct Kernel {
    /// Debian package name, e.g. `linux-image-6.1.0-56-arm64`.
    pub package: String,
    /// Debian package version, e.g. `6.1.192-2`.
    pub version: String,
    /// `uname -r`, e.g. `6.1.0-56-arm64`.
    pub release: String,
    /// Size of the downloaded .deb.
    pub deb_bytes: u64,
    pub vmlinuz: PathBuf,
    /// Modules to load, dependencies first.
    pub modules: Vec<PathBuf>,
}

/// The cached kernel in `cache` (fetching it first if absent, or always when `refresh`).
pub fn ensure_kernel(cache: &Path, refresh: bool) -> Result<Kernel, Error> {
    let installed = cache.join("kernel");
    if !refresh && installed.join(MANIFEST).exists() {
        return Kernel::load(&installed);
    }
    let sources = system_sources();
    eprintln!(
        "linux-bench: fetching Debian's newest Linux 6.1 arm64 kernel through apt from {}",
        describe(&sources)
    );
    download(cache, &sources)
}

impl Kernel {
    fn load(dir: &Path) -> Result<Self, Error> {
        let manifest_path = dir.join(MANIFEST);
        let text = read_to_string(&manifest_path)?;
        let value = |key: &str| {
            text.lines()
                .find_map(|line| line.strip_prefix(key)?.strip_prefix('='))
                .map(str::to_string)
                .ok_or_else(|| {
                    Error::Kernel(format!(
                        "{} lacks `{key}=`; rerun with --refresh",
                        manifest_path.display()
                    ))
                })
        };
        let release = value("release")?;
        let kernel = Kernel {
            package: value("package")?,
            version: value("version")?,
            deb_bytes: value("deb_bytes")?.parse().map_err(|_| {
                Error::Kernel(format!("{}: bad deb_bytes", manifest_path.display()))
            })?,
            vmlinuz: dir.join(format!("vmlinuz-{release}")),
            modules: value("modules")?
                .split_whitespace()
                .map(|name| dir.join(format!("{name}.ko")))
                .collect(),
            release,
        };
        for file in std::iter::once(&kernel.vmlinuz).chain(&kernel.modules) {
            if !file.is_file() {
                return Err(Error::Kernel(format!(
                    "the cached kernel lacks {}; rerun with --refresh",
                    file.display()
                )));
            }
        }
        Ok(kernel)
    }
}

/// The Debian bookworm sources of the host's apt configuration, or deb.debian.org's.
pub fn system_sources() -> Vec<AptSource> {
    let mut sources = Vec::new();
    let mut files = vec![PathBuf::from("/etc/apt/sources.list")];
    if let Ok(entries) = std::fs::read_dir("/etc/apt/sources.list.d") {
        let mut listed: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
        listed.sort();
        files.extend(listed);
    }
    for file in files {
        let Ok(text) = std::fs::read_to_string(&file) else {
            continue;
        };
        match file.extension().and_then(|e| e.to_str()) {
            Some("sources") => sources.extend(parse_deb822(&text)),
            Some("list") => sources.extend(parse_one_line(&text)),
            _ => {}
        }
    }
    sources.dedup();
    if sources.is_empty() {
        sources = default_sources();
    }
    sources
}

fn default_sources() -> Vec<AptSource> {
    let source = |uri: &str, suite: &str| AptSource {
        uri: uri.to_string(),
        suite: suite.to_string(),
        signed_by: None,
    };
    vec![
        source("http://deb.debian.org/debian", "bookworm"),
        source("http://deb.debian.org/debian", "bookworm-updates"),
        source("http://deb.debian.org/debian-security", "bookworm-security"),
    ]
}

/// Bookworm `deb` entries of a one-line-style list (`deb [opts] URI SUITE COMPONENTS...`).
fn parse_one_line(text: &str) -> Vec<AptSource> {
    let mut sources = Vec::new();
    for line in text.lines() {
        let line = line.split('#').next().unwrap_or("");
        let mut tokens = line.split_whitespace().peekable();
        if tokens.next() != Some("deb") {
            continue;
        }
        let mut signed_by = None;
        if tokens.peek().is_some_and(|t| t.starts_with('[')) {
            for token in tokens.by_ref() {
                let option = token.trim_start_matches('[').trim_end_matches(']');
                if let Some(key) = option.strip_prefix("signed-by=") {
                    signed_by = Some(key.to_string());
                }
                if token.ends_with(']') {
                    break;
                }
            }
        }
        if let (Some(uri), Some(suite)) = (tokens.next(), tokens.next())
            && SUITES.contains(&suite)
        {
            sources.push(AptSource {
                uri: uri.to_string(),
                suite: suite.to_string(),
                signed_by,
            });
        }
    }
    sources
}

/// Bookworm `deb` entries of a deb822-style `.sources` file.
fn parse_deb822(text: &str) -> Vec<AptSource> {
    let mut sources = Vec::new();
    let mut stanza: Vec<(String, String)> = Vec::new();
    let mut flush = |stanza: &mut Vec<(String, String)>| {
        let get = |key: &str| {
            stanza
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(key))
                .map(|(_, v)| v.as_str())
        };
        let enabled = get("Enabled").is_none_or(|v| !v.trim().eq_ignore_ascii_case("no"));
        let is_deb = get("Types").is_some_and(|v| v.split_whitespace().any(|t| t == "deb"));
        if enabled && is_deb {
            // An inline key block is not a path; the Debian keyring stands in for it.
            let signed_by = get("Signed-By")
                .map(str::trim)
                .filter(|v| v.starts_with('/') && !v.contains('\n'))
                .map(str::to_string);
            for uri in get("URIs").unwrap_or("").split_whitespace() {
                for suite in get("Suites").unwrap_or("").split_whitespace() {
                    if SUITES.contains(&suite) {
                        sources.push(AptSource {
                            uri: uri.to_string(),
                            suite: suite.to_string(),
                            signed_by: signed_by.clone(),
                        });
                    }
                }
            }
        }
        stanza.clear();
    };
    for line in text.lines() {
        if line.starts_with('#') {
            continue;
        }
        if line.trim().is_empty() {
            flush(&mut stanza);
        } else if line.starts_with([' ', '\t']) {
            if let Some((_, value)) = stanza.last_mut() {
                value.push('\n');
                value.push_str(line.trim());
            }
        } else if let Some((key, value)) = line.split_once(':') {
            stanza.push((key.trim().to_string(), value.trim().to_string()));
        }
    }
    flush(&mut stanza);
    sources
}

fn describe(sources: &[AptSource]) -> String {
    sources
        .iter()
        .map(|s| format!("{} {}", s.uri, s.suite))
        .collect::<Vec<_>>()
        .join(", ")
}

/// apt with every directory and setting of its own under `dir`, for arm64 only.
struct PrivateApt {
    config: PathBuf,
}

impl PrivateApt {
    fn create(dir: &Path, sources: &[AptSource]) -> Result<Self, Error> {
        for sub in [
            "state/lists/partial",
            "cache/archives/partial",
            "etc/apt.conf.d",
            "etc/sources.list.d",
            "etc/preferences.d",
        ] {
            create_dir_all(&dir.join(sub))?;
        }
        write(&dir.join("state/status"), b"")?;
        let mut list = String::new();
        for source in sources {
            let key = source.signed_by.clone().or_else(|| {
                Path::new(DEBIAN_KEYRING)
                    .exists()
                    .then(|| DEBIAN_KEYRING.into())
            });
            let key = key.map_or(String::new(), |key| format!(" signed-by={key}"));
            let _ = writeln!(
                list,
                "deb [arch=arm64{key}] {} {} main",
                source.uri, source.suite
            );
        }
        write(&dir.join("etc/sources.list"), list.as_bytes())?;
        let d = |sub: &str| dir.join(sub).display().to_string();
        let config = format!(
            "Dir::State \"{}\";\n\
             Dir::State::status \"{}\";\n\
             Dir::Cache \"{}\";\n\
             Dir::Cache::pkgcache \"\";\n\
             Dir::Cache::srcpkgcache \"\";\n\
             Dir::Etc::main \"{}\";\n\
             Dir::Etc::Parts \"{}\";\n\
             Dir::Etc::SourceList \"{}\";\n\
             Dir::Etc::SourceParts \"{}\";\n\
             Dir::Etc::Preferences \"{}\";\n\
             Dir::Etc::PreferencesParts \"{}\";\n\
             APT::Architecture \"arm64\";\n\
             APT::Architectures {{ \"arm64\"; }};\n\
             APT::Sandbox::User \"root\";\n\
             Acquire::Languages \"none\";\n",
            d("state"),
            d("state/status"),
            d("cache"),
            d("etc/apt.conf"),
            d("etc/apt.conf.d"),
            d("etc/sources.list"),
            d("etc/sources.list.d"),
            d("etc/preferences"),
            d("etc/preferences.d"),
        );
        let config_path = dir.join("apt.conf");
        write(&config_path, config.as_bytes())?;
        Ok(Self {
            config: config_path,
        })
    }

    fn command(&self, program: &str, args: &[&str]) -> Command {
        let mut command = Command::new(program);
        command.args(args).env("APT_CONFIG", &self.config);
        command
    }
}

/// Runs `command`; its standard output on success, else a `Tool` error with its last words.
fn run_tool(mut command: Command) -> Result<String, Error> {
    let shown = format!("{command:?}");
    let output = command.output().map_err(|err| Error::Tool {
        command: shown.clone(),
        detail: format!("cannot start: {err}"),
    })?;
    if output.status.success() {
        return Ok(String::from_utf8_lossy(&output.stdout).into_owned());
    }
    let stderr = String::from_utf8_lossy(&output.stderr);
    let tail: Vec<&str> = stderr.lines().rev().take(6).collect();
    Err(Error::Tool {
        command: shown,
        detail: format!(
            "{} ({})",
            tail.into_iter().rev().collect::<Vec<_>>().join("\n"),
            output.status
        ),
    })
}

/// Name and exact version of the kernel package the metapackage's `apt-cache show` depends on.
fn newest_kernel(show: &str) -> Result<(String, String), Error> {
    let depends = show
        .lines()
        .find_map(|line| line.strip_prefix("Depends:"))
        .ok_or_else(|| {
            Error::Download(format!(
                "`apt-cache show {METAPACKAGE}` has no Depends line"
            ))
        })?;
    for dependency in depends.split(',') {
        let dependency = dependency.trim();
        let (name, version) = match dependency.split_once(" (= ") {
            Some((name, rest)) => (name, rest.trim_end_matches(')')),
            None => continue,
        };
        if name.starts_with("linux-image-6.1.") && name.ends_with("-arm64") {
            return Ok((name.to_string(), version.to_string()));
        }
    }
    Err(Error::Download(format!(
        "{METAPACKAGE} depends on `{}`, not on a linux-image-6.1.*-arm64 package of an exact version",
        depends.trim()
    )))
}

/// The value of `option` in a kernel `.config` (`y`, `m`, a number...), `None` if not set.
fn config_value<'a>(config: &'a str, option: &str) -> Option<&'a str> {
    config
        .lines()
        .find_map(|line| line.strip_prefix(option)?.strip_prefix('='))
}

/// Fetches, unpacks and checks the kernel into `cache/kernel`.
fn download(cache: &Path, sources: &[AptSource]) -> Result<Kernel, Error> {
    let work = cache.join("download");
    if work.exists() {
        std::fs::remove_dir_all(&work).map_err(|err| Error::io(&work, err))?;
    }
    let fetched = fetch_and_install(&work, cache, sources);
    // Whatever happened, the index, the .deb and the unpacked tree (about 400 MB) go.
    if work.exists() {
        std::fs::remove_dir_all(&work).map_err(|err| Error::io(&work, err))?;
    }
    fetched
}

fn fetch_and_install(work: &Path, cache: &Path, sources: &[AptSource]) -> Result<Kernel, Error> {
    let apt = PrivateApt::create(&work.join("apt"), sources)?;
    run_tool(apt.command("apt-get", &["update", "-q", "--error-on=any"])).map_err(|err| {
        Error::Download(format!(
            "could not fetch the arm64 package index from {}:\n{err}\n\
             The Linux baseline needs the Debian mirror once; later runs use the cache.",
            describe(sources)
        ))
    })?;
    let show = run_tool(apt.command("apt-cache", &["show", "--no-all-versions", METAPACKAGE]))
        .map_err(|err| Error::Download(format!("{METAPACKAGE} is not in the index: {err}")))?;
    let (package, version) = newest_kernel(&show)?;
    eprintln!("linux-bench: downloading {package} {version} (arm64)");
    let started = Instant::now();
    let mut fetch = apt.command(
        "apt-get",
        &["download", "-q", &format!("{package}={version}")],
    );
    fetch.current_dir(work);
    run_tool(fetch).map_err(|err| Error::Download(format!("{package}: {err}")))?;
    let deb = work.join(format!(
        "{package}_{}_arm64.deb",
        version.replace(':', "%3a")
    ));
    let deb_bytes = std::fs::metadata(&deb)
        .map_err(|err| Error::io(&deb, err))?
        .len();
    eprintln!(
        "linux-bench: {:.1} MB in {:.1} s",
        deb_bytes as f64 / 1e6,
        started.elapsed().as_secs_f64()
    );
    let root = work.join("root");
    let mut unpack = Command::new("dpkg-deb");
    unpack.arg("-x").arg(&deb).arg(&root);
    run_tool(unpack)?;
    let release = package
        .strip_prefix("linux-image-")
        .unwrap_or(&package)
        .to_string();
    install(&root, &package, &version, &release, deb_bytes, cache)
}

/// Checks the unpacked package under `root` and copies what the benchmark needs to
/// `cache/kernel` (replacing any older kernel there only once everything is in place).
fn install(
    root: &Path,
    package: &str,
    version: &str,
    release: &str,
    deb_bytes: u64,
    cache: &Path,
) -> Result<Kernel, Error> {
    let vmlinuz = root.join(format!("boot/vmlinuz-{release}"));
    let image = std::fs::read(&vmlinuz).map_err(|err| Error::io(&vmlinuz, err))?;
    let is_arm64_image = image.get(0x38..0x3c) == Some(b"ARM\x64");
    let is_gzip = image.starts_with(&[0x1f, 0x8b]);
    if !is_arm64_image && !is_gzip {
        return Err(Error::Kernel(format!(
            "{} is neither an arm64 Image nor gzip-compressed",
            vmlinuz.display()
        )));
    }
    let config_path = root.join(format!("boot/config-{release}"));
    let config = read_to_string(&config_path)?;
    let mut wanted = Vec::new();
    for (option, module) in NEEDED_OPTIONS {
        match config_value(&config, option) {
            Some("y") => {}
            Some("m") => wanted.push(*module),
            other => {
                return Err(Error::Kernel(format!(
                    "{option} is {} in {}: the kernel cannot drive virtio-mmio block devices",
                    other.unwrap_or("not set"),
                    config_path.display()
                )));
            }
        }
    }
    let modules_dir = root.join(format!("lib/modules/{release}"));
    let tree = module_tree(&modules_dir)?;
    let mut depends = |path: &Path| {
        let elf = std::fs::read(path).map_err(|err| Error::io(path, err))?;
        let info = kmod::modinfo(path, &elf)?;
        let vermagic = kmod::field(&info, "vermagic").unwrap_or("");
        if vermagic.split_whitespace().next() != Some(release) {
            return Err(Error::Kernel(format!(
                "{} was built for `{vermagic}`, not {release}",
                path.display()
            )));
        }
        Ok(kmod::field(&info, "depends")
            .unwrap_or("")
            .split(',')
            .filter(|name| !name.is_empty())
            .map(str::to_string)
            .collect())
    };
    let order = kmod::load_order(&wanted, &tree, &mut depends)?;

    let staging = cache.join("kernel.new");
    if staging.exists() {
        std::fs::remove_dir_all(&staging).map_err(|err| Error::io(&staging, err))?;
    }
    create_dir_all(&staging)?;
    write(&staging.join(format!("vmlinuz-{release}")), &image)?;
    write(
        &staging.join(format!("config-{release}")),
        config.as_bytes(),
    )?;
    for (name, path) in &order {
        let target = staging.join(format!("{name}.ko"));
        std::fs::copy(path, &target).map_err(|err| Error::io(&target, err))?;
    }
    let names: Vec<&str> = order.iter().map(|(name, _)| name.as_str()).collect();
    let manifest = format!(
        "package={package}\nversion={version}\nrelease={release}\ndeb_bytes={deb_bytes}\n\
         modules={}\n",
        names.join(" ")
    );
    write(&staging.join(MANIFEST), manifest.as_bytes())?;
    let installed = cache.join("kernel");
    if installed.exists() {
        std::fs::remove_dir_all(&installed).map_err(|err| Error::io(&installed, err))?;
    }
    std::fs::rename(&staging, &installed).map_err(|err| Error::io(&installed, err))?;
    Kernel::load(&installed)
}

/// Every uncompressed module file under `dir/kernel` and every built-in module of
/// `dir/modules.builtin`.
fn module_tree(dir: &Path) -> Result<kmod::ModuleTree, Error> {
    let builtin_path = dir.join("modules.builtin");
    let builtin = read_to_string(&builtin_path)?
        .lines()
        .filter_map(|line| Path::new(line.trim()).file_stem()?.to_str())
        .map(kmod::normalize)
        .collect();
    let mut files = std::collections::HashMap::new();
    let mut pending = vec![dir.join("kernel")];
    while let Some(current) = pending.pop() {
        let entries = std::fs::read_dir(&current).map_err(|err| Error::io(&current, err))?;
        for entry in entries {
            let path = entry.map_err(|err| Error::io(&current, err))?.path();
            if path.is_dir() {
                pending.push(path);
            } else if path.extension().is_some_and(|e| e == "ko")
                && let Some(stem) = path.file_stem().and_then(|s| s.to_str())
            {
                files.insert(kmod::normalize(stem), path.clone());
            }
        }
    }
    Ok(kmod::ModuleTree { files, builtin })
}

fn read_to_string(path: &Path) -> Result<String, Error> {
    std::fs::read_to_string(path).map_err(|err| Error::io(path, err))
}

fn write(path: &Path, bytes: &[u8]) -> Result<(), Error> {
    std::fs::write(path, bytes).map_err(|err| Error::io(path, err))
}

fn create_dir_all(path: &Path) -> Result<(), Error> {
    std::fs::create_dir_all(path).map_err(|err| Error::io(path, err))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn source(uri: &str, suite: &str, signed_by: Option<&str>) -> AptSource {
        AptSource {
            uri: uri.into(),
            suite: suite.into(),
            signed_by: signed_by.map(Into::into),
        }
    }

    #[test]
    fn deb822_stanzas_give_enabled_bookworm_deb_sources() {
        let text = "Types: deb\n\
            # a comment\n\
            URIs: http://deb.debian.org/debian\n\
            Suites: bookworm bookworm-updates trixie\n\
            Components: main\n\
            Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n\
            \n\
            Types: deb deb-src\n\
            URIs: http://mirror.example/debian-security\n\
            Suites: bookworm-security\n\
            Components: main\n\
            Signed-By:\n -----BEGIN PGP PUBLIC KEY BLOCK-----\n .\n abc\n\
            \n\
            Types: deb\n\
            URIs: https://deb.nodesource.com/node_20.x\n\
            Suites: nodistro\n\
            \n\
            Types: deb\n\
            URIs: http://off.example/debian\n\
            Suites: bookworm\n\
            Enabled: no\n\
            \n\
            Types: deb-src\n\
            URIs: http://src.example/debian\n\
            Suites: bookworm\n";
        let keyring = Some("/usr/share/keyrings/debian-archive-keyring.gpg");
        assert_eq!(
            parse_deb822(text),
            [
                source("http://deb.debian.org/debian", "bookworm", keyring),
                source("http://deb.debian.org/debian", "bookworm-updates", keyring),
                source(
                    "http://mirror.example/debian-security",
                    "bookworm-security",
                    None
                ),
            ]
        );
    }

    #[test]
    fn one_line_entries_give_bookworm_deb_sources() {
        let text = "# deb http://commented.example/debian bookworm main\n\
            deb [arch=amd64 signed-by=/k.gpg] http://a.example/debian bookworm main contrib\n\
            deb [ trusted=yes ] http://b.example/debian bookworm-security main\n\
            deb-src http://c.example/debian bookworm main\n\
            deb https://packages.cloud.google.com/apt cloud-sdk-bookworm main\n\
            deb http://d.example/debian bullseye main\n\
            deb http://e.example/debian\n";
        assert_eq!(
            parse_one_line(text),
            [
                source("http://a.example/debian", "bookworm", Some("/k.gpg")),
                source("http://b.example/debian", "bookworm-security", None),
            ]
        );
    }

    #[test]
    fn the_metapackage_names_the_kernel_package_and_version() {
        let show = "Package: linux-image-arm64\nVersion: 6.1.192-2\n\
            Depends: linux-image-6.1.0-56-arm64 (= 6.1.192-2)\nDescription: x\n";
        assert_eq!(
            newest_kernel(show).unwrap(),
            ("linux-image-6.1.0-56-arm64".into(), "6.1.192-2".into())
        );
        let other = "Depends: linux-image-6.12.0-1-arm64 (= 6.12.1-1)\n";
        let message = newest_kernel(other).unwrap_err().to_string();
        assert!(
            message.contains("not on a linux-image-6.1.*-arm64"),
            "{message}"
        );
        let message = newest_kernel("Package: x\n").unwrap_err().to_string();
        assert!(message.contains("no Depends line"), "{message}");
    }

    #[test]
    fn config_values_are_exact_option_matches() {
        let config = "CONFIG_VIRTIO=y\nCONFIG_VIRTIO_BLK=m\n# CONFIG_VIRTIO_MMIO is not set\n\
            CONFIG_VIRTIO_BLK_SCSI=y\n";
        assert_eq!(config_value(config, "CONFIG_VIRTIO"), Some("y"));
        assert_eq!(config_value(config, "CONFIG_VIRTIO_BLK"), Some("m"));
        assert_eq!(config_value(config, "CONFIG_VIRTIO_MMIO"), None);
    }

    /// A scratch directory under target/ for one test.
    fn scratch(name: &str) -> PathBuf {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../target/xtask-tests")
            .join(name);
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn an_unreachable_mirror_is_a_download_error_that_says_so() {
        let cache = scratch("unreachable-mirror");
        // Port 9 (discard) on loopback: nothing listens, so the connection is refused at once.
        let sources = [source("http://127.0.0.1:9/debian", "bookworm", None)];
        let message = match download(&cache, &sources) {
            Err(err @ Error::Download(_)) => err.to_string(),
            Err(other) => panic!("expected a download error, got {other}"),
            Ok(_) => panic!("a refused connection cannot yield a kernel"),
        };
        assert!(
            message.contains(
                "could not fetch the arm64 package index from http://127.0.0.1:9/debian bookworm"
            ),
            "{message}"
        );
        assert!(!cache.join("kernel").exists());
    }

    /// An unpacked kernel package with the given config and modules (name, modinfo).
    fn fake_package(root: &Path, config: &str, modules: &[(&str, &str)], builtin: &str) {
        let release = "6.1.0-56-arm64";
        let mut image = vec![0u8; 0x40];
        image[0x38..0x3c].copy_from_slice(b"ARM\x64");
        std::fs::create_dir_all(root.join("boot")).unwrap();
        std::fs::write(root.join(format!("boot/vmlinuz-{release}")), image).unwrap();
        std::fs::write(root.join(format!("boot/config-{release}")), config).unwrap();
        let modules_dir = root.join(format!("lib/modules/{release}"));
        std::fs::create_dir_all(modules_dir.join("kernel/drivers/block")).unwrap();
        std::fs::write(modules_dir.join("modules.builtin"), builtin).unwrap();
        for (name, info) in modules {
            let elf = kmod::module_elf(info.replace(';', "\0").as_bytes());
            std::fs::write(
                modules_dir.join(format!("kernel/drivers/block/{name}.ko")),
                elf,
            )
            .unwrap();
        }
    }

    fn try_install(root: &Path, cache: &Path) -> Result<Kernel, Error> {
        install(
            root,
            "linux-image-6.1.0-56-arm64",
            "6.1.192-2",
            "6.1.0-56-arm64",
            5,
            cache,
        )
    }

    #[test]
    fn installing_copies_the_image_and_modules_in_load_order() {
        let dir = scratch("install-ok");
        let (root, cache) = (dir.join("root"), dir.join("cache"));
        fake_package(
            &root,
            "CONFIG_VIRTIO=y\nCONFIG_VIRTIO_MMIO=y\nCONFIG_VIRTIO_BLK=m\n",
            &[
                (
                    "virtio_blk",
                    "depends=virtio,helper;vermagic=6.1.0-56-arm64 SMP",
                ),
                ("helper", "depends=;vermagic=6.1.0-56-arm64 SMP"),
            ],
            "kernel/drivers/virtio/virtio.ko\nkernel/drivers/virtio/virtio_mmio.ko\n",
        );
        let kernel = try_install(&root, &cache).unwrap();
        let installed = cache.join("kernel");
        assert_eq!(kernel.vmlinuz, installed.join("vmlinuz-6.1.0-56-arm64"));
        assert_eq!(
            kernel.modules,
            [installed.join("helper.ko"), installed.join("virtio_blk.ko")]
        );
        assert_eq!(kernel.deb_bytes, 5);
        assert_eq!(
            std::fs::read(&kernel.vmlinuz).unwrap()[0x38..0x3c],
            *b"ARM\x64"
        );
        assert!(!cache.join("kernel.new").exists());
    }

    #[test]
    fn installing_refuses_a_kernel_without_virtio_or_with_foreign_modules() {
        let dir = scratch("install-bad");
        let (root, cache) = (dir.join("root"), dir.join("cache"));
        fake_package(
            &root,
            "CONFIG_VIRTIO_MMIO=m\nCONFIG_VIRTIO_BLK=y\n",
            &[],
            "",
        );
        let message = try_install(&root, &cache).err().unwrap().to_string();
        assert!(
            message.contains("module virtio_mmio is neither built in"),
            "{message}"
        );
        fake_package(
            &root,
            "CONFIG_VIRTIO_MMIO=y\n# CONFIG_VIRTIO_BLK is not set\n",
            &[],
            "",
        );
        let message = try_install(&root, &cache).err().unwrap().to_string();
        assert!(
            message.contains("CONFIG_VIRTIO_BLK is not set in"),
            "{message}"
        );
        fake_package(
            &root,
            "CONFIG_VIRTIO_MMIO=y\nCONFIG_VIRTIO_BLK=m\n",
            &[("virtio_blk", "vermagic=6.1.0-55-arm64 SMP")],
            "",
        );
        let message = try_install(&root, &cache).err().unwrap().to_string();
        assert!(
            message.contains("built for `6.1.0-55-arm64 SMP`, not 6.1.0-56-arm64"),
            "{message}"
        );
        std::fs::write(root.join("boot/vmlinuz-6.1.0-56-arm64"), b"not a kernel").unwrap();
        let message = try_install(&root, &cache).err().unwrap().to_string();
        assert!(
            message.contains("neither an arm64 Image nor gzip"),
            "{message}"
        );
        assert!(!cache.join("kernel").exists());
    }

    #[test]
    fn a_cached_kernel_loads_and_an_incomplete_one_is_refused() {
        let cache = scratch("cached-kernel");
        let dir = cache.join("kernel");
        std::fs::create_dir_all(&dir).unwrap();
        let manifest = "package=linux-image-6.1.0-56-arm64\nversion=6.1.192-2\n\
            release=6.1.0-56-arm64\ndeb_bytes=59812568\nmodules=virtio_mmio virtio_blk\n";
        std::fs::write(dir.join(MANIFEST), manifest).unwrap();
        std::fs::write(dir.join("vmlinuz-6.1.0-56-arm64"), b"image").unwrap();
        std::fs::write(dir.join("virtio_mmio.ko"), b"m").unwrap();
        let message = ensure_kernel(&cache, false).err().unwrap().to_string();
        assert!(
            message.contains("lacks") && message.contains("virtio_blk.ko"),
            "{message}"
        );
        std::fs::write(dir.join("virtio_blk.ko"), b"b").unwrap();
        let kernel = ensure_kernel(&cache, false).unwrap();
        assert_eq!(kernel.release, "6.1.0-56-arm64");
        assert_eq!(kernel.version, "6.1.192-2");
        assert_eq!(kernel.deb_bytes, 59_812_568);
        assert_eq!(
            kernel.modules,
            [dir.join("virtio_mmio.ko"), dir.join("virtio_blk.ko")]
        );
        std::fs::write(dir.join(MANIFEST), "package=x\n").unwrap();
        let message = ensure_kernel(&cache, false).err().unwrap().to_string();
        assert!(message.contains("lacks `release=`"), "{message}");
    }
}
