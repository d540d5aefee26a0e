//! Belady's OPT: on a fault with memory full, evict the resident page whose next use is
//! furthest in the future (never used again first). The next use of every access is computed
//! once per trace; residents sit in an indexed max-heap keyed by next use, so a run is
//! O(accesses * log frames).
//!
//! Swap writes follow the memory model's rule: evicting a page that is dirty or has no valid
//! swap copy costs a write.

use crate::trace::WRITE_BIT;

/// "Never used again".
const NEVER: u32 = u32::MAX;
const NONE: u32 = u32::MAX;

/// For each access, the index of the next access to the same page (or [`NEVER`]).
pub fn next_uses(accesses: &[u32], pages: u32) -> Vec<u32> {
    let mut last = vec![NEVER; pages as usize];
    let mut next = vec![NEVER; accesses.len()];
    for (i, &access) in accesses.iter().enumerate().rev() {
        let page = (access & !WRITE_BIT) as usize;
        next[i] = last[page];
        last[page] = i as u32;
    }
    next
}

/// Faults and swap writes of one OPT run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OptResult {
    /// Page faults, first touches included.
    pub faults: u64,
    /// Pages written to swap.
    pub swap_writes: u64,
}

/// Max-heap of resident pages keyed by next use, with each page's position.
struct Heap {
    entries: Vec<(u32, u32)>,
    position: Vec<u32>,
}

impl Heap {
    fn swap(&mut self, a: usize, b: usize) {
        self.entries.swap(a, b);
        self.position[self.entries[a].1 as usize] = a as u32;
        self.position[self.entries[b].1 as usize] = b as u32;
    }

    fn sift_up(&mut self, mut i: usize) {
        while i > 0 {
            let parent = (i - 1) / 2;
            if self.entries[parent].0 >= self.entries[i].0 {
                break;
            }
            self.swap(i, parent);
            i = parent;
        }
    }

    fn sift_down(&mut self, mut i: usize) {
        loop {
            let (left, right) = (2 * i + 1, 2 * i + 2);
            let mut largest = i;
            if left < self.entries.len() && self.entries[left].0 > self.entries[largest].0 {
                largest = left;
            }
            if right < self.entries.len() && self.entries[right].0 > self.entries[largest].0 {
                largest = right;
            }
            if largest == i {
                return;
            }
            self.swap(i, largest);
            i = largest;
        }
    }

    fn push(&mut self, next_use: u32, page: u32) {
        self.entries.push((next_use, page));
        let i = self.entries.len() - 1;
        self.position[page as usize] = i as u32;
        self.sift_up(i);
    }

    /// Remove and return the page used furthest in the future.
    fn pop(&mut self) -> u32 {
        let last = self.entries.len() - 1;
        self.swap(0, last);
        let (_, page) = self.entries.pop().unwrap_or((0, 0));
        self.position[page as usize] = NONE;
        if !self.entries.is_empty() {
            self.sift_down(0);
        }
        page
    }

    /// A hit: the page's next use moves later, so it rises.
    fn postpone(&mut self, page: u32, next_use: u32) {
        let i = self.position[page as usize] as usize;
        self.entries[i].0 = next_use;
        self.sift_up(i);
    }
}

/// Replay `accesses` (with their `next_uses`) through OPT with `frames` frames.
pub fn simulate(accesses: &[u32], next: &[u32], pages: u32, frames: u32) -> OptResult {
    let frames = frames.max(1) as usize;
    let mut heap = Heap {
        entries: Vec::with_capacity(frames),
        position: vec![NONE; pages as usize],
    };
    // Per page: bit 0 dirty, bit 1 valid swap copy.
    let mut state = vec![0u8; pages as usize];
    let mut result = OptResult {
        faults: 0,
        swap_writes: 0,
    };
    for (i, &access) in accesses.iter().enumerate() {
        let page = access & !WRITE_BIT;
        if heap.position[page as usize] != NONE {
            heap.postpone(page, next[i]);
        } else {
            result.faults += 1;
            if heap.entries.len() == frames {
                let victim = heap.pop() as usize;
                if state[victim] != 0b10 {
                    result.swap_writes += 1;
                }
                state[victim] = 0b10;
            }
            heap.push(next[i], page);
        }
        if access & WRITE_BIT != 0 {
            state[page as usize] = 0b01;
        }
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(pages: &[u32], frames: u32) -> OptResult {
        let count = pages
            .iter()
            .map(|&p| p & !WRITE_BIT)
            .max()
            .map_or(0, |p| p + 1);
        simulate(pages, &next_uses(pages, count), count, frames)
    }

    #[test]
    fn textbook_reference_string() {
        // Silberschatz's string 7 0 1 2 0 3 0 4 2 3 0 3 2 1 2 0 1 7 0 1 with 3 frames: 9 faults.
        let refs = [7, 0, 1, 2, 0, 3, 0, 4, 2, 3, 0, 3, 2, 1, 2, 0, 1, 7, 0, 1];
        assert_eq!(run(&refs, 3).faults, 9);
        // With 4 frames: 8 faults (7 0 1 2 cold, 3 replaces 7, 4 replaces 1, then 1 and 7 each
        // replace a page never used again).
        assert_eq!(run(&refs, 4).faults, 8);
        // Enough frames: only the 6 distinct pages fault.
        assert_eq!(run(&refs, 6).faults, 6);
    }

    #[test]
    fn loop_one_larger_than_memory() {
        // 1 2 3 4 repeated 3 times with 3 frames: 4 cold faults, then OPT keeps two of the
        // loop resident and faults once every other access or so: 1 2 3 | 4 (evict 3) 1 2 3
        // (evict 2) 4 (hit) 1 (hit) 2 (evict 1) 3 (hit) 4 (hit): 6 faults in total.
        let refs = [1, 2, 3, 4, 1, 2, 3, 4, 1, 2, 3, 4];
        assert_eq!(run(&refs, 3).faults, 6);
        assert_eq!(run(&refs, 1).faults, 12);
    }

    #[test]
    fn next_use_is_the_following_occurrence() {
        assert_eq!(
            next_uses(&[5, 1, 5, 5 | WRITE_BIT, 1], 6),
            [2, 4, 3, NEVER, NEVER]
        );
    }

    #[test]
    fn swap_writes_follow_dirty_state() {
        // Frames 1: every fault evicts the previous page.
        // 0w: fault. 1: fault, evict 0 (dirty: write). 0: fault, evict 1 (never swapped:
        // write). 1: fault, evict 0 (clean swap copy: free). 0: fault, evict 1 (clean: free).
        let refs = [WRITE_BIT, 1, 0, 1, 0];
        assert_eq!(
            run(&refs, 1),
            OptResult {
                faults: 5,
                swap_writes: 2
            }
        );
    }
}
