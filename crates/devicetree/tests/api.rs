//! The generic reader and the machine extractor on hand-written trees: each rule and each
//! error a well-formed but unusual or incomplete DTB can produce.

mod support;

use devicetree::{
    EnableMethod, Error, Fdt, GicKind, IrqKind, IrqSpec, MachineInfo, MemRegion, Name, PsciMethod,
    PsciVersion, Trigger, write_summary, write_tree,
};
use support::{DtbBuilder, GIC_PHANDLE, machine};

fn region(base: u64, size: u64) -> MemRegion {
    MemRegion { base, size }
}

fn name(text: &str) -> Name {
    Name::new(text)
}

/// The machine extracted from `blob`, which must succeed.
fn info_of(blob: &[u8]) -> MachineInfo<'_> {
    let fdt = Fdt::new(blob).unwrap();
    MachineInfo::from_fdt(&fdt).unwrap_or_else(|error| panic!("{error}"))
}

/// The error extracting the machine from `blob` gives.
fn info_error(blob: &[u8]) -> Error {
    let fdt = Fdt::new(blob).unwrap();
    MachineInfo::from_fdt(&fdt).unwrap_err()
}

/// A device node `name` with one GIC interrupt `cells`.
fn device(dtb: &mut DtbBuilder, name: &str, cells: &[u32]) {
    dtb.begin(name)
        .prop_cells("reg", &[0, 0x100, 0, 0x10])
        .prop_cells("interrupts", cells)
        .end();
}

/// A machine with a GICv3 (one redistributor region, `#redistributor-regions` if given),
/// 4 KiB of memory and one CPU, less the part named by `skip` ("gic", "memory", "cpus").
fn gicv3_machine(skip: &str, redistributor_regions: Option<u32>) -> Vec<u8> {
    let mut dtb = DtbBuilder::new();
    dtb.begin("")
        .prop_u32("#address-cells", 2)
        .prop_u32("#size-cells", 2);
    if skip != "gic" {
        dtb.begin("intc").prop_strs("compatible", &["arm,gic-v3"]);
        if let Some(count) = redistributor_regions {
            dtb.prop_u32("#redistributor-regions", count);
        }
        let reg = [0, 0x800_0000, 0, 0x1_0000, 0, 0x80a_0000, 0, 0xf6_0000];
        dtb.prop_cells("reg", &reg)
            .prop_u32("#interrupt-cells", 3)
            .end();
    }
    if skip != "memory" {
        dtb.begin("memory").prop_str("device_type", "memory");
        dtb.prop_cells("reg", &[0, 0x4000_0000, 0, 0x1000]).end();
    }
    if skip != "cpus" {
        dtb.begin("cpus").prop_u32("#address-cells", 1);
        dtb.prop_u32("#size-cells", 0)
            .begin("cpu@0")
            .prop_str("device_type", "cpu");
        dtb.prop_u32("reg", 0).end().end();
    }
    dtb.end();
    dtb.finish()
}

