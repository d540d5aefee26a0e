//! `blkcat MODE ...`: a client of the block server (`blkd`) on the endpoint in capability slot 0.
//!
//! * `info`: prints `blkcat: capacity=N max_sectors=N read_only=0|1`.
//! * `lba SECTOR COUNT`: reads COUNT sectors and checks the `fill=lba` content (sector i holds i
//!   as a little-endian u64, 64 times); prints `lba=ok`.
//! * `verify SECTOR COUNT SEED`: writes a pattern made from SEED, flushes, reads it back and
//!   compares; prints `verified=ok`.
//! * `expect SECTOR COUNT SEED`: reads and checks the pattern an earlier `verify` wrote (after a
//!   server restart, say); prints `verified=ok`.
//! * `bad`: sends malformed requests and checks each is refused with the right error and the
//!   server still answers; prints `refused=ok`.
//! * `loop SECTOR`: reads one page from SECTOR until a request fails.
//! * `bench N`: N plain calls (info), N grant calls the server refuses at once, N reads of
//!   4 KiB; prints `bench=NAME ops=N ns_per_op=T` for each (`blkd_info_call`,
//!   `blkd_refused_grant_call`, `blkd_read4k`).
//!
//! Exit status: 0, 1 for wrong data or a wrong answer, 2 for bad arguments, or the code of the
//! error a request failed with (`NoCapability` without the endpoint, `PeerGone` when the server
//! died with the request).
#![no_std]
#![no_main]

extern crate alloc;

use alloc::vec::Vec;
use usys::{Error, Message, block, layout, println};

usys::main!(main);

const ENDPOINT: u64 = 0;
const PAGE: u64 = 4096;
/// The buffer lent with every read and write.
const BUFFER_PAGES: u64 = 16;
const SECTORS_PER_PAGE: u64 = PAGE / block::SECTOR_SIZE;

/// Why a mode failed: the exit status.
enum Failure {
    /// The server answered wrongly, or the data is wrong (already reported).
    Wrong,
    Usage,
    Request(Error),
}

impl From<Error> for Failure {
    fn from(error: Error) -> Self {
        Self::Request(error)
    }
}

/// The reply's status as a result.
fn checked(reply: Message) -> Result<Message, Error> {
    match reply.label {
        0 => Ok(reply),
        code => Err(Error::from_code(code as i64).unwrap_or(Error::Io)),
    }
}

/// A plain call: the reply's words.
fn request(label: u64, words: [u64; 4]) -> Result<[u64; 4], Error> {
    let reply = usys::call(ENDPOINT, &Message { label, words })?;
    checked(reply).map(|reply| reply.words)
}

/// The pages lent to the server.
struct Buffer {
    base: *mut u8,
}

impl Buffer {
    fn new() -> Result<Self, Error> {
        usys::map(BUFFER_PAGES * PAGE).map(|base| Self { base })
    }

    fn bytes(&mut self, len: u64) -> &mut [u8] {
        // SAFETY: `map` gave BUFFER_PAGES pages; callers ask for at most that much.
        unsafe { core::slice::from_raw_parts_mut(self.base, len.min(BUFFER_PAGES * PAGE) as usize) }
    }

    /// Reads or writes (`label`) `count` sectors at `sector`, lending `pages` pages; returns
    /// the bytes the server says it moved.
    fn transfer(&self, label: u64, sector: u64, count: u64, pages: u64) -> Result<u64, Error> {
        let message = Message {
            label,
            words: [sector, count, 0, 0],
        };
        let reply = usys::grant_call(ENDPOINT, &message, self.base, pages)?;
        checked(reply).map(|reply| reply.words[0])
    }

    /// [`transfer`](Self::transfer) with just the pages needed, checking the byte count.
    fn whole(&self, label: u64, sector: u64, count: u64) -> Result<(), Failure> {
        let moved = self.transfer(label, sector, count, count.div_ceil(SECTORS_PER_PAGE))?;
        if moved != count * block::SECTOR_SIZE {
            println!("blkcat: {moved} bytes moved for {count} sectors");
            return Err(Failure::Wrong);
        }
        Ok(())
    }

    fn read(&self, sector: u64, count: u64) -> Result<(), Failure> {
        self.whole(block::READ, sector, count)
    }

    fn write(&self, sector: u64, count: u64) -> Result<(), Failure> {
        self.whole(block::WRITE, sector, count)
    }
}

/// The byte at `offset` of sector `sector` in the pattern of `seed`.
fn pattern(sector: u64, offset: u64, seed: u64) -> u8 {
    (sector * 131 + offset * 7 + seed * 29) as u8
}

