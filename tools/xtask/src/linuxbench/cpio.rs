//! The "newc" cpio archive format Linux unpacks an initramfs from: per entry a 110-byte ASCII
//! header (`070701` and thirteen 8-digit hex fields), the NUL-terminated name padded to 4 bytes,
//! then the data padded to 4 bytes; a `TRAILER!!!` entry ends the archive.

use super::Error;

/// One archive member. Paths are relative (`dev/console`), parents listed before children.
pub enum Entry<'a> {
    Directory {
        path: &'a str,
    },
    File {
        path: &'a str,
        executable: bool,
        data: &'a [u8],
    },
    CharDevice {
        path: &'a str,
        major: u32,
        minor: u32,
    },
}

const S_IFDIR: u32 = 0o040_000;
const S_IFREG: u32 = 0o100_000;
const S_IFCHR: u32 = 0o020_000;

/// The archive holding `entries`, in order, followed by the trailer; an error if a member is
/// too large for the format's 32-bit sizes.
pub fn newc(entries: &[Entry<'_>]) -> Result<Vec<u8>, Error> {
    let mut archive = Vec::new();
    for (index, entry) in entries.iter().enumerate() {
        // Inode numbers only need to differ between entries (1-based; 0 is the trailer's).
        let inode = u32::try_from(index + 1).map_err(|_| too_large("the archive", "entries"))?;
        match *entry {
            Entry::Directory { path } => {
                push_entry(&mut archive, inode, S_IFDIR | 0o755, 2, (0, 0), path, &[])?;
            }
            Entry::File {
                path,
                executable,
                data,
            } => {
                let mode = S_IFREG | if executable { 0o755 } else { 0o644 };
                push_entry(&mut archive, inode, mode, 1, (0, 0), path, data)?;
            }
            Entry::CharDevice { path, major, minor } => {
                push_entry(
                    &mut archive,
                    inode,
                    S_IFCHR | 0o600,
                    1,
                    (major, minor),
                    path,
                    &[],
                )?;
            }
        }
    }
    push_entry(&mut archive, 0, 0, 1, (0, 0), "TRAILER!!!", &[])?;
    Ok(archive)
}

fn too_large(what: &str, field: &str) -> Error {
    Error::Kernel(format!(
        "initramfs: {what} has too many {field} for a newc cpio archive"
    ))
}

fn push_entry(
    archive: &mut Vec<u8>,
    inode: u32,
    mode: u32,
    links: u32,
    (rdev_major, rdev_minor): (u32, u32),
    name: &str,
    data: &[u8],
) -> Result<(), Error> {
    let fields = [
        inode,
        mode,
        0, // uid
        0, // gid
        links,
        0, // mtime: fixed, so the archive is reproducible
        u32::try_from(data.len()).map_err(|_| too_large(name, "bytes"))?,
        0, // devmajor
        0, // devminor
        rdev_major,
        rdev_minor,
        u32::try_from(name.len() + 1).map_err(|_| too_large(name, "name bytes"))?,
        0, // check: unused by newc
    ];
    archive.extend_from_slice(b"070701");
    for field in fields {
        archive.extend_from_slice(format!("{field:08x}").as_bytes());
    }
    archive.extend_from_slice(name.as_bytes());
    archive.push(0);
    pad4(archive);
    archive.extend_from_slice(data);
    pad4(archive);
    Ok(())
}

fn pad4(archive: &mut Vec<u8>) {
    archive.resize(archive.len().next_multiple_of(4), 0);
}

#[cfg(test)]
mod tests {
    use super::{Entry, newc};

    /// Splits an archive back into (header fields, name, data) triples.
    fn parse(mut archive: &[u8]) -> Vec<([u32; 13], String, Vec<u8>)> {
        let mut members = Vec::new();
        let mut consumed = 0usize;
        loop {
            assert_eq!(&archive[..6], b"070701", "magic at byte {consumed}");
            let mut fields = [0u32; 13];
            for (i, field) in fields.iter_mut().enumerate() {
                let hex = std::str::from_utf8(&archive[6 + 8 * i..14 + 8 * i]).unwrap();
                *field = u32::from_str_radix(hex, 16).unwrap();
            }
            let name_len = fields[11] as usize;
            let name = std::str::from_utf8(&archive[110..110 + name_len - 1]).unwrap();
            assert_eq!(archive[110 + name_len - 1], 0, "name is NUL-terminated");
            let data_start = (110 + name_len).next_multiple_of(4);
            let data_end = data_start + fields[6] as usize;
            let next = data_end.next_multiple_of(4);
            members.push((
                fields,
                name.to_string(),
                archive[data_start..data_end].to_vec(),
            ));
            consumed += next;
            archive = &archive[next..];
            if name == "TRAILER!!!" {
                assert!(archive.is_empty(), "nothing after the trailer");
                return members;
            }
        }
    }

    #[test]
    fn first_header_is_byte_exact() {
        let archive = newc(&[Entry::Directory { path: "dev" }]).unwrap();
        let header = "070701\
            00000001000041ed0000000000000000000000020000000000000000\
            000000000000000000000000000000000000000400000000";
        assert_eq!(&archive[..110], header.as_bytes());
        assert_eq!(&archive[110..114], b"dev\0");
        assert_eq!(archive.len() % 4, 0);
    }

    #[test]
    fn members_round_trip_with_modes_devices_and_padding() {
        let init = b"\x7fELF-ish init";
        let module = [7u8; 5];
        let archive = newc(&[
            Entry::Directory { path: "dev" },
            Entry::CharDevice {
                path: "dev/console",
                major: 5,
                minor: 1,
            },
            Entry::File {
                path: "init",
                executable: true,
                data: init,
            },
            Entry::File {
                path: "m/0.ko",
                executable: false,
                data: &module,
            },
        ])
        .unwrap();
        let members = parse(&archive);
        let names: Vec<&str> = members.iter().map(|m| m.1.as_str()).collect();
        assert_eq!(
            names,
            ["dev", "dev/console", "init", "m/0.ko", "TRAILER!!!"]
        );
        let (console, _, _) = &members[1];
        assert_eq!((console[1], console[9], console[10]), (0o020_600, 5, 1));
        assert_eq!(members[2].0[1], 0o100_755);
        assert_eq!(members[2].2, init);
        assert_eq!(members[3].0[1], 0o100_644);
        assert_eq!(members[3].2, module);
        let inodes: Vec<u32> = members.iter().map(|m| m.0[0]).collect();
        assert_eq!(inodes, [1, 2, 3, 4, 0]);
    }
}