#[test]
fn property_values_convert_only_when_their_size_fits() {
    let blob = machine(|dtb| {
        dtb.begin("values")
            .prop_u32("one", 7)
            .prop_cells("two", &[1, 2])
            .prop("five", &[1, 2, 3, 4, 5])
            .prop_str("text", "hello")
            .prop_strs("list", &["a", "bc", ""])
            .prop("unterminated", b"abc")
            .prop("not-utf8", &[0xff, 0])
            .prop_empty("flag")
            .end();
    });
    let fdt = Fdt::new(&blob).unwrap();
    let node = fdt.find_node("/values").unwrap();
    let get = |name: &str| node.property(name).unwrap();

    assert_eq!(get("one").as_u32(), Ok(7));
    assert_eq!(get("one").as_u32_or_u64(), Ok(7));
    assert_eq!(get("two").as_u64(), Ok(0x1_0000_0002));
    assert_eq!(get("two").as_u32_or_u64(), Ok(0x1_0000_0002));
    let error = get("two").as_u32().unwrap_err();
    let offset = get("two").offset();
    assert_eq!(
        error,
        Error::BadPropertyLength {
            property: name("two"),
            offset,
            len: 8,
            expected: "4"
        }
    );
    assert_eq!(
        error.to_string(),
        format!("property two at {offset:#x} is 8 bytes, expected 4")
    );
    assert!(matches!(
        get("five").as_u32_or_u64(),
        Err(Error::BadPropertyLength {
            expected: "4 or 8",
            ..
        })
    ));
    assert!(matches!(
        get("five").as_cells(),
        Err(Error::BadPropertyLength { len: 5, .. })
    ));
    assert_eq!(get("five").value(), [1, 2, 3, 4, 5]);

    assert_eq!(get("text").as_str(), Ok("hello"));
    let list: Vec<_> = get("list").as_str_list().unwrap().collect();
    assert_eq!(list, ["a", "bc", ""]);
    let error = get("list").as_str().unwrap_err();
    assert_eq!(
        error,
        Error::BadString {
            property: name("list"),
            offset: get("list").offset()
        }
    );
    assert!(matches!(
        get("unterminated").as_str(),
        Err(Error::BadString { .. })
    ));
    assert!(matches!(
        get("unterminated").as_str_list(),
        Err(Error::BadString { .. })
    ));
    assert!(matches!(
        get("not-utf8").as_str(),
        Err(Error::BadString { .. })
    ));
    assert!(matches!(get("flag").as_str(), Err(Error::BadString { .. })));
    assert_eq!(get("flag").as_str_list().unwrap().count(), 0);
    assert!(get("flag").value().is_empty());

    let mut cells = get("two").as_cells().unwrap();
    assert_eq!(
        (cells.len(), cells.get(1), cells.get(2)),
        (2, Some(2), None)
    );
    assert_eq!(cells.read_number(3), None);
    assert_eq!(cells.read_number(2), Some(0x1_0000_0002));
    assert!(cells.is_empty());

    let error = node.required_property("absent").unwrap_err();
    assert_eq!(
        error,
        Error::MissingProperty {
            node: name("values"),
            property: name("absent")
        }
    );
    assert_eq!(
        error.to_string(),
        "node \"values\" has no \"absent\" property"
    );
}

#[test]
fn find_node_follows_paths_and_aliases() {
    let blob = machine(|dtb| {
        dtb.begin("aliases")
            .prop_str("serial0", "/soc/uart@1000")
            .prop_str("loop", "serial0")
            .prop_str("gone", "/nothing")
            .end();
        dtb.begin("soc")
            .prop_u32("#address-cells", 1)
            .prop_u32("#size-cells", 1);
        dtb.begin("uart@1000")
            .prop_cells("reg", &[0x1000, 0x100])
            .begin("port")
            .end()
            .end();
        dtb.begin("uart@2000").end();
        dtb.end();
    });
    let fdt = Fdt::new(&blob).unwrap();
    let uart = fdt.find_node("/soc/uart@1000").unwrap();
    assert_eq!(fdt.find_node("serial0").unwrap().offset(), uart.offset());
    assert_eq!(
        fdt.find_node("serial0/port").unwrap().path().to_string(),
        "/soc/uart@1000/port"
    );
    // Without a unit address, the first node with that base name.
    assert_eq!(fdt.find_node("/soc/uart").unwrap().offset(), uart.offset());
    assert_eq!(fdt.find_node("/soc/uart@2000").unwrap().name(), "uart@2000");
    assert_eq!(
        fdt.find_node("/soc//uart@1000/").unwrap().offset(),
        uart.offset()
    );
    assert!(fdt.find_node("/soc/uart@3000").is_none());
    assert!(fdt.find_node("/soc/uart@1000/port/deeper").is_none());
    assert!(
        fdt.find_node("loop").is_none(),
        "an alias naming an alias is refused"
    );
    assert!(fdt.find_node("gone").is_none());
    assert!(fdt.find_node("unknown").is_none());
    assert!(fdt.find_node("").is_none());
    assert_eq!(
        uart.reg().unwrap().collect::<Vec<_>>(),
        [region(0x1000, 0x100)]
    );
}

