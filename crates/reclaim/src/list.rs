//! Intrusive doubly linked lists over `u32` node indices (frames, CLOCK-Pro ghost entries).
//!
//! A list runs from its head (newest) to its tail (oldest); `next` links point toward the tail.
//! The links live in the nodes ([`crate::FrameMeta`] for frames), so list operations never
//! allocate.

/// "No node" in a link or list end.
pub(crate) const NIL: u32 = u32::MAX;

/// Read access to the `prev`/`next` links of list nodes.
pub(crate) trait Chain {
    fn prev(&self, node: u32) -> u32;
    fn next(&self, node: u32) -> u32;
}

/// Storage of the `prev`/`next` links of list nodes.
pub(crate) trait Links: Chain {
    fn set_prev(&mut self, node: u32, prev: u32);
    fn set_next(&mut self, node: u32, next: u32);
}

/// Ends and length of one list.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct List {
    head: u32,
    tail: u32,
    len: u32,
}

impl Default for List {
    fn default() -> Self {
        Self::new()
    }
}

impl List {
    pub(crate) const fn new() -> Self {
        Self {
            head: NIL,
            tail: NIL,
            len: 0,
        }
    }

    pub(crate) const fn len(&self) -> u32 {
        self.len
    }

    pub(crate) const fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Oldest node.
    pub(crate) fn tail(&self) -> Option<u32> {
        (self.tail != NIL).then_some(self.tail)
    }

    /// The node one step newer than `node` (toward the head).
    pub(crate) fn newer(links: &impl Chain, node: u32) -> Option<u32> {
        let prev = links.prev(node);
        (prev != NIL).then_some(prev)
    }

    /// Insert `node` (on no list) as the newest.
    pub(crate) fn push_head(&mut self, links: &mut impl Links, node: u32) {
        links.set_prev(node, NIL);
        links.set_next(node, self.head);
        if self.head == NIL {
            self.tail = node;
        } else {
            links.set_prev(self.head, node);
        }
        self.head = node;
        self.len += 1;
    }

    /// Insert `node` (on no list) as the oldest.
    pub(crate) fn push_tail(&mut self, links: &mut impl Links, node: u32) {
        links.set_next(node, NIL);
        links.set_prev(node, self.tail);
        if self.tail == NIL {
            self.head = node;
        } else {
            links.set_next(self.tail, node);
        }
        self.tail = node;
        self.len += 1;
    }

    /// Unlink `node`, which is on this list.
    pub(crate) fn remove(&mut self, links: &mut impl Links, node: u32) {
        let prev = links.prev(node);
        let next = links.next(node);
        if prev == NIL {
            self.head = next;
        } else {
            links.set_next(prev, next);
        }
        if next == NIL {
            self.tail = prev;
        } else {
            links.set_prev(next, prev);
        }
        links.set_prev(node, NIL);
        links.set_next(node, NIL);
        self.len -= 1;
    }

    /// Put `new` (on no list) in the place of `old`, which leaves the list.
    pub(crate) fn replace(&mut self, links: &mut impl Links, old: u32, new: u32) {
        let prev = links.prev(old);
        let next = links.next(old);
        links.set_prev(new, prev);
        links.set_next(new, next);
        if prev == NIL {
            self.head = new;
        } else {
            links.set_next(prev, new);
        }
        if next == NIL {
            self.tail = new;
        } else {
            links.set_prev(next, new);
        }
        links.set_prev(old, NIL);
        links.set_next(old, NIL);
    }

    /// Walk from head to tail checking the links; returns the number of nodes seen, or `None`
    /// when a link is inconsistent or the walk exceeds `limit` nodes (a cycle).
    pub(crate) fn walk_checked(
        &self,
        links: &impl Chain,
        limit: u32,
        mut visit: impl FnMut(u32),
    ) -> Option<u32> {
        let mut count = 0;
        let mut prev = NIL;
        let mut node = self.head;
        while node != NIL {
            if links.prev(node) != prev || count >= limit {
                return None;
            }
            visit(node);
            count += 1;
            prev = node;
            node = links.next(node);
        }
        (prev == self.tail && count == self.len).then_some(count)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;
    use alloc::vec::Vec;

    struct Arena(Vec<(u32, u32)>);

    impl Chain for Arena {
        fn prev(&self, node: u32) -> u32 {
            self.0[node as usize].0
        }
        fn next(&self, node: u32) -> u32 {
            self.0[node as usize].1
        }
    }

    impl Links for Arena {
        fn set_prev(&mut self, node: u32, prev: u32) {
            self.0[node as usize].0 = prev;
        }
        fn set_next(&mut self, node: u32, next: u32) {
            self.0[node as usize].1 = next;
        }
    }

    fn order(list: &List, arena: &Arena) -> Vec<u32> {
        let mut out = Vec::new();
        list.walk_checked(arena, 100, |n| out.push(n))
            .expect("consistent list");
        out
    }

    #[test]
    fn push_remove_replace_keep_order() {
        let mut arena = Arena(vec![(NIL, NIL); 6]);
        let mut list = List::new();
        list.push_head(&mut arena, 1);
        list.push_head(&mut arena, 2);
        list.push_tail(&mut arena, 0);
        assert_eq!(order(&list, &arena), [2, 1, 0]);
        assert_eq!((list.tail(), list.len()), (Some(0), 3));
        list.remove(&mut arena, 1);
        assert_eq!(order(&list, &arena), [2, 0]);
        list.replace(&mut arena, 0, 5);
        assert_eq!(order(&list, &arena), [2, 5]);
        list.replace(&mut arena, 2, 4);
        assert_eq!(order(&list, &arena), [4, 5]);
        assert_eq!(List::newer(&arena, 5), Some(4));
        assert_eq!(List::newer(&arena, 4), None);
        list.remove(&mut arena, 4);
        list.remove(&mut arena, 5);
        assert!(list.is_empty());
        assert_eq!(list.tail(), None);
    }

    #[test]
    fn walk_detects_broken_links() {
        let mut arena = Arena(vec![(NIL, NIL); 3]);
        let mut list = List::new();
        list.push_head(&mut arena, 0);
        list.push_head(&mut arena, 1);
        arena.set_prev(0, 2);
        assert_eq!(list.walk_checked(&arena, 10, |_| {}), None);
    }
}
