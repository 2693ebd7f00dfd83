//! User roles. They rank `system_admin > owner > admin > agent`; a role may do
//! everything the roles below it may.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// A user's role. The derived order is the rank: `Agent < Admin < Owner < SystemAdmin`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Handles calls and contacts of its tenant.
    Agent,
    /// Manages the tenant's agents, numbers, contacts and agent-role users.
    Admin,
    /// Owns the tenant: everything in it, including credentials and admins.
    Owner,
    /// Operates the platform: every tenant.
    SystemAdmin,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown role `{0}` (expected system_admin, owner, admin or agent)")]
pub struct RoleParseError(pub String);

impl Role {
    pub const ALL: [Role; 4] = [Role::SystemAdmin, Role::Owner, Role::Admin, Role::Agent];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Agent => "agent",
            Role::Admin => "admin",
            Role::Owner => "owner",
            Role::SystemAdmin => "system_admin",
        }
    }

    /// True when this role ranks at least as high as `other`.
    pub fn at_least(self, other: Role) -> bool {
        self >= other
    }
}

impl FromStr for Role {
    type Err = RoleParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "agent" => Ok(Role::Agent),
            "admin" => Ok(Role::Admin),
            "owner" => Ok(Role::Owner),
            "system_admin" => Ok(Role::SystemAdmin),
            other => Err(RoleParseError(other.chars().take(32).collect())),
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranks() {
        assert!(Role::SystemAdmin > Role::Owner);
        assert!(Role::Owner > Role::Admin);
        assert!(Role::Admin > Role::Agent);
        assert!(Role::Owner.at_least(Role::Admin));
        assert!(!Role::Agent.at_least(Role::Admin));
    }

    #[test]
    fn round_trips() {
        for r in Role::ALL {
            assert_eq!(r.as_str().parse::<Role>().unwrap(), r);
            assert_eq!(serde_json::to_string(&r).unwrap(), format!("\"{}\"", r.as_str()));
        }
        assert!("root".parse::<Role>().is_err());
    }
}