#[test]
fn phandles_status_and_compatible() {
    let blob = machine(|dtb| {
        dtb.begin("legacy")
            .prop_u32("linux,phandle", 9)
            .prop_str("status", "ok")
            .end();
        dtb.begin("off")
            .prop_u32("phandle", 10)
            .prop_str("status", "disabled")
            .end();
        dtb.begin("multi")
            .prop_strs("compatible", &["vendor,exact", "generic"])
            .end();
    });
    let fdt = Fdt::new(&blob).unwrap();
    assert_eq!(fdt.find_phandle(9).unwrap().name(), "legacy");
    assert_eq!(
        fdt.find_phandle(GIC_PHANDLE).unwrap().name(),
        "intc@8000000"
    );
    assert!(fdt.find_phandle(0).is_none());
    assert!(fdt.find_phandle(u32::MAX).is_none());
    assert!(fdt.find_node("/legacy").unwrap().is_enabled());
    assert!(!fdt.find_node("/off").unwrap().is_enabled());
    assert!(fdt.find_node("/cpus").unwrap().is_enabled());
    assert_eq!(fdt.find_compatible("generic").unwrap().name(), "multi");
    assert!(fdt.find_compatible("gener").is_none());
    assert_eq!(fdt.compatible_nodes("arm,gic-400").count(), 1);
}

#[test]
fn reg_uses_the_parents_cell_counts() {
    let blob = machine(|dtb| {
        // No #address-cells / #size-cells: the spec defaults 2 and 1 apply to children.
        dtb.begin("bare")
            .begin("child@1")
            .prop_cells("reg", &[0, 0x1000, 0x20])
            .end()
            .end();
        dtb.begin("pci")
            .prop_u32("#address-cells", 3)
            .prop_u32("#size-cells", 2);
        dtb.begin("dev")
            .prop_cells("reg", &[0, 0, 0, 0, 0])
            .end()
            .end();
        dtb.begin("odd").prop_cells("reg", &[0, 0x1000, 0]).end();
        dtb.begin("empty").prop("reg", &[]).end();
        dtb.begin("none").end();
        dtb.begin("zero")
            .prop_u32("#address-cells", 0)
            .prop_u32("#size-cells", 0);
        dtb.begin("x").prop("reg", &[]).end().end();
    });
    let fdt = Fdt::new(&blob).unwrap();
    let reg = |path: &str| fdt.find_node(path).unwrap().reg();
    assert_eq!(
        reg("/bare/child@1").unwrap().collect::<Vec<_>>(),
        [region(0x1000, 0x20)]
    );
    let error = reg("/pci/dev").unwrap_err();
    assert_eq!(
        error,
        Error::UnsupportedCells {
            node: name("dev"),
            address_cells: 3,
            size_cells: 2
        }
    );
    assert_eq!(
        error.to_string(),
        "node \"dev\": #address-cells 3 / #size-cells 2 (at most 2 each supported)"
    );
    let error = reg("/odd").unwrap_err();
    assert!(
        matches!(error, Error::BadPropertyLength { len: 12, .. }),
        "{error}"
    );
    assert_eq!(reg("/empty").unwrap().len(), 0);
    assert_eq!(
        reg("/none").unwrap_err(),
        Error::MissingProperty {
            node: name("none"),
            property: name("reg")
        }
    );
    assert!(matches!(
        reg("/zero/x"),
        Err(Error::UnsupportedCells {
            address_cells: 0,
            size_cells: 0,
            ..
        })
    ));
    // The root has no parent: its own reg would use the defaults.
    assert_eq!(fdt.root().address_cells(), Ok(2));
    assert_eq!(fdt.find_node("/bare").unwrap().size_cells(), Ok(1));
}

