//! Raw Linux system calls for AArch64 (`svc #0`, number in x8, arguments in x0..x5, result or
//! negated errno in x0), wrapped in safe functions where the arguments are plain values or
//! borrowed buffers. Numbers are the asm-generic ones arm64 uses.

use core::arch::asm;
use core::ffi::CStr;
use core::fmt;

const SYS_IO_SETUP: usize = 0;
const SYS_IO_DESTROY: usize = 1;
const SYS_IO_SUBMIT: usize = 2;
const SYS_IO_GETEVENTS: usize = 4;
const SYS_MOUNT: usize = 40;
const SYS_OPENAT: usize = 56;
const SYS_CLOSE: usize = 57;
const SYS_LSEEK: usize = 62;
const SYS_WRITE: usize = 64;
const SYS_PREAD64: usize = 67;
const SYS_PWRITE64: usize = 68;
const SYS_NANOSLEEP: usize = 101;
const SYS_CLOCK_GETTIME: usize = 113;
const SYS_REBOOT: usize = 142;
const SYS_UNAME: usize = 160;
const SYS_MMAP: usize = 222;
const SYS_FINIT_MODULE: usize = 273;

const AT_FDCWD: isize = -100;
/// `open` flags as arm64 defines them (its O_DIRECT differs from x86's).
pub const O_RDONLY: usize = 0;
pub const O_RDWR: usize = 2;
pub const O_CLOEXEC: usize = 0o2_000_000;
pub const O_DIRECT: usize = 0o200_000;

pub const CLOCK_MONOTONIC: usize = 1;
pub const CLOCK_BOOTTIME: usize = 7;

const SEEK_END: usize = 2;
const PROT_READ_WRITE: usize = 0x1 | 0x2;
const MAP_PRIVATE_ANONYMOUS: usize = 0x02 | 0x20;

/// `ENOENT`: no such file.
pub const ENOENT: i32 = 2;
/// `EEXIST`: here, a module that is already loaded.
pub const EEXIST: i32 = 17;

/// A failed system call: the errno Linux returned.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Errno(pub i32);

impl fmt::Display for Errno {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "errno {}", self.0)
    }
}

/// Issues system call `number` with six arguments.
///
/// # Safety
/// The arguments must be valid for that system call: every pointer among them must point to
/// memory of the size and kind the call reads or writes, live for as long as the kernel uses it.
unsafe fn syscall6(number: usize, args: [usize; 6]) -> Result<usize, Errno> {
    let ret: isize;
    // SAFETY: `svc #0` enters Linux, which reads x8 and x0..x5, returns in x0 and preserves every
    // other register; the caller vouches for the arguments.
    unsafe {
        asm!(
            "svc #0",
            in("x8") number,
            inlateout("x0") args[0] => ret,
            in("x1") args[1],
            in("x2") args[2],
            in("x3") args[3],
            in("x4") args[4],
            in("x5") args[5],
            options(nostack),
        );
    }
    if (-4095..0).contains(&ret) {
        Err(Errno(-ret as i32))
    } else {
        Ok(ret as usize)
    }
}

/// An open file descriptor, closed on drop.
pub struct Fd(usize);

impl Drop for Fd {
    fn drop(&mut self) {
        // SAFETY: close takes a plain descriptor number that this `Fd` owns.
        let _ = unsafe { syscall6(SYS_CLOSE, [self.0, 0, 0, 0, 0, 0]) };
    }
}

/// `openat(AT_FDCWD, path, flags)`.
pub fn open(path: &CStr, flags: usize) -> Result<Fd, Errno> {
    // SAFETY: `path` is NUL-terminated and outlives the call; no mode is read without O_CREAT.
    let fd = unsafe {
        syscall6(
            SYS_OPENAT,
            [AT_FDCWD as usize, path.as_ptr() as usize, flags, 0, 0, 0],
        )
    }?;
    Ok(Fd(fd))
}

/// Writes `bytes` to descriptor `fd` (a raw number: also the console's 1).
pub fn write(fd: usize, bytes: &[u8]) -> Result<usize, Errno> {
    // SAFETY: the kernel reads `bytes.len()` bytes from a live borrowed slice.
    unsafe {
        syscall6(
            SYS_WRITE,
            [fd, bytes.as_ptr() as usize, bytes.len(), 0, 0, 0],
        )
    }
}

/// `pread64`: reads into `buffer` from byte `offset` of `fd`.
pub fn pread(fd: &Fd, buffer: &mut [u8], offset: u64) -> Result<usize, Errno> {
    // SAFETY: the kernel writes at most `buffer.len()` bytes into a live, exclusively borrowed slice.
    unsafe {
        syscall6(
            SYS_PREAD64,
            [
                fd.0,
                buffer.as_mut_ptr() as usize,
                buffer.len(),
                offset as usize,
                0,
                0,
            ],
        )
    }
}

