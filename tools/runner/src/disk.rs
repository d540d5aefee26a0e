//! Disk images for the virtio-blk devices QEMU gets.
//!
//! Without a `disk`/`nodisk` directive an image gets the shared data disk (default
//! `target/qemu/disk0.img`, 64 MiB, created sparse if missing and never overwritten, so data
//! survives between `cargo run`s) and a swap disk next to it (`target/qemu/disk0.swap.img`,
//! 256 MiB, serial `swap`, where the kernel pages out anonymous memory). Disks declared in
//! `.qemu_config` are recreated for every run
//! as `target/qemu/<image stem>-<name>.img`, optionally wrapped in QEMU's blkdebug driver with
//! a generated rules file `target/qemu/<image stem>-<name>.blkdebug`.

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, ErrorKind, Write};
use std::path::{Path, PathBuf};

use crate::config::{BlkdebugRule, DiskSelection, DiskSpec, Fill, SECTOR_SIZE};
use crate::error::{Error, io_error};

/// Size of the default data disk when the runner creates it.
pub const DEFAULT_DISK_SIZE: u64 = 64 << 20;

/// virtio-blk serial of the default data disk.
pub const DEFAULT_DISK_SERIAL: &str = "disk0";

/// Size of the default swap disk when the runner creates it.
pub const SWAP_DISK_SIZE: u64 = 256 << 20;

/// virtio-blk serial the kernel looks for to find its swap area.
pub const SWAP_DISK_SERIAL: &str = "swap";

/// A disk image ready to attach as `-drive id=<id>` + `virtio-blk-device`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Disk {
    /// QEMU drive id: `blk0`, `blk1`, ... in attachment order.
    pub id: String,
    /// The raw image file.
    pub path: PathBuf,
    /// blkdebug rules file wrapping the image, if any.
    pub blkdebug_config: Option<PathBuf>,
    /// virtio-blk serial the guest can read (VIRTIO_BLK_T_GET_ID): the disk's name.
    pub serial: String,
}

/// Creates (or reuses) the disk images `selection` asks for and returns them in attachment order.
///
/// `qemu_dir` is `target/qemu`, `image_stem` the kernel ELF's file name, and `default_disk` the
/// path of the shared data disk (`QEMU_DISK` or `target/qemu/disk0.img`).
pub fn prepare(
    selection: &DiskSelection,
    qemu_dir: &Path,
    image_stem: &str,
    default_disk: &Path,
) -> Result<Vec<Disk>, Error> {
    match selection {
        DiskSelection::NoDisk => Ok(Vec::new()),
        DiskSelection::Default => {
            ensure_disk(default_disk, DEFAULT_DISK_SIZE)?;
            // Swap content never outlives a boot, so the file is simply reused.
            let swap = swap_disk_path(default_disk);
            ensure_disk(&swap, SWAP_DISK_SIZE)?;
            Ok(vec![
                Disk {
                    id: "blk0".to_string(),
                    path: default_disk.to_path_buf(),
                    blkdebug_config: None,
                    serial: DEFAULT_DISK_SERIAL.to_string(),
                },
                Disk {
                    id: "blk1".to_string(),
                    path: swap,
                    blkdebug_config: None,
                    serial: SWAP_DISK_SERIAL.to_string(),
                },
            ])
        }
        DiskSelection::Declared(specs) => {
            create_dir(qemu_dir)?;
            specs
                .iter()
                .enumerate()
                .map(|(index, spec)| prepare_declared(index, spec, qemu_dir, image_stem))
                .collect()
        }
    }
}

fn prepare_declared(
    index: usize,
    spec: &DiskSpec,
    qemu_dir: &Path,
    image_stem: &str,
) -> Result<Disk, Error> {
    let path = qemu_dir.join(format!("{image_stem}-{}.img", spec.name));
    create_fresh(&path, spec.size, spec.fill)?;
    let blkdebug_config = if spec.blkdebug.is_empty() {
        None
    } else {
        let config_path = qemu_dir.join(format!("{image_stem}-{}.blkdebug", spec.name));
        if config_path.as_os_str().as_encoded_bytes().contains(&b':') {
            return Err(Error::BlkdebugPath(config_path));
        }
        std::fs::write(&config_path, blkdebug_config(&spec.blkdebug))
            .map_err(io_error("write blkdebug config", &config_path))?;
        Some(config_path)
    };
    Ok(Disk {
        id: format!("blk{index}"),
        path,
        blkdebug_config,
        serial: spec.name.clone(),
    })
}

fn create_dir(dir: &Path) -> Result<(), Error> {
    std::fs::create_dir_all(dir).map_err(io_error("create directory", dir))
}