#[test]
fn gic_specifiers_decode_to_intids() {
    let blob = machine(|dtb| {
        device(dtb, "spi", &[0, 1, 4, 0, 987, 1]);
        device(dtb, "ppi", &[1, 13, 0xf08, 1, 15, 2]);
        device(dtb, "bad-type", &[2, 1, 4]);
        device(dtb, "big-spi", &[0, 988, 4]);
        device(dtb, "big-ppi", &[1, 16, 4]);
        device(dtb, "no-flags", &[0, 1, 0]);
        device(dtb, "partial", &[0, 1]);
    });
    let fdt = Fdt::new(&blob).unwrap();
    let node = |name: &str| fdt.find_node(name).unwrap();

    let spi = node("/spi");
    assert_eq!(
        spi.irq(0),
        Ok(IrqSpec {
            kind: IrqKind::Spi,
            number: 1,
            trigger: Trigger::Level
        })
    );
    assert_eq!(spi.irq(0).unwrap().intid(), 33);
    assert_eq!(spi.irq(1).unwrap().intid(), 1019);
    assert_eq!(spi.irq(1).unwrap().trigger, Trigger::Edge);
    let error = spi.irq(2).unwrap_err();
    assert_eq!(
        error,
        Error::MissingInterrupt {
            node: name("spi"),
            index: 2
        }
    );
    assert_eq!(error.to_string(), "node \"spi\" has no interrupt number 2");

    let ppi = node("/ppi");
    assert_eq!(
        ppi.irq(0),
        Ok(IrqSpec {
            kind: IrqKind::Ppi,
            number: 13,
            trigger: Trigger::Level
        })
    );
    assert_eq!(ppi.irq(0).unwrap().intid(), 29);
    assert_eq!(ppi.irq(1).unwrap().intid(), 31);
    assert_eq!(ppi.irq(1).unwrap().trigger, Trigger::Edge);

    let error = node("/bad-type").irq(0).unwrap_err();
    assert_eq!(
        error,
        Error::UnsupportedIrqType {
            node: name("bad-type"),
            irq_type: 2
        }
    );
    assert_eq!(
        node("/big-spi").irq(0),
        Err(Error::IrqNumberOutOfRange {
            node: name("big-spi"),
            number: 988
        })
    );
    assert_eq!(
        node("/big-ppi").irq(0),
        Err(Error::IrqNumberOutOfRange {
            node: name("big-ppi"),
            number: 16
        })
    );
    let error = node("/no-flags").irq(0).unwrap_err();
    assert_eq!(
        error,
        Error::BadIrqFlags {
            node: name("no-flags"),
            flags: 0
        }
    );
    assert_eq!(
        error.to_string(),
        "node \"no-flags\": GIC trigger flags 0x0 are not 1, 2, 4 or 8"
    );
    let error = node("/partial").interrupts().unwrap_err();
    assert!(
        matches!(error, Error::BadPropertyLength { len: 8, .. }),
        "{error}"
    );
}

#[test]
fn interrupt_parent_is_found_as_linux_finds_it() {
    let blob = machine(|dtb| {
        // A nexus without #interrupt-cells that forwards to the GIC by its own link.
        dtb.begin("bus")
            .prop_u32("interrupt-parent", 2)
            .prop_u32("phandle", 3);
        device(dtb, "inherits", &[0, 5, 4]);
        dtb.end();
        dtb.begin("forwarder")
            .prop_u32("phandle", 2)
            .prop_u32("interrupt-parent", GIC_PHANDLE)
            .end();
        dtb.begin("other-intc")
            .prop_strs("compatible", &["vendor,intc"])
            .prop_u32("#interrupt-cells", 2)
            .prop_u32("phandle", 4)
            .end();
        dtb.begin("on-other")
            .prop_u32("interrupt-parent", 4)
            .prop_cells("interrupts", &[7, 1])
            .end();
        dtb.begin("dangling")
            .prop_u32("interrupt-parent", 99)
            .prop_cells("interrupts", &[0, 1, 4])
            .end();
        dtb.begin("zero-cells-intc")
            .prop_u32("#interrupt-cells", 0)
            .prop_u32("phandle", 5)
            .end();
        dtb.begin("on-zero")
            .prop_u32("interrupt-parent", 5)
            .prop_cells("interrupts", &[1])
            .end();
        dtb.begin("no-irqs").end();
    });
    let fdt = Fdt::new(&blob).unwrap();
    let node = |name: &str| fdt.find_node(name).unwrap();

    let inherits = node("/bus/inherits");
    assert_eq!(inherits.interrupt_parent().unwrap().name(), "intc@8000000");
    assert_eq!(inherits.irq(0).unwrap().intid(), 37);

    let on_other = node("/on-other");
    let interrupts = on_other.interrupts().unwrap();
    assert_eq!(interrupts.controller().name(), "other-intc");
    assert_eq!(interrupts.cells_per_interrupt(), 2);
    let error = on_other.irq(0).unwrap_err();
    assert_eq!(
        error,
        Error::NotGicInterrupt {
            node: name("on-other"),
            controller: name("other-intc")
        }
    );

    let error = node("/dangling").irq(0).unwrap_err();
    let expected = Error::UnknownPhandle {
        node: name("dangling"),
        property: name("interrupt-parent"),
        phandle: 99,
    };
    assert_eq!(error, expected);
    assert_eq!(
        error.to_string(),
        "node \"dangling\": interrupt-parent refers to phandle 0x63, which no node has"
    );

    let error = node("/on-zero").interrupts().unwrap_err();
    assert_eq!(
        error,
        Error::ZeroInterruptCells {
            controller: name("zero-cells-intc")
        }
    );
    assert_eq!(
        node("/no-irqs").irq(0),
        Err(Error::MissingProperty {
            node: name("no-irqs"),
            property: name("interrupts")
        })
    );
}

