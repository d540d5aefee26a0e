//! `hog MIB`: maps MIB MiB, fills every word of every page with a pattern derived from the page's
//! index and the word's, then reads everything back and checks it. With more memory than RAM,
//! the kernel must swap to keep up, and every page must come back byte for byte. Prints
//! `verified=ok` or `verified=FAILED pages=N`.
#![no_std]
#![no_main]

use usys::println;

usys::main!(main);

const PAGE: usize = 4096;

fn pattern(page: usize, word: usize) -> u64 {
    (page as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15)
        ^ (word as u64).wrapping_mul(0xbf58_476d_1ce4_e5b9)
        ^ 0x5eed
}

fn main(args: &str) -> i32 {
    let Some(mib) = usys::parse_u64(args) else {
        println!("usage: hog MIB");
        return 2;
    };
    let bytes = mib * 1024 * 1024;
    let base = match usys::map(bytes) {
        Ok(base) => base,
        Err(err) => {
            println!("hog: map {mib} MiB: {err}");
            return 1;
        }
    };
    let pages = bytes as usize / PAGE;
    let words = |page: usize| (0..PAGE / 8).map(move |w| (page, w));
    for page in 0..pages {
        for (page, word) in words(page) {
            // SAFETY: inside the region `map` returned.
            unsafe {
                base.cast::<u64>()
                    .wrapping_add(page * PAGE / 8 + word)
                    .write_volatile(pattern(page, word))
            };
        }
    }
    let mut bad_pages = 0;
    for page in 0..pages {
        // SAFETY: as above.
        let intact = words(page).all(|(page, word)| unsafe { base.cast::<u64>().wrapping_add(page * PAGE / 8 + word).read_volatile() } == pattern(page, word));
        if !intact {
            bad_pages += 1;
        }
    }
    if bad_pages == 0 {
        println!("hog {mib} MiB: verified=ok");
        0
    } else {
        println!("hog {mib} MiB: verified=FAILED pages={bad_pages}");
        1
    }
}
