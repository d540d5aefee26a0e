//! The DTBs QEMU 7.2 generates for `virt` yield the machine QEMU was asked for.

mod support;

use devicetree::{
    EnableMethod, Error, Fdt, GicKind, IrqKind, IrqSpec, MachineInfo, MemRegion, PsciFunctions,
    PsciMethod, PsciVersion, TimerInfo, Trigger, write_summary, write_tree,
};
use support::{FIXTURES, field, fixture, set_header_field};

const MIB: u64 = 1 << 20;

fn info(name: &str) -> MachineInfo<'static> {
    let fdt = Fdt::new(fixture(name)).unwrap_or_else(|error| panic!("{name}: {error}"));
    MachineInfo::from_fdt(&fdt).unwrap_or_else(|error| panic!("{name}: {error}"))
}

fn region(base: u64, size: u64) -> MemRegion {
    MemRegion { base, size }
}

#[test]
fn every_fixture_parses_and_describes_a_virt_machine() {
    for (name, blob) in FIXTURES {
        let fdt = Fdt::new(blob).unwrap_or_else(|error| panic!("{name}: {error}"));
        assert_eq!(fdt.total_size(), blob.len(), "{name}");
        assert_eq!(fdt.header().version, 17, "{name}");
        let info = info(name);

        // The console: the PL011 at 0x9000000, SPI 1 level-triggered, 24 MHz apb-pclk.
        let uart = info.uart.unwrap();
        assert_eq!((uart.base, uart.size), (0x900_0000, 0x1000), "{name}");
        let uart_irq = IrqSpec {
            kind: IrqKind::Spi,
            number: 1,
            trigger: Trigger::Level,
        };
        assert_eq!(uart.irq, Some(uart_irq), "{name}");
        assert_eq!(uart.irq.unwrap().intid(), 33, "{name}");
        assert_eq!(uart.clock_hz, Some(24_000_000), "{name}");

        // The generic timer's PPIs 13, 14, 11, 10.
        let timer = TimerInfo {
            secure_phys: 29,
            nonsecure_phys: 30,
            virt: 27,
            hyp: 26,
        };
        assert_eq!(info.timer, Some(timer), "{name}");

        // 32 virtio-mmio slots of 0x200 bytes at 0xa000000.., SPIs 16.., listed in DTB order.
        assert_eq!(info.virtio_mmio.len(), 32, "{name}");
        for (index, slot) in info.virtio_mmio.iter().enumerate() {
            let index = index as u64;
            assert_eq!(slot.base, 0xa00_0000 + 0x200 * index, "{name}");
            assert_eq!(slot.size, 0x200, "{name}");
            assert_eq!(u64::from(slot.irq.intid()), 48 + index, "{name}");
            assert_eq!(
                (slot.irq.kind, slot.irq.trigger),
                (IrqKind::Spi, Trigger::Edge),
                "{name}"
            );
        }

        // QEMU writes no /memreserve/ and no /reserved-memory.
        assert!(info.reserved.is_empty(), "{name}");
        assert_eq!(
            info.ram.first().map(|ram| ram.base),
            Some(0x4000_0000),
            "{name}"
        );
        assert_eq!(info.gic.distributor, region(0x800_0000, 0x1_0000), "{name}");

        let psci = info.psci.unwrap();
        assert_eq!(psci.version, PsciVersion::V1_0, "{name}");
        assert_eq!(psci.functions.cpu_on, Some(0xc400_0003), "{name}");
        assert_eq!(psci.functions.system_off, Some(0x8400_0008), "{name}");
        support::exercise(&fdt);
    }
}

#[test]
fn default_machine() {
    let info = info("default");
    assert_eq!(info.ram.as_slice(), [region(0x4000_0000, 128 * MIB)]);
    assert_eq!(info.ram_size(), 128 * MIB);
    assert_eq!(info.bootargs, None);
    assert_eq!(info.gic.version(), 2);
    assert_eq!(
        info.gic.kind,
        GicKind::V2 {
            cpu_interface: region(0x801_0000, 0x1_0000)
        }
    );
    assert_eq!(info.gic.phandle, Some(0x8002));
    let psci = info.psci.unwrap();
    assert_eq!(psci.method, PsciMethod::Hvc);
    let standard = PsciFunctions {
        psci_version: Some(0x8400_0000),
        cpu_suspend: Some(0xc400_0001),
        cpu_off: Some(0x8400_0002),
        cpu_on: Some(0xc400_0003),
        affinity_info: Some(0xc400_0004),
        migrate: Some(0xc400_0005),
        system_off: Some(0x8400_0008),
        system_reset: Some(0x8400_0009),
    };
    assert_eq!(psci.functions, standard);
    assert_eq!(info.cpus.len(), 1);
    assert_eq!(info.cpus[0].mpidr, 0);
    // With one CPU, QEMU gives no enable-method.
    assert_eq!(info.cpus[0].enable_method, EnableMethod::Absent);
}