#[test]
fn interrupt_parent_loops_and_dead_ends_are_errors() {
    let mut dtb = DtbBuilder::new();
    dtb.begin("");
    dtb.begin("a")
        .prop_u32("phandle", 1)
        .prop_u32("interrupt-parent", 2)
        .end();
    dtb.begin("b")
        .prop_u32("phandle", 2)
        .prop_u32("interrupt-parent", 1)
        .end();
    dtb.begin("dev")
        .prop_u32("interrupt-parent", 1)
        .prop_cells("interrupts", &[0, 1, 4])
        .end();
    dtb.begin("orphan")
        .prop_cells("interrupts", &[0, 1, 4])
        .end();
    dtb.end();
    let blob = dtb.finish();
    let fdt = Fdt::new(&blob).unwrap();
    let error = fdt.find_node("/dev").unwrap().irq(0).unwrap_err();
    assert_eq!(error, Error::InterruptParentLoop { node: name("dev") });
    assert_eq!(
        error.to_string(),
        "node \"dev\": interrupt-parent links form a loop"
    );
    let error = fdt
        .find_node("/orphan")
        .unwrap()
        .interrupt_parent()
        .unwrap_err();
    assert_eq!(
        error,
        Error::NoInterruptParent {
            node: name("orphan")
        }
    );
    support::exercise(&fdt);
}

#[test]
fn minimal_machine_has_only_the_mandatory_parts() {
    let blob = machine(|_| {});
    let info = info_of(&blob);
    assert_eq!(info.ram.as_slice(), [region(0x4000_0000, 0x800_0000)]);
    assert_eq!(info.gic.version(), 2);
    assert_eq!(info.gic.phandle, Some(GIC_PHANDLE));
    assert_eq!(info.cpus.len(), 1);
    assert_eq!(info.cpus[0].enable_method, EnableMethod::Absent);
    assert_eq!(
        (info.uart, info.timer, info.psci, info.bootargs),
        (None, None, None, None)
    );
    assert!(info.virtio_mmio.is_empty() && info.reserved.is_empty());
    let mut text = String::new();
    write_summary(&info, &mut text).unwrap();
    assert!(!text.contains("uart") && !text.contains("psci") && !text.contains("timer"));
    assert!(text.contains("\nvirtio_mmio_slots=0\n"));
}

#[test]
fn missing_mandatory_parts_are_errors() {
    let without = |skip: &str| gicv3_machine(skip, None);
    assert_eq!(info_of(&without("nothing")).gic.version(), 3);
    let error = info_error(&without("memory"));
    assert_eq!(error, Error::NoMemory);
    assert_eq!(
        error.to_string(),
        "no enabled node with device_type = \"memory\""
    );
    let error = info_error(&without("gic"));
    assert_eq!(error, Error::NoGic);
    assert_eq!(
        error.to_string(),
        "no enabled GIC (arm,cortex-a15-gic, arm,gic-400 or arm,gic-v3)"
    );
    assert_eq!(info_error(&without("cpus")), Error::NoCpus);

    // Disabled memory does not count; a /cpus without CPU nodes is no better than none.
    let blob = machine(|dtb| {
        dtb.begin("memory@80000000")
            .prop_str("device_type", "memory")
            .prop_str("status", "disabled");
        dtb.prop_cells("reg", &[0, 0x8000_0000, 0, 0x1000]).end();
    });
    assert_eq!(info_of(&blob).ram.len(), 1);
    let mut dtb = DtbBuilder::new();
    dtb.begin("")
        .begin("intc")
        .prop_strs("compatible", &["arm,gic-400"])
        .end();
    dtb.begin("cpus").end().end();
    assert_eq!(info_error(&dtb.finish()), Error::NoMemory);
}