/// The swap disk that goes with the data disk `data`: `<data stem>.swap.img` beside it.
pub fn swap_disk_path(data: &Path) -> PathBuf {
    data.with_extension("swap.img")
}

/// Creates a zero-filled (sparse) image of `size` bytes at `path` unless a file is already
/// there; an existing file is left untouched whatever its size. Returns whether it was created.
pub fn ensure_disk(path: &Path, size: u64) -> Result<bool, Error> {
    if let Some(parent) = path
        .parent()
        .filter(|parent| !parent.as_os_str().is_empty())
    {
        create_dir(parent)?;
    }
    match OpenOptions::new().write(true).create_new(true).open(path) {
        Ok(file) => {
            file.set_len(size)
                .map_err(io_error("size disk image", path))?;
            Ok(true)
        }
        Err(error) if error.kind() == ErrorKind::AlreadyExists => Ok(false),
        Err(error) => Err(io_error("create disk image", path)(error)),
    }
}

/// Creates `path` anew (truncating any old content) with `size` bytes of `fill` content.
pub fn create_fresh(path: &Path, size: u64, fill: Fill) -> Result<(), Error> {
    let file = File::create(path).map_err(io_error("create disk image", path))?;
    match fill {
        Fill::Zero => file
            .set_len(size)
            .map_err(io_error("size disk image", path)),
        Fill::Lba => write_lba_pattern(file, size).map_err(io_error("write disk image", path)),
    }
}

/// The content of sector `lba` under `fill=lba`: `lba` as a little-endian u64, 64 times.
pub fn lba_sector(lba: u64) -> [u8; SECTOR_SIZE as usize] {
    let mut sector = [0u8; SECTOR_SIZE as usize];
    for word in sector.chunks_exact_mut(8) {
        word.copy_from_slice(&lba.to_le_bytes());
    }
    sector
}

fn write_lba_pattern(file: File, size: u64) -> std::io::Result<()> {
    let mut out = BufWriter::with_capacity(1 << 16, file);
    for lba in 0..size / SECTOR_SIZE {
        out.write_all(&lba_sector(lba))?;
    }
    out.into_inner()
        .map_err(|error| error.into_error())?
        .sync_data()
}