#[test]
fn gic_version_3_has_a_redistributor_region() {
    let info = info("gicv3");
    assert_eq!(info.gic.version(), 3);
    let GicKind::V3 { redistributors } = &info.gic.kind else {
        panic!("{:?}", info.gic)
    };
    assert_eq!(redistributors.as_slice(), [region(0x80a_0000, 0xf6_0000)]);
}

#[test]
fn virtualization_on_moves_psci_to_smc_and_adds_gic_hyp_regions() {
    let info = info("virtualization");
    assert_eq!(info.psci.unwrap().method, PsciMethod::Smc);
    assert_eq!(
        info.gic.kind,
        GicKind::V2 {
            cpu_interface: region(0x801_0000, 0x1_0000)
        }
    );
    let fdt = Fdt::new(fixture("virtualization")).unwrap();
    let gic = fdt.find_node("/intc@8000000").unwrap();
    assert_eq!(gic.reg().unwrap().count(), 4, "GICD, GICC, GICH, GICV");
    // The maintenance interrupt: PPI 9, whose interrupt parent is the GIC itself via the root.
    assert_eq!(gic.irq(0).unwrap().intid(), 25);
    assert_eq!(gic.interrupt_parent().unwrap().name(), "intc@8000000");
}

#[test]
fn secure_only_nodes_are_skipped() {
    // secure=on adds a secure UART, secure RAM and flash, all status = "disabled".
    let info = info("secure");
    assert_eq!(info.ram.as_slice(), [region(0x4000_0000, 128 * MIB)]);
    assert_eq!(info.uart.unwrap().base, 0x900_0000);
    let fdt = Fdt::new(fixture("secure")).unwrap();
    let secram = fdt.find_node("/secram@e000000").unwrap();
    assert_eq!(secram.device_type(), Some("memory"));
    assert!(!secram.is_enabled());
    let secure_uart = fdt.find_node("/pl011@9040000").unwrap();
    assert!(!secure_uart.is_enabled());
    assert_eq!(secure_uart.irq(0).unwrap().intid(), 40);
}

#[test]
fn smp4_lists_four_psci_cpus() {
    let info = info("smp4");
    let cpus: Vec<_> = info
        .cpus
        .iter()
        .map(|cpu| (cpu.mpidr, cpu.enable_method))
        .collect();
    let expected: Vec<_> = (0..4).map(|mpidr| (mpidr, EnableMethod::Psci)).collect();
    assert_eq!(cpus, expected);
    // More CPUs push the GIC's phandle up.
    assert_eq!(info.gic.phandle, Some(0x8005));
}

#[test]
fn four_gib_of_ram() {
    let info = info("mem4g");
    assert_eq!(info.ram.as_slice(), [region(0x4000_0000, 4096 * MIB)]);
    assert_eq!(info.ram_size(), 4 << 30);
}

#[test]
fn bootargs_come_from_append() {
    assert_eq!(info("bootargs").bootargs, Some("mem ; poweroff"));
}

#[test]
fn devices_and_transport_version_are_not_in_the_dtb() {
    // QEMU lists all 32 slots whatever sits behind them, and legacy vs modern is only seen by
    // reading each slot's Version register: the kernel must probe the slots.
    assert_eq!(fixture("two_blk"), fixture("default"));
    assert_eq!(fixture("modern"), fixture("default"));
}