#[test]
fn machine_with_every_optional_part() {
    let blob = machine(|dtb| {
        dtb.begin("reserved-memory")
            .prop_u32("#address-cells", 2)
            .prop_u32("#size-cells", 2);
        dtb.begin("fw@48000000")
            .prop_cells("reg", &[0, 0x4800_0000, 0, 0x10_0000])
            .end();
        dtb.begin("pool").prop_cells("size", &[0, 0x10_0000]).end();
        dtb.begin("off@49000000").prop_str("status", "disabled");
        dtb.prop_cells("reg", &[0, 0x4900_0000, 0, 0x1000]).end();
        dtb.end();
        dtb.begin("memory@100000000")
            .prop_str("device_type", "memory");
        dtb.prop_cells("reg", &[1, 0, 0, 0x1000_0000, 2, 0, 0, 0x1000_0000])
            .end();
        dtb.begin("aliases")
            .prop_str("serial0", "/uart@9000000")
            .end();
        dtb.begin("chosen")
            .prop_str("bootargs", "quiet")
            .prop_str("stdout-path", "serial0:115200n8")
            .end();
        dtb.begin("osc")
            .prop_strs("compatible", &["fixed-clock"])
            .prop_u32("#clock-cells", 0);
        dtb.prop_u32("clock-frequency", 1_843_200)
            .prop_u32("phandle", 20)
            .end();
        dtb.begin("pll")
            .prop_strs("compatible", &["vendor,pll"])
            .prop_u32("#clock-cells", 1);
        dtb.prop_u32("phandle", 21).end();
        dtb.begin("uart@9000000")
            .prop_strs("compatible", &["arm,pl011", "arm,primecell"]);
        dtb.prop_cells("reg", &[0, 0x900_0000, 0, 0x1000])
            .prop_cells("interrupts", &[0, 1, 4]);
        // apb_pclk from the PLL (one argument), uartclk from the oscillator.
        dtb.prop_cells("clocks", &[21, 3, 20])
            .prop_strs("clock-names", &["apb_pclk", "uartclk"]);
        dtb.end();
        dtb.begin("timer")
            .prop_strs("compatible", &["arm,armv7-timer"]);
        dtb.prop_cells("interrupts", &[1, 13, 8, 1, 14, 8, 1, 11, 8, 1, 10, 8])
            .end();
        for slot in 0..3u32 {
            dtb.begin("virtio")
                .prop_strs("compatible", &["virtio,mmio"]);
            dtb.prop_cells("reg", &[0, 0xa00_0000 + 0x200 * slot, 0, 0x200]);
            dtb.prop_cells("interrupts", &[0, 16 + slot, 1]).end();
        }
        dtb.begin("virtio")
            .prop_strs("compatible", &["virtio,mmio"])
            .prop_str("status", "disabled")
            .end();
        dtb.begin("psci")
            .prop_strs("compatible", &["arm,psci"])
            .prop_str("method", "smc");
        dtb.prop_u32("cpu_on", 0x9500_0003)
            .prop_u32("cpu_off", 0x9500_0002)
            .end();
    });
    let info = info_of(&blob);
    assert_eq!(
        info.ram.as_slice(),
        [
            region(0x4000_0000, 0x800_0000),
            region(1 << 32, 0x1000_0000),
            region(2 << 32, 0x1000_0000)
        ]
    );
    assert_eq!(info.ram_size(), 0x2800_0000);
    assert_eq!(info.reserved.as_slice(), [region(0x4800_0000, 0x10_0000)]);
    assert_eq!(info.bootargs, Some("quiet"));
    let uart = info.uart.unwrap();
    assert_eq!((uart.base, uart.clock_hz), (0x900_0000, Some(1_843_200)));
    let timer = info.timer.unwrap();
    assert_eq!(
        (
            timer.secure_phys,
            timer.nonsecure_phys,
            timer.virt,
            timer.hyp
        ),
        (29, 30, 27, 26)
    );
    let slots: Vec<_> = info
        .virtio_mmio
        .iter()
        .map(|slot| (slot.base, slot.irq.intid()))
        .collect();
    assert_eq!(
        slots,
        [(0xa00_0000, 48), (0xa00_0200, 49), (0xa00_0400, 50)]
    );
    let psci = info.psci.unwrap();
    assert_eq!(
        (psci.method, psci.version),
        (PsciMethod::Smc, PsciVersion::V0_1)
    );
    assert_eq!(
        (psci.functions.cpu_on, psci.functions.cpu_off),
        (Some(0x9500_0003), Some(0x9500_0002))
    );
    assert_eq!(
        (psci.functions.migrate, psci.functions.system_off),
        (None, None)
    );

    let mut text = String::new();
    write_summary(&info, &mut text).unwrap();
    for line in [
        "ram_size=671088640",
        "ram2=0x200000000+0x10000000",
        "reserved0=0x48000000+0x100000",
    ] {
        assert!(
            text.lines().any(|l| l == line),
            "{line} missing from\n{text}"
        );
    }
    for line in [
        "bootargs=quiet",
        "uart_clock_hz=1843200",
        "psci_method=smc",
        "psci_version=0.1",
    ] {
        assert!(
            text.lines().any(|l| l == line),
            "{line} missing from\n{text}"
        );
    }
}