/// `pwrite64`: writes `buffer` at byte `offset` of `fd`.
pub fn pwrite(fd: &Fd, buffer: &[u8], offset: u64) -> Result<usize, Errno> {
    // SAFETY: the kernel reads `buffer.len()` bytes from a live borrowed slice.
    unsafe {
        syscall6(
            SYS_PWRITE64,
            [
                fd.0,
                buffer.as_ptr() as usize,
                buffer.len(),
                offset as usize,
                0,
                0,
            ],
        )
    }
}

/// The size of `fd` in bytes (`lseek(fd, 0, SEEK_END)`; for a block device, its capacity).
pub fn size(fd: &Fd) -> Result<u64, Errno> {
    // SAFETY: lseek takes only plain values.
    unsafe { syscall6(SYS_LSEEK, [fd.0, 0, SEEK_END, 0, 0, 0]) }.map(|end| end as u64)
}

/// Nanoseconds on `clock` (`CLOCK_MONOTONIC`, `CLOCK_BOOTTIME`).
pub fn clock_ns(clock: usize) -> u64 {
    let mut time = [0i64; 2];
    // SAFETY: the kernel writes one `struct timespec` (two i64) into `time`, a live local.
    match unsafe {
        syscall6(
            SYS_CLOCK_GETTIME,
            [clock, time.as_mut_ptr() as usize, 0, 0, 0, 0],
        )
    } {
        Ok(_) => time[0] as u64 * 1_000_000_000 + time[1] as u64,
        // Both clocks always exist; a zero makes any misuse visible in the figures.
        Err(_) => 0,
    }
}

/// Sleeps for `ns` nanoseconds (less than a second).
pub fn sleep_ns(ns: u64) {
    let time = [0i64, ns as i64];
    // SAFETY: the kernel reads one `struct timespec` from a live local; no remainder is asked for.
    let _ = unsafe { syscall6(SYS_NANOSLEEP, [time.as_ptr() as usize, 0, 0, 0, 0, 0]) };
}

/// `mount(source, target, fstype, 0, NULL)`.
pub fn mount(source: &CStr, target: &CStr, fstype: &CStr) -> Result<(), Errno> {
    // SAFETY: three NUL-terminated strings that outlive the call; no data argument.
    unsafe {
        syscall6(
            SYS_MOUNT,
            [
                source.as_ptr() as usize,
                target.as_ptr() as usize,
                fstype.as_ptr() as usize,
                0,
                0,
                0,
            ],
        )
    }
    .map(drop)
}

/// Loads the kernel module in `fd` with no parameters (`finit_module(fd, "", 0)`).
pub fn finit_module(fd: &Fd) -> Result<(), Errno> {
    // SAFETY: an open descriptor and an empty NUL-terminated parameter string.
    unsafe { syscall6(SYS_FINIT_MODULE, [fd.0, c"".as_ptr() as usize, 0, 0, 0, 0]) }.map(drop)
}

/// `struct new_utsname`: six NUL-padded fields of 65 bytes.
pub struct Utsname([[u8; 65]; 6]);

impl Utsname {
    /// `uname -r`, e.g. `6.1.0-56-arm64`.
    pub fn release(&self) -> &str {
        field(&self.0[2])
    }
    /// `uname -v`, e.g. `#1 SMP PREEMPT_DYNAMIC Debian 6.1.192-2 (...)`.
    pub fn version(&self) -> &str {
        field(&self.0[3])
    }
}

fn field(bytes: &[u8; 65]) -> &str {
    let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
    core::str::from_utf8(&bytes[..end]).unwrap_or("?")
}

/// The running kernel's names.
pub fn uname() -> Result<Utsname, Errno> {
    let mut names = Utsname([[0; 65]; 6]);
    // SAFETY: the kernel writes one `struct new_utsname` (6 x 65 bytes) into `names`, a live local.
    unsafe { syscall6(SYS_UNAME, [names.0.as_mut_ptr() as usize, 0, 0, 0, 0, 0]) }?;
    Ok(names)
}

/// Maps `len` bytes of fresh zeroed memory that lives until the program ends (page aligned,
/// as O_DIRECT wants).
pub fn map_anonymous(len: usize) -> Result<&'static mut [u8], Errno> {
    // SAFETY: an anonymous private mapping at an address of the kernel's choosing: it overlaps
    // nothing that exists.
    let address = unsafe {
        syscall6(
            SYS_MMAP,
            [
                0,
                len,
                PROT_READ_WRITE,
                MAP_PRIVATE_ANONYMOUS,
                usize::MAX,
                0,
            ],
        )
    }?;
    // SAFETY: the kernel just mapped `len` readable, writable, zeroed bytes at `address`; they
    // are never unmapped and no other reference to them exists.
    Ok(unsafe { core::slice::from_raw_parts_mut(address as *mut u8, len) })
}