#[test]
fn generic_queries_on_the_default_tree() {
    let fdt = Fdt::new(fixture("default")).unwrap();
    assert_eq!(fdt.nodes().count(), 56);
    assert_eq!(fdt.root().name(), "");
    assert_eq!(fdt.root().path().to_string(), "/");
    assert_eq!(
        fdt.root().property("model").unwrap().as_str(),
        Ok("linux,dummy-virt")
    );

    let chosen = fdt.find_node("/chosen").unwrap();
    assert_eq!(
        chosen.property("stdout-path").unwrap().as_str(),
        Ok("/pl011@9000000")
    );
    let cpu = fdt.find_node("/cpus/cpu@0").unwrap();
    assert_eq!(cpu.path().to_string(), "/cpus/cpu@0");
    assert_eq!(cpu.depth(), 2);
    assert_eq!(fdt.find_node("/cpus/cpu").unwrap().offset(), cpu.offset());
    assert_eq!(cpu.parent().unwrap().name(), "cpus");
    assert_eq!(cpu.reg().unwrap().collect::<Vec<_>>(), [region(0, 0)]);

    let core = fdt
        .find_node("/cpus/cpu-map/socket0/cluster0/core0")
        .unwrap();
    assert_eq!(core.depth(), 5);
    assert_eq!(
        core.path().to_string(),
        "/cpus/cpu-map/socket0/cluster0/core0"
    );
    let cpu_phandle = core.property("cpu").unwrap().as_u32().unwrap();
    assert_eq!(
        fdt.find_phandle(cpu_phandle).unwrap().offset(),
        cpu.offset()
    );

    let uart = fdt.find_compatible("arm,pl011").unwrap();
    assert_eq!(uart.name(), "pl011@9000000");
    assert_eq!(uart.base_name(), "pl011");
    let compatible: Vec<_> = uart.compatible().collect();
    assert_eq!(compatible, ["arm,pl011", "arm,primecell"]);
    let clocks: Vec<_> = uart
        .property("clocks")
        .unwrap()
        .as_cells()
        .unwrap()
        .collect();
    assert_eq!(clocks, [0x8000, 0x8000]);
    let interrupts = uart.interrupts().unwrap();
    assert_eq!(interrupts.controller().name(), "intc@8000000");
    assert_eq!(interrupts.cells_per_interrupt(), 3);
    let specifiers: Vec<Vec<u32>> = interrupts.map(Iterator::collect).collect();
    assert_eq!(specifiers, [[0, 1, 4]]);

    assert_eq!(fdt.compatible_nodes("virtio,mmio").count(), 32);
    assert_eq!(fdt.find_phandle(0x8002).unwrap().name(), "intc@8000000");
    assert!(fdt.find_phandle(0x9999).is_none());
    assert_eq!(
        fdt.find_node("/intc@8000000/v2m@8020000").unwrap().depth(),
        2
    );
    assert!(fdt.find_node("/intc@8000000/nothing").is_none());
    let flash: Vec<_> = fdt.find_node("/flash@0").unwrap().reg().unwrap().collect();
    assert_eq!(flash, [region(0, 64 * MIB), region(64 * MIB, 64 * MIB)]);
    // PCIe's children would use 3 address cells; its own reg uses the root's 2.
    let pcie = fdt.find_node("/pcie@10000000").unwrap();
    assert_eq!(
        pcie.reg().unwrap().collect::<Vec<_>>(),
        [region(0x40_1000_0000, 0x1000_0000)]
    );
    assert_eq!(pcie.address_cells(), Ok(3));
}

#[test]
fn qemus_unpacked_one_mebibyte_dtb_parses() {
    // QEMU hands the guest its DTB with 1 MiB of free space after the strings block.
    let mut padded = fixture("default").to_vec();
    padded.resize(1 << 20, 0);
    set_header_field(&mut padded, field::TOTAL_SIZE, 1 << 20);
    let fdt = Fdt::new(&padded).unwrap();
    assert_eq!(fdt.total_size(), 1 << 20);
    assert_eq!(MachineInfo::from_fdt(&fdt).unwrap(), info("default"));
}

#[test]
fn from_ptr_reads_the_blob_the_boot_loader_left() {
    let mut padded = fixture("smp4").to_vec();
    padded.resize(1 << 20, 0);
    set_header_field(&mut padded, field::TOTAL_SIZE, 1 << 20);
    let blob: &'static [u8] = Box::leak(padded.into_boxed_slice());
    // SAFETY: `blob` is leaked, so its 1 MiB stay readable and unchanged for 'static.
    let fdt = unsafe { Fdt::from_ptr(blob.as_ptr()) }.unwrap();
    assert_eq!(fdt.total_size(), 1 << 20);
    assert_eq!(MachineInfo::from_fdt(&fdt).unwrap().cpus.len(), 4);
}

