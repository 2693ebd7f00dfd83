//! Tenant scoping for reads and writes.
//!
//! Guarantees: a row outside the caller's scope is reported exactly like a
//! missing row (`NotFound`), so scoping never leaks that a row exists.

use domain::TenantId;

/// Which tenants a caller may see: system admins use `All`, everyone else
/// `Tenant(their tenant)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scope {
    All,
    Tenant(TenantId),
}

impl Scope {
    /// True when a row owned by `tenant` is visible in this scope.
    pub fn allows(&self, tenant: TenantId) -> bool {
        match self {
            Scope::All => true,
            Scope::Tenant(t) => *t == tenant,
        }
    }
}
