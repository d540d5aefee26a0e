//! Which kernel modules the initramfs needs and in what order: each module's `.modinfo` ELF
//! section names the modules it depends on (`depends=a,b`) and the kernel it was built for
//! (`vermagic=6.1.0-56-arm64 SMP ...`); modules built into the kernel (`modules.builtin`) need
//! no loading.

use super::Error;
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

/// Module names compare with `-` and `_` equal, as the kernel's do.
pub fn normalize(name: &str) -> String {
    name.replace('-', "_")
}

/// The `key=value` strings of an ELF64 little-endian module's `.modinfo` section.
pub fn modinfo(path: &Path, elf: &[u8]) -> Result<Vec<String>, Error> {
    let malformed = |reason: &'static str| Error::Module {
        path: path.to_path_buf(),
        reason,
    };
    if elf.get(..6) != Some(b"\x7fELF\x02\x01") {
        return Err(malformed("not a 64-bit little-endian ELF file"));
    }
    let u16_at = |offset: usize| {
        elf.get(offset..offset + 2)
            .map(|b| u16::from_le_bytes([b[0], b[1]]) as usize)
    };
    let u32_at = |offset: usize| {
        elf.get(offset..offset + 4)
            .map(|b| u32::from_le_bytes(b.try_into().expect("4 bytes")) as usize)
    };
    let u64_at = |offset: usize| {
        elf.get(offset..offset + 8)
            .and_then(|b| usize::try_from(u64::from_le_bytes(b.try_into().expect("8 bytes"))).ok())
    };
    let truncated = || malformed("truncated ELF headers");
    let section_table = u64_at(0x28).ok_or_else(truncated)?;
    let entry_size = u16_at(0x3a).ok_or_else(truncated)?;
    let count = u16_at(0x3c).ok_or_else(truncated)?;
    let names_index = u16_at(0x3e).ok_or_else(truncated)?;
    // (name offset, file offset, size) of section `index`.
    let section = |index: usize| {
        let header = section_table.checked_add(index.checked_mul(entry_size)?)?;
        Some((
            u32_at(header)?,
            u64_at(header.checked_add(0x18)?)?,
            u64_at(header.checked_add(0x20)?)?,
        ))
    };
    let bytes_of = |offset: usize, size: usize| elf.get(offset..offset.checked_add(size)?);
    let (_, names_offset, names_size) = section(names_index).ok_or_else(truncated)?;
    let names = bytes_of(names_offset, names_size).ok_or_else(truncated)?;
    for index in 0..count {
        let (name, offset, size) = section(index).ok_or_else(truncated)?;
        let name = names
            .get(name..)
            .and_then(|rest| rest.split(|&b| b == 0).next());
        if name == Some(b".modinfo") {
            let contents = bytes_of(offset, size).ok_or_else(truncated)?;
            return Ok(contents
                .split(|&b| b == 0)
                .filter(|s| !s.is_empty())
                .map(|s| String::from_utf8_lossy(s).into_owned())
                .collect());
        }
    }
    Err(malformed("no .modinfo section"))
}

/// The value of `key` among `modinfo` strings.
pub fn field<'a>(info: &'a [String], key: &str) -> Option<&'a str> {
    info.iter()
        .find_map(|entry| entry.strip_prefix(key)?.strip_prefix('='))
}

/// The modules a kernel release offers as files: normalized name -> path.
pub struct ModuleTree {
    pub files: HashMap<String, PathBuf>,
    pub builtin: HashSet<String>,
}

/// `wanted` and everything they depend on that is not built in, dependencies first.
/// `depends` gives a module file's dependency names.
pub fn load_order(
    wanted: &[&str],
    tree: &ModuleTree,
    depends: &mut dyn FnMut(&Path) -> Result<Vec<String>, Error>,
) -> Result<Vec<(String, PathBuf)>, Error> {
    fn visit(
        name: &str,
        tree: &ModuleTree,
        depends: &mut dyn FnMut(&Path) -> Result<Vec<String>, Error>,
        visiting: &mut Vec<String>,
        order: &mut Vec<(String, PathBuf)>,
    ) -> Result<(), Error> {
        let name = normalize(name);
        if tree.builtin.contains(&name) || order.iter().any(|(done, _)| *done == name) {
            return Ok(());
        }
        if visiting.contains(&name) {
            return Err(Error::Kernel(format!(
                "module dependency cycle: {} -> {name}",
                visiting.join(" -> ")
            )));
        }
        let path = tree.files.get(&name).ok_or_else(|| {
            Error::Kernel(format!(
                "module {name} is neither built in nor a file in the package{}",
                if visiting.is_empty() {
                    String::new()
                } else {
                    format!(" (needed by {})", visiting.join(" -> "))
                }
            ))
        })?;
        visiting.push(name.clone());
        for dependency in depends(path)? {
            visit(&dependency, tree, depends, visiting, order)?;
        }
        visiting.pop();
        order.push((name, path.clone()));
        Ok(())
    }
    let mut order = Vec::new();
    for name in wanted {
        visit(name, tree, depends, &mut Vec::new(), &mut order)?;
    }
    Ok(order)
}

