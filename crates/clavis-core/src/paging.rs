//! Pagination, written once: every `List*` operation fetches one item more than its page (so that
//! it knows whether another page follows), cuts the page, and names the last item on it as the
//! marker the next request starts after.
//!
//! It owns only that cut. Parsing `Limit` and `Marker` (their AWS constraints) stays in
//! `validate`, and what a marker means (a key id, an alias name, a grant id, a version) stays
//! with each operation.

/// One page of a listing.
#[derive(Debug)]
pub(crate) struct Page<T> {
    /// The page's items, at most the limit.
    pub items: Vec<T>,
    /// The marker of the next page (the last item's), when one follows.
    pub next_marker: Option<String>,
    /// Whether another page follows.
    pub truncated: bool,
}

/// How many items to fetch for a page of `limit`: one more, to learn whether another follows.
pub(crate) fn fetch_len(limit: usize) -> usize {
    limit.saturating_add(1)
}

impl<T> Page<T> {
    /// The first `limit` of `fetched` (listed in marker order, starting after the request's
    /// marker); `marker_of` names an item as a marker.
    pub(crate) fn cut(mut fetched: Vec<T>, limit: usize, marker_of: impl FnOnce(&T) -> String) -> Page<T> {
        let truncated = fetched.len() > limit;
        fetched.truncate(limit);
        let next_marker = if truncated { fetched.last().map(marker_of) } else { None };
        Page { items: fetched, next_marker, truncated }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cuts_one_past_the_page() {
        let page = Page::cut(vec![1, 2, 3], 2, |n| n.to_string());
        assert_eq!((page.items, page.next_marker, page.truncated), (vec![1, 2], Some("2".to_owned()), true));
        let last = Page::cut(vec![1, 2], 2, |n| n.to_string());
        assert_eq!((last.items, last.next_marker, last.truncated), (vec![1, 2], None, false));
        let empty = Page::cut(Vec::<u8>::new(), 2, |n| n.to_string());
        assert_eq!((empty.items, empty.next_marker, empty.truncated), (vec![], None, false));
    }
}