/// Powers the machine off (`reboot(LINUX_REBOOT_CMD_POWER_OFF)`); QEMU then exits.
pub fn power_off() -> ! {
    const MAGIC1: usize = 0xfee1_dead;
    const MAGIC2: usize = 672_274_793;
    const CMD_POWER_OFF: usize = 0x4321_fedc;
    // SAFETY: reboot takes only plain values.
    let _ = unsafe { syscall6(SYS_REBOOT, [MAGIC1, MAGIC2, CMD_POWER_OFF, 0, 0, 0]) };
    // Power-off failed (not PID 1?): leave; as init this panics the kernel, which also ends QEMU.
    exit(1)
}

fn exit(code: usize) -> ! {
    loop {
        // SAFETY: exit takes a plain status and does not return.
        let _ = unsafe { syscall6(93, [code, 0, 0, 0, 0, 0]) };
    }
}

/// `IOCB_CMD_PREAD` / `IOCB_CMD_PWRITE`.
#[derive(Clone, Copy)]
pub enum AioOp {
    Read = 0,
    Write = 1,
}

/// `struct iocb` (little-endian layout), 64 bytes.
#[repr(C)]
#[derive(Clone, Copy, Default)]
pub struct Iocb {
    data: u64,
    key: u32,
    rw_flags: i32,
    opcode: u16,
    reqprio: i16,
    fildes: u32,
    buf: u64,
    nbytes: u64,
    offset: i64,
    reserved2: u64,
    flags: u32,
    resfd: u32,
}

impl Iocb {
    /// A request of `op` on `fd` for `len` bytes at `buffer`, from byte `offset`, tagged `data`.
    pub fn new(op: AioOp, fd: &Fd, buffer: *mut u8, len: usize, offset: u64, data: u64) -> Self {
        Self {
            data,
            opcode: op as u16,
            fildes: fd.0 as u32,
            buf: buffer as u64,
            nbytes: len as u64,
            offset: offset as i64,
            ..Self::default()
        }
    }
}

/// `struct io_event`: `data` of the request and its result (bytes or negated errno).
#[repr(C)]
#[derive(Clone, Copy, Default)]
pub struct IoEvent {
    pub data: u64,
    obj: u64,
    pub res: i64,
    res2: i64,
}

/// A Linux native AIO context (`io_setup`); destroyed on drop, which waits for every request
/// still in flight.
pub struct AioContext(usize);

impl AioContext {
    /// A context for up to `depth` requests in flight.
    pub fn new(depth: usize) -> Result<Self, Errno> {
        let mut context = 0usize;
        // SAFETY: the kernel writes one `aio_context_t` into `context`, a live local.
        unsafe { syscall6(SYS_IO_SETUP, [depth, &raw mut context as usize, 0, 0, 0, 0]) }?;
        Ok(Self(context))
    }

    /// Submits `requests`; returns how many the kernel took (from the front).
    ///
    /// # Safety
    /// Every buffer the requests name must stay valid for its transfer, and untouched by the
    /// program, until its completion is reaped by [`Self::reap`] or the context is dropped.
    pub unsafe fn submit(&self, requests: &[Iocb]) -> Result<usize, Errno> {
        let mut pointers = [core::ptr::null::<Iocb>(); 64];
        let count = requests.len().min(pointers.len());
        for (pointer, request) in pointers.iter_mut().zip(requests) {
            *pointer = request;
        }
        // SAFETY: `pointers` holds `count` pointers to live iocbs, which the kernel copies during
        // the call; their buffers are the caller's promise.
        unsafe {
            syscall6(
                SYS_IO_SUBMIT,
                [self.0, count, pointers.as_ptr() as usize, 0, 0, 0],
            )
        }
    }

    /// Waits for at least one completion; fills the front of `events` and returns the count.
    pub fn reap(&self, events: &mut [IoEvent]) -> Result<usize, Errno> {
        // SAFETY: the kernel writes at most `events.len()` io_events into a live, exclusively
        // borrowed slice; no timeout (null) means wait.
        unsafe {
            syscall6(
                SYS_IO_GETEVENTS,
                [self.0, 1, events.len(), events.as_mut_ptr() as usize, 0, 0],
            )
        }
    }
}

impl Drop for AioContext {
    fn drop(&mut self) {
        // SAFETY: io_destroy takes the context id this value owns; it cancels or waits for every
        // outstanding request before returning, so no buffer is written afterwards.
        let _ = unsafe { syscall6(SYS_IO_DESTROY, [self.0, 0, 0, 0, 0, 0]) };
    }
}