#[cfg(test)]
/// Test helper: a minimal ELF64 LE file with sections: null, `.modinfo` holding `info`, `.shstrtab`.
pub(super) fn module_elf(info: &[u8]) -> Vec<u8> {
    let names = b"\0.modinfo\0.shstrtab\0";
    let mut elf = vec![0u8; 64];
    elf[..6].copy_from_slice(b"\x7fELF\x02\x01");
    let info_offset = elf.len();
    elf.extend_from_slice(info);
    let names_offset = elf.len();
    elf.extend_from_slice(names);
    elf.resize(elf.len().next_multiple_of(8), 0);
    let table = elf.len();
    elf[0x28..0x30].copy_from_slice(&(table as u64).to_le_bytes());
    elf[0x3a..0x3c].copy_from_slice(&64u16.to_le_bytes());
    elf[0x3c..0x3e].copy_from_slice(&3u16.to_le_bytes());
    elf[0x3e..0x40].copy_from_slice(&2u16.to_le_bytes());
    let sections = [
        (0u32, 0usize, 0usize),
        (1, info_offset, info.len()),
        (10, names_offset, names.len()),
    ];
    for (name, offset, size) in sections {
        let mut header = [0u8; 64];
        header[..4].copy_from_slice(&name.to_le_bytes());
        header[0x18..0x20].copy_from_slice(&(offset as u64).to_le_bytes());
        header[0x20..0x28].copy_from_slice(&(size as u64).to_le_bytes());
        elf.extend_from_slice(&header);
    }
    elf
}

#[cfg(test)]
mod tests {
    use super::{Error, ModuleTree, field, load_order, modinfo, module_elf};
    use std::collections::{HashMap, HashSet};
    use std::path::{Path, PathBuf};

    #[test]
    fn modinfo_fields_are_read_from_the_section() {
        let elf =
            module_elf(b"license=GPL\0depends=virtio,virtio_ring\0vermagic=6.1.0-56-arm64 SMP\0\0");
        let info = modinfo(Path::new("m.ko"), &elf).unwrap();
        assert_eq!(info.len(), 3);
        assert_eq!(field(&info, "depends"), Some("virtio,virtio_ring"));
        assert_eq!(field(&info, "vermagic"), Some("6.1.0-56-arm64 SMP"));
        assert_eq!(field(&info, "vermagi"), None);
        assert_eq!(field(&info, "name"), None);
    }

    #[test]
    fn malformed_modules_are_rejected_with_a_reason() {
        let reason = |elf: &[u8]| match modinfo(Path::new("bad.ko"), elf) {
            Err(Error::Module { path, reason }) => {
                assert_eq!(path, Path::new("bad.ko"));
                reason
            }
            other => panic!("expected a module error, got {other:?}"),
        };
        assert_eq!(reason(b"MZ"), "not a 64-bit little-endian ELF file");
        let elf = module_elf(b"depends=\0");
        assert_eq!(reason(&elf[..0x30]), "truncated ELF headers");
        assert_eq!(reason(&elf[..elf.len() - 60]), "truncated ELF headers");
        let mut renamed = elf.clone();
        let at = renamed.windows(8).position(|w| w == b".modinfo").unwrap();
        renamed[at + 1] = b'M';
        assert_eq!(reason(&renamed), "no .modinfo section");
    }

    fn tree(files: &[&str], builtin: &[&str]) -> ModuleTree {
        ModuleTree {
            files: files
                .iter()
                .map(|name| (name.to_string(), PathBuf::from(format!("{name}.ko"))))
                .collect(),
            builtin: builtin.iter().map(|name| name.to_string()).collect(),
        }
    }

    fn fake_depends(
        table: &'static [(&'static str, &'static [&'static str])],
    ) -> impl FnMut(&Path) -> Result<Vec<String>, Error> {
        let table: HashMap<&str, &[&str]> = table.iter().copied().collect();
        move |path: &Path| {
            let stem = path.file_stem().unwrap().to_str().unwrap();
            Ok(table[stem].iter().map(|name| name.to_string()).collect())
        }
    }

    #[test]
    fn dependencies_load_first_and_builtins_are_skipped() {
        let tree = tree(
            &["virtio_blk", "virtio_mmio", "helper"],
            &["virtio", "virtio_ring"],
        );
        let mut depends = fake_depends(&[
            ("virtio_mmio", &["virtio", "virtio_ring"]),
            ("virtio_blk", &["virtio", "helper"]),
            ("helper", &["virtio-ring"]),
        ]);
        let order = load_order(&["virtio-mmio", "virtio_blk"], &tree, &mut depends).unwrap();
        let names: Vec<&str> = order.iter().map(|(name, _)| name.as_str()).collect();
        assert_eq!(names, ["virtio_mmio", "helper", "virtio_blk"]);
        assert_eq!(order[1].1, PathBuf::from("helper.ko"));
    }

    #[test]
    fn missing_modules_and_cycles_are_errors() {
        let tree = tree(&["a", "b"], &[]);
        let mut depends = fake_depends(&[("a", &["b"]), ("b", &["c"])]);
        let message = load_order(&["a"], &tree, &mut depends)
            .unwrap_err()
            .to_string();
        assert!(
            message.contains("module c is neither built in"),
            "{message}"
        );
        assert!(message.contains("needed by a -> b"), "{message}");
        let mut depends = fake_depends(&[("a", &["b"]), ("b", &["a"])]);
        let message = load_order(&["a"], &tree, &mut depends)
            .unwrap_err()
            .to_string();
        assert!(message.contains("cycle: a -> b -> a"), "{message}");
        let empty = ModuleTree {
            files: HashMap::new(),
            builtin: HashSet::new(),
        };
        let message = load_order(&["virtio_blk"], &empty, &mut depends)
            .unwrap_err()
            .to_string();
        assert!(
            message.contains("module virtio_blk is neither"),
            "{message}"
        );
    }
}
