//! HTTP handlers, one module per resource family.
//!
//! Permission matrix (roles rank `system_admin > owner > admin > agent`;
//! everyone but system admins is confined to their own tenant, and another
//! tenant's row is always `404 not_found`, never `403`):
//!
//! | resource                         | agent | admin | owner | system_admin |
//! |----------------------------------|-------|-------|-------|--------------|
//! | tenants                          | read own | read own | read + patch own | full |
//! | users                            | none (use `/auth/me`) | read; manage agent-role users | manage roles <= owner | full |
//! | phone numbers, agents            | read  | CRUD  | CRUD  | CRUD (any tenant) |
//! | credentials (secrets write-only) | none  | none  | CRUD  | CRUD (any tenant) |
//! | contacts, appointments           | CRUD  | CRUD  | CRUD  | CRUD (any tenant) |
//! | calls, conversations, messages   | read  | read  | read  | read (all) |
//! | audit log                        | none  | none  | read own | read all |

pub mod activity;
pub mod crud;
pub mod health;
pub mod metrics;
pub mod resources;
pub mod tenants;
pub mod users;