#[test]
fn memreserve_entries_are_reserved() {
    let mut dtb = DtbBuilder::new();
    dtb.reserve(0x4400_0000, 0x10_0000);
    dtb.begin("")
        .prop_u32("#address-cells", 2)
        .prop_u32("#size-cells", 2);
    dtb.begin("intc")
        .prop_strs("compatible", &["arm,cortex-a15-gic"]);
    dtb.prop_cells(
        "reg",
        &[0, 0x800_0000, 0, 0x1_0000, 0, 0x801_0000, 0, 0x1_0000],
    )
    .end();
    dtb.begin("memory").prop_str("device_type", "memory");
    dtb.prop_cells("reg", &[0, 0x4000_0000, 0, 0x800_0000])
        .end();
    dtb.begin("cpus")
        .prop_u32("#address-cells", 2)
        .prop_u32("#size-cells", 0);
    dtb.begin("cpu@100")
        .prop_str("device_type", "cpu")
        .prop_cells("reg", &[0, 0x100]);
    dtb.prop_str("enable-method", "spin-table")
        .prop_cells("cpu-release-addr", &[0, 0x8000_00f8])
        .end();
    dtb.begin("cpu@101")
        .prop_str("device_type", "cpu")
        .prop_cells("reg", &[0, 0x101]);
    dtb.prop_str("enable-method", "vendor,boot").end();
    dtb.end().end();
    let blob = dtb.finish();
    let info = info_of(&blob);
    assert_eq!(info.reserved.as_slice(), [region(0x4400_0000, 0x10_0000)]);
    assert_eq!(
        info.gic.kind,
        GicKind::V2 {
            cpu_interface: region(0x801_0000, 0x1_0000)
        }
    );
    let cpus: Vec<_> = info
        .cpus
        .iter()
        .map(|cpu| (cpu.mpidr, cpu.enable_method))
        .collect();
    assert_eq!(
        cpus,
        [
            (
                0x100,
                EnableMethod::SpinTable {
                    release_addr: 0x8000_00f8
                }
            ),
            (0x101, EnableMethod::Unknown)
        ]
    );
    let fdt = Fdt::new(&blob).unwrap();
    let mut text = String::new();
    write_tree(&fdt, &mut text).unwrap();
    assert!(
        text.starts_with("/memreserve/ 0x44000000 0x100000;\n/ {\n"),
        "{text}"
    );
}

