//! virtio-blk over the modern virtio-mmio transport (version 2, forced with
//! `-global virtio-mmio.force-legacy=false`): the cases of tests/virtio_common.
#![no_std]
#![no_main]

extern crate alloc;

#[macro_use]
mod virtio_common;

kernel::entry_point!(kernel::ktest::main);
kernel::qemu_config!(concat!(
    virtio_disks!(),
    "arg -global virtio-mmio.force-legacy=false\n"
));

const TRANSPORT: virtio::TransportVersion = virtio::TransportVersion::Modern;