/// Whether `data` holds, from `first` on, the sectors `expected(sector, offset)` describes;
/// reports the first difference.
fn holds(data: &[u8], first: u64, expected: impl Fn(u64, u64) -> u8) -> bool {
    let size = block::SECTOR_SIZE as usize;
    let wrong = data.iter().enumerate().find(|(i, byte)| {
        let (sector, offset) = (first + (i / size) as u64, (i % size) as u64);
        **byte != expected(sector, offset)
    });
    if let Some((i, byte)) = wrong {
        println!("blkcat: byte {i} from sector {first} is {byte:#04x}");
    }
    wrong.is_none()
}

/// The `fill=lba` content: sector i holds i as a little-endian u64, 64 times.
fn lba_content(sector: u64, offset: u64) -> u8 {
    sector.to_le_bytes()[(offset % 8) as usize]
}

/// `SECTOR COUNT [SEED]` with COUNT sectors fitting the buffer.
fn range(words: &[&str]) -> Result<(u64, u64, u64), Failure> {
    let number = |index: usize| words.get(index).and_then(|word| usys::parse_u64(word));
    match (number(0), number(1)) {
        (Some(sector), Some(count)) if count > 0 && count <= BUFFER_PAGES * SECTORS_PER_PAGE => {
            Ok((sector, count, number(2).unwrap_or(1)))
        }
        _ => Err(Failure::Usage),
    }
}

fn main(args: &str) -> i32 {
    let words: Vec<&str> = args.split_whitespace().collect();
    let (mode, rest) = words
        .split_first()
        .map_or(("", &[][..]), |(mode, rest)| (*mode, rest));
    let outcome = match mode {
        "info" => info(),
        "lba" => range(rest).and_then(|(sector, count, _)| lba(sector, count)),
        "verify" => range(rest).and_then(|(sector, count, seed)| verify(sector, count, seed)),
        "expect" => range(rest).and_then(|(sector, count, seed)| expect(sector, count, seed)),
        "bad" => bad(),
        "loop" => rest
            .first()
            .and_then(|word| usys::parse_u64(word))
            .ok_or(Failure::Usage)
            .and_then(read_forever),
        "bench" => rest
            .first()
            .and_then(|word| usys::parse_u64(word))
            .filter(|&n| n > 0)
            .ok_or(Failure::Usage)
            .and_then(bench),
        _ => Err(Failure::Usage),
    };
    match outcome {
        Ok(()) => 0,
        Err(Failure::Wrong) => 1,
        Err(Failure::Usage) => {
            println!(
                "usage: blkcat info|lba S N|verify S N SEED|expect S N SEED|bad|loop S|bench N"
            );
            2
        }
        Err(Failure::Request(error)) => {
            println!("blkcat: {error}");
            error.code() as i32
        }
    }
}

fn info() -> Result<(), Failure> {
    let [capacity, max_sectors, read_only, _] = request(block::INFO, [0; 4])?;
    println!("blkcat: capacity={capacity} max_sectors={max_sectors} read_only={read_only}");
    Ok(())
}

fn lba(sector: u64, count: u64) -> Result<(), Failure> {
    let mut buffer = Buffer::new()?;
    buffer.read(sector, count)?;
    if !holds(
        buffer.bytes(count * block::SECTOR_SIZE),
        sector,
        lba_content,
    ) {
        return Err(Failure::Wrong);
    }
    println!("lba=ok");
    Ok(())
}

fn verify(sector: u64, count: u64, seed: u64) -> Result<(), Failure> {
    let mut buffer = Buffer::new()?;
    let size = block::SECTOR_SIZE;
    for (i, byte) in buffer.bytes(count * size).iter_mut().enumerate() {
        let i = i as u64;
        *byte = pattern(sector + i / size, i % size, seed);
    }
    buffer.write(sector, count)?;
    request(block::FLUSH, [0; 4])?;
    buffer.bytes(count * size).fill(0);
    check_pattern(&mut buffer, sector, count, seed)
}

fn expect(sector: u64, count: u64, seed: u64) -> Result<(), Failure> {
    check_pattern(&mut Buffer::new()?, sector, count, seed)
}

fn check_pattern(buffer: &mut Buffer, sector: u64, count: u64, seed: u64) -> Result<(), Failure> {
    buffer.read(sector, count)?;
    let data = buffer.bytes(count * block::SECTOR_SIZE);
    if !holds(data, sector, |sector, offset| pattern(sector, offset, seed)) {
        return Err(Failure::Wrong);
    }
    println!("verified=ok");
    Ok(())
}