#[test]
fn from_ptr_checks_the_header_before_reading_further() {
    // SAFETY: a null pointer is refused before anything is read.
    let error = unsafe { Fdt::from_ptr(core::ptr::null()) }.unwrap_err();
    assert_eq!(error, Error::NullPointer);

    // Only the 40 header bytes exist: from_ptr must judge them without reading past them.
    let mut header = fixture("default")[..40].to_vec();
    set_header_field(&mut header, field::TOTAL_SIZE, 9 << 20);
    // SAFETY: 40 readable bytes; totalsize is over the limit, so no more are read.
    let error = unsafe { Fdt::from_ptr(header.as_ptr()) }.unwrap_err();
    assert_eq!(
        error,
        Error::TotalSizeOverLimit {
            total_size: 9 << 20,
            limit: 8 << 20
        }
    );
    assert_eq!(
        error.to_string(),
        "header totalsize 9437184 exceeds the 8388608-byte limit"
    );

    set_header_field(&mut header, field::MAGIC, 0x1234_5678);
    // SAFETY: 40 readable bytes; the magic is wrong, so no more are read.
    let error = unsafe { Fdt::from_ptr(header.as_ptr()) }.unwrap_err();
    assert_eq!(
        error.to_string(),
        "bad magic 0x12345678 (expected 0xd00dfeed)"
    );

    set_header_field(&mut header, field::MAGIC, 0xd00d_feed);
    set_header_field(&mut header, field::TOTAL_SIZE, 16);
    // SAFETY: 40 readable bytes; totalsize is below the header size, so no more are read.
    let error = unsafe { Fdt::from_ptr(header.as_ptr()) }.unwrap_err();
    assert_eq!(error, Error::TotalSizeTooSmall { total_size: 16 });
}

#[test]
fn printer_writes_the_tree_in_dts_syntax() {
    let fdt = Fdt::new(fixture("bootargs")).unwrap();
    let mut text = String::new();
    write_tree(&fdt, &mut text).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    for expected in [
        "/ {",
        "  model = \"linux,dummy-virt\";",
        "  #address-cells = <0x2>;",
        "  memory@40000000 {",
        "    reg = <0x0 0x40000000 0x0 0x8000000>;",
        "    device_type = \"memory\";",
        "  pl011@9000000 {",
        "    clock-names = \"uartclk\", \"apb_pclk\";",
        "    clocks = <0x8000 0x8000>;",
        "    interrupts = <0x0 0x1 0x4>;",
        "    compatible = \"arm,pl011\", \"arm,primecell\";",
        "    dma-coherent;",
        "    interrupt-controller;",
        "    clock-frequency = <0x16e3600>;",
        "    bootargs = \"mem ; poweroff\";",
        "    v2m@8020000 {",
        "          core0 {",
        "            cpu = <0x8001>;",
        "  };",
        "};",
    ] {
        assert!(
            lines.contains(&expected),
            "missing line {expected:?} in:\n{text}"
        );
    }
    assert_eq!(lines.first(), Some(&"/ {"));
    assert_eq!(lines.last(), Some(&"};"));
    let opened = lines.iter().filter(|line| line.ends_with(" {")).count();
    let closed = lines.iter().filter(|line| line.trim() == "};").count();
    assert_eq!((opened, closed), (56, 56));
    // The 160-cell PCIe interrupt-map wraps instead of making one long line.
    assert!(
        lines.iter().all(|line| line.len() <= 78),
        "a line is longer than 78 columns"
    );
    let map_start = lines
        .iter()
        .position(|line| line.contains("interrupt-map = <"))
        .unwrap();
    let map_lines = lines[map_start..]
        .iter()
        .position(|line| line.ends_with(">;"))
        .unwrap()
        + 1;
    assert!(map_lines > 5, "interrupt-map took {map_lines} lines");
}

#[test]
fn summary_lists_the_machine_as_key_value_lines() {
    let info = info("bootargs");
    let mut text = String::new();
    write_summary(&info, &mut text).unwrap();
    let expected = "\
ram_base=0x40000000
ram_size=134217728
ram_regions=1
ram0=0x40000000+0x8000000
reserved_regions=0
bootargs=mem ; poweroff
uart=0x9000000
uart_size=0x1000
uart_intid=33
uart_clock_hz=24000000
gic_version=2
gic_dist=0x8000000
gic_cpu=0x8010000
timer_intids=29,30,27,26
virtio_mmio_slots=32
virtio_mmio0=0xa000000+0x200
virtio_mmio0_intid=48
psci_method=hvc
psci_version=1.0
cpus=1
cpu0=0x0,none
";
    assert_eq!(text, expected);

    let mut text = String::new();
    write_summary(&self::info("gicv3"), &mut text).unwrap();
    assert!(text.contains("\ngic_version=3\ngic_dist=0x8000000\ngic_redist0=0x80a0000+0xf60000\n"));
    let mut text = String::new();
    write_summary(&self::info("smp4"), &mut text).unwrap();
    assert!(
        text.contains("\ncpus=4\ncpu0=0x0,psci\ncpu1=0x1,psci\ncpu2=0x2,psci\ncpu3=0x3,psci\n")
    );
}
