//! Pagination: offset pages with a bounded size.

use serde::{Deserialize, Serialize};

/// A page request: `limit` is clamped to `1..=MAX_LIMIT`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::IntoParams)]
pub struct PageRequest {
    /// Rows to return, 1..=200 (default 50).
    #[serde(default = "default_limit")]
    pub limit: u32,
    /// Rows to skip (default 0).
    #[serde(default)]
    pub offset: u32,
}

fn default_limit() -> u32 {
    PageRequest::DEFAULT_LIMIT
}

impl PageRequest {
    pub const DEFAULT_LIMIT: u32 = 50;
    pub const MAX_LIMIT: u32 = 200;

    pub fn new(limit: u32, offset: u32) -> Self {
        Self {
            limit: limit.clamp(1, Self::MAX_LIMIT),
            offset,
        }
    }

    /// The request with `limit` clamped into range.
    pub fn clamped(self) -> Self {
        Self::new(self.limit, self.offset)
    }
}

impl Default for PageRequest {
    fn default() -> Self {
        Self::new(Self::DEFAULT_LIMIT, 0)
    }
}

/// One page of results with the total count matching the filter.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub total: u64,
    pub limit: u32,
    pub offset: u32,
}

impl<T> Page<T> {
    pub fn map<U>(self, f: impl FnMut(T) -> U) -> Page<U> {
        Page {
            items: self.items.into_iter().map(f).collect(),
            total: self.total,
            limit: self.limit,
            offset: self.offset,
        }
    }
}