/// The blkdebug rules file: one `[inject-error]` section per rule, values quoted as QEMU's
/// `-readconfig` format wants.
pub fn blkdebug_config(rules: &[BlkdebugRule]) -> String {
    let mut text = String::new();
    for rule in rules {
        text.push_str("[inject-error]\n");
        for (key, value) in &rule.fields {
            text.push_str(&format!("{key} = \"{value}\"\n"));
        }
        text.push('\n');
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_elf::scratch_dir;
    use std::fs;

    fn spec(name: &str, size: u64, fill: Fill, blkdebug: Vec<BlkdebugRule>) -> DiskSpec {
        DiskSpec {
            name: name.to_string(),
            size,
            fill,
            blkdebug,
        }
    }

    #[test]
    fn default_disks_are_created_sparse_data_and_swap() {
        let dir = scratch_dir("default_disk");
        let path = dir.join("nested/disk0.img");
        let disks = prepare(&DiskSelection::Default, &dir, "kernel", &path).unwrap();
        let swap = dir.join("nested/disk0.swap.img");
        assert_eq!(
            disks,
            [
                Disk {
                    id: "blk0".into(),
                    path: path.clone(),
                    blkdebug_config: None,
                    serial: "disk0".into(),
                },
                Disk {
                    id: "blk1".into(),
                    path: swap.clone(),
                    blkdebug_config: None,
                    serial: "swap".into(),
                }
            ]
        );
        assert_eq!(fs::metadata(&path).unwrap().len(), 64 << 20);
        assert_eq!(fs::metadata(&swap).unwrap().len(), 256 << 20);
        let content = fs::read(&path).unwrap();
        assert!(content.iter().all(|&byte| byte == 0));
    }

    #[test]
    fn existing_default_disk_is_never_overwritten() {
        let dir = scratch_dir("existing_disk");
        let path = dir.join("mine.img");
        fs::write(&path, b"precious data").unwrap();
        assert!(!ensure_disk(&path, DEFAULT_DISK_SIZE).unwrap());
        prepare(&DiskSelection::Default, &dir, "kernel", &path).unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"precious data");
    }

    #[test]
    fn nodisk_creates_nothing() {
        let dir = scratch_dir("nodisk");
        let default = dir.join("disk0.img");
        assert!(
            prepare(&DiskSelection::NoDisk, &dir, "k", &default)
                .unwrap()
                .is_empty()
        );
        assert!(!default.exists());
    }

    #[test]
    fn declared_disks_are_recreated_in_order() {
        let dir = scratch_dir("declared");
        let qemu_dir = dir.join("qemu");
        let default = qemu_dir.join("disk0.img");
        let selection = DiskSelection::Declared(vec![
            spec("swap", 8192, Fill::Zero, vec![]),
            spec("data", 4096, Fill::Lba, vec![]),
        ]);
        fs::create_dir_all(&qemu_dir).unwrap();
        let stale = qemu_dir.join("blk-1a2b-swap.img");
        fs::write(&stale, vec![0xEE; 20000]).unwrap();

        let disks = prepare(&selection, &qemu_dir, "blk-1a2b", &default).unwrap();
        assert_eq!(
            disks,
            [
                Disk {
                    id: "blk0".into(),
                    path: stale.clone(),
                    blkdebug_config: None,
                    serial: "swap".into(),
                },
                Disk {
                    id: "blk1".into(),
                    path: qemu_dir.join("blk-1a2b-data.img"),
                    blkdebug_config: None,
                    serial: "data".into(),
                },
            ]
        );
        let swap = fs::read(&stale).unwrap();
        assert_eq!(swap.len(), 8192, "old content truncated, new size set");
        assert!(swap.iter().all(|&byte| byte == 0));
        assert!(!default.exists(), "declared disks replace the default disk");
    }

    #[test]
    fn lba_fill_content() {
        let dir = scratch_dir("lba");
        let path = dir.join("lba.img");
        create_fresh(&path, 4 * SECTOR_SIZE, Fill::Lba).unwrap();
        let content = fs::read(&path).unwrap();
        assert_eq!(content.len(), 2048);
        for (lba, sector) in content.chunks(512).enumerate() {
            for word in sector.chunks(8) {
                assert_eq!(u64::from_le_bytes(word.try_into().unwrap()), lba as u64);
            }
        }
        assert_eq!(&content[512..520], &[1, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(&content[3 * 512 + 504..], &[3, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(
            lba_sector(0x0102_0304_0506_0708)[..8],
            [8, 7, 6, 5, 4, 3, 2, 1]
        );
    }

    #[test]
    fn blkdebug_rules_file() {
        let rules = vec![
            BlkdebugRule {
                fields: vec![
                    ("event".into(), "read_aio".into()),
                    ("errno".into(), "5".into()),
                    ("sector".into(), "2048".into()),
                    ("once".into(), "on".into()),
                ],
            },
            BlkdebugRule {
                fields: vec![("event".into(), "flush_to_disk".into())],
            },
        ];
        assert_eq!(
            blkdebug_config(&rules),
            "[inject-error]\nevent = \"read_aio\"\nerrno = \"5\"\nsector = \"2048\"\nonce = \"on\"\n\n\
             [inject-error]\nevent = \"flush_to_disk\"\n\n"
        );

        let dir = scratch_dir("blkdebug");
        let selection = DiskSelection::Declared(vec![spec("bad", 1024, Fill::Zero, rules.clone())]);
        let disks = prepare(&selection, &dir, "io", &dir.join("unused.img")).unwrap();
        let config_path = dir.join("io-bad.blkdebug");
        assert_eq!(
            disks[0].blkdebug_config.as_deref(),
            Some(config_path.as_path())
        );
        assert_eq!(
            fs::read_to_string(config_path).unwrap(),
            blkdebug_config(&rules)
        );
    }

    #[test]
    fn blkdebug_config_path_with_colon_is_refused() {
        let scratch = scratch_dir("blkdebug_colon");
        let dir = scratch.join("a:b");
        let rules = vec![BlkdebugRule {
            fields: vec![("event".into(), "read_aio".into())],
        }];
        let selection = DiskSelection::Declared(vec![spec("bad", 1024, Fill::Zero, rules)]);
        let error = prepare(&selection, &dir, "io", &dir.join("unused.img")).unwrap_err();
        assert_eq!(
            error.to_string(),
            format!(
                "blkdebug config path {}/io-bad.blkdebug contains ':', which QEMU's blkdebug: \
                 syntax cannot express",
                dir.display()
            )
        );
    }

    #[test]
    fn uncreatable_disk_reports_the_path() {
        let dir = scratch_dir("uncreatable");
        let blocker = dir.join("file");
        fs::write(&blocker, b"").unwrap();
        let path = blocker.join("disk.img");
        let error = ensure_disk(&path, 1024).unwrap_err().to_string();
        assert!(
            error.starts_with(&format!("cannot create directory {}: ", blocker.display())),
            "{error}"
        );
        let error = create_fresh(&path, 1024, Fill::Zero)
            .unwrap_err()
            .to_string();
        assert!(
            error.starts_with(&format!("cannot create disk image {}: ", path.display())),
            "{error}"
        );
    }
}
