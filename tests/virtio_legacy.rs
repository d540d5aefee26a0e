//! virtio-blk over the legacy virtio-mmio transport (version 1, QEMU's default): the cases of
//! tests/virtio_common.
#![no_std]
#![no_main]

extern crate alloc;

#[macro_use]
mod virtio_common;

kernel::entry_point!(kernel::ktest::main);
kernel::qemu_config!(virtio_disks!());

const TRANSPORT: virtio::TransportVersion = virtio::TransportVersion::Legacy;