/// Checks that `outcome` is the error `expected`.
fn refused<T>(case: &str, outcome: Result<T, Error>, expected: Error) -> Result<(), Failure> {
    match outcome {
        Err(error) if error == expected => Ok(()),
        Err(error) => {
            println!("blkcat: {case}: {error}, expected {expected}");
            Err(Failure::Wrong)
        }
        Ok(_) => {
            println!("blkcat: {case}: accepted");
            Err(Failure::Wrong)
        }
    }
}

fn bad() -> Result<(), Failure> {
    use Error::{BadAddress, InvalidArgument, NoSuchCall};
    let [capacity, ..] = request(block::INFO, [0; 4])?;
    let last = capacity - 1;
    let mut buffer = Buffer::new()?;
    // Reads and writes need lent pages; words that look like a grant are not one.
    refused(
        "read without a grant",
        request(block::READ, [0, 1, 0, 0]),
        BadAddress,
    )?;
    let forged = [0, 1, 1, layout::GRANT_WINDOW];
    refused("forged grant", request(block::READ, forged), BadAddress)?;
    let flagged = block::READ | Message::GRANTED;
    refused("forged grant flag", request(flagged, forged), BadAddress)?;
    // Lengths: none, more than lent, overflowing.
    refused(
        "no sectors",
        buffer.transfer(block::READ, 0, 0, 1),
        InvalidArgument,
    )?;
    refused(
        "more than lent",
        buffer.transfer(block::READ, 0, 9, 1),
        InvalidArgument,
    )?;
    let huge = u64::MAX / 2;
    refused(
        "overflowing length",
        buffer.transfer(block::READ, 0, huge, 1),
        InvalidArgument,
    )?;
    // Ranges past the end of the disk.
    refused(
        "read at the end",
        buffer.transfer(block::READ, capacity, 1, 1),
        InvalidArgument,
    )?;
    refused(
        "read across the end",
        buffer.transfer(block::READ, last, 2, 1),
        InvalidArgument,
    )?;
    refused(
        "sector overflow",
        buffer.transfer(block::READ, u64::MAX, 1, 1),
        InvalidArgument,
    )?;
    buffer.read(last, 1)?;
    let before: Vec<u8> = buffer.bytes(block::SECTOR_SIZE).to_vec();
    buffer.bytes(PAGE).fill(0xa5);
    refused(
        "write across the end",
        buffer.transfer(block::WRITE, last, 2, 1),
        InvalidArgument,
    )?;
    buffer.read(last, 1)?;
    if buffer.bytes(block::SECTOR_SIZE) != before.as_slice() {
        println!("blkcat: a refused write changed the last sector");
        return Err(Failure::Wrong);
    }
    refused("unknown operation", request(99, [0; 4]), NoSuchCall)?;
    // The server survived all of it.
    request(block::INFO, [0; 4])?;
    println!("refused=ok");
    Ok(())
}

/// Reads until a request fails (the server is killed, say); returns that failure.
fn read_forever(sector: u64) -> Result<(), Failure> {
    let buffer = Buffer::new()?;
    loop {
        buffer.read(sector, SECTORS_PER_PAGE)?;
    }
}

/// Prints the cost of `ops` operations of `name`, each done by `op`.
fn measure(
    name: &str,
    ops: u64,
    mut op: impl FnMut(u64) -> Result<(), Failure>,
) -> Result<(), Failure> {
    let start = usys::time_ns();
    for i in 0..ops {
        op(i)?;
    }
    let elapsed = usys::time_ns() - start;
    println!("bench={name} ops={ops} ns_per_op={}", elapsed / ops);
    Ok(())
}

/// The parts of a read: a plain call to the server, a grant call it refuses before touching
/// the device, a whole 4 KiB read.
fn bench(ops: u64) -> Result<(), Failure> {
    let [capacity, ..] = request(block::INFO, [0; 4])?;
    let pages = capacity / SECTORS_PER_PAGE;
    let buffer = Buffer::new()?;
    buffer.read(0, SECTORS_PER_PAGE)?;
    measure("blkd_info_call", ops, |_| {
        Ok(request(block::INFO, [0; 4]).map(drop)?)
    })?;
    measure("blkd_refused_grant_call", ops, |_| {
        refused(
            "bench",
            buffer.transfer(block::READ, 0, 0, 1),
            Error::InvalidArgument,
        )
    })?;
    measure("blkd_read4k", ops, |i| {
        buffer.read(i % pages * SECTORS_PER_PAGE, SECTORS_PER_PAGE)
    })
}