#[test]
fn console_falls_back_to_the_first_enabled_pl011() {
    let blob = machine(|dtb| {
        dtb.begin("uart@1000")
            .prop_strs("compatible", &["arm,pl011"])
            .prop_str("status", "disabled");
        dtb.prop_cells("reg", &[0, 0x1000, 0, 0x100]).end();
        dtb.begin("uart@2000")
            .prop_strs("compatible", &["arm,pl011"]);
        dtb.prop_cells("reg", &[0, 0x2000, 0, 0x100]).end();
    });
    let uart = info_of(&blob).uart.unwrap();
    assert_eq!((uart.base, uart.irq, uart.clock_hz), (0x2000, None, None));
}

#[test]
fn malformed_optional_parts_are_errors() {
    let bad = |devices: &dyn Fn(&mut DtbBuilder)| info_error(&machine(|dtb| devices(dtb)));

    let error = bad(&|dtb| {
        dtb.begin("chosen")
            .prop_str("stdout-path", "/nowhere:115200")
            .end();
    });
    assert_eq!(error, Error::BadStdoutPath);
    assert_eq!(error.to_string(), "/chosen/stdout-path names no node");

    let error = bad(&|dtb| {
        dtb.begin("chosen").prop("bootargs", b"no nul").end();
    });
    assert!(matches!(error, Error::BadString { .. }), "{error}");

    let error = bad(&|dtb| {
        dtb.begin("psci")
            .prop_strs("compatible", &["arm,psci-0.2"])
            .prop_str("method", "svc")
            .end();
    });
    assert_eq!(error, Error::BadPsciMethod { node: name("psci") });
    assert_eq!(
        error.to_string(),
        "node \"psci\": PSCI method is neither \"hvc\" nor \"smc\""
    );
    let error = bad(&|dtb| {
        dtb.begin("psci")
            .prop_strs("compatible", &["arm,psci-0.2"])
            .end();
    });
    assert_eq!(
        error,
        Error::MissingProperty {
            node: name("psci"),
            property: name("method")
        }
    );

    let error = bad(&|dtb| {
        dtb.begin("timer")
            .prop_strs("compatible", &["arm,armv8-timer"]);
        dtb.prop_cells("interrupts", &[1, 13, 4, 1, 14, 4, 1, 11, 4])
            .end();
    });
    assert_eq!(
        error,
        Error::MissingInterrupt {
            node: name("timer"),
            index: 3
        }
    );

    let error = bad(&|dtb| {
        dtb.begin("uart")
            .prop_strs("compatible", &["arm,pl011"])
            .prop_cells("reg", &[0, 0x1000, 0, 0x100]);
        dtb.prop_cells("clocks", &[77]).end();
    });
    let expected = Error::UnknownPhandle {
        node: name("uart"),
        property: name("clocks"),
        phandle: 77,
    };
    assert_eq!(error, expected);

    let error = bad(&|dtb| {
        dtb.begin("uart")
            .prop_strs("compatible", &["arm,pl011"])
            .prop("reg", &[])
            .end();
    });
    assert!(
        matches!(error, Error::BadPropertyLength { len: 0, .. }),
        "{error}"
    );

    let error = bad(&|dtb| {
        for _ in 0..65 {
            dtb.begin("virtio")
                .prop_strs("compatible", &["virtio,mmio"]);
            dtb.prop_cells("reg", &[0, 0xa00_0000, 0, 0x200])
                .prop_cells("interrupts", &[0, 16, 1])
                .end();
        }
    });
    assert_eq!(
        error,
        Error::TooMany {
            what: "virtio-mmio nodes",
            limit: 64
        }
    );
    assert_eq!(error.to_string(), "more than 64 virtio-mmio nodes");

    // Two redistributor regions announced, one given.
    let blob = gicv3_machine("nothing", Some(2));
    let error = info_error(&blob);
    assert!(
        matches!(error, Error::BadPropertyLength { len: 32, .. }),
        "{error}"
    );
}

#[test]
fn errors_name_long_nodes_within_31_bytes() {
    let long = "a-very-long-node-name-that-goes-on@12345678";
    let kept = Name::new(long);
    assert_eq!(kept.as_str(), &long[..31]);
    // Cut at a character boundary, never inside one.
    let accented = "é".repeat(20);
    assert_eq!(Name::new(&accented).as_str(), "é".repeat(15));
    assert_eq!(format!("{:?}", Name::new("x")), "\"x\"");
}
