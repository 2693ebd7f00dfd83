//! Connection URLs made safe to log: the password in `scheme://user:pass@host`
//! is replaced by `***`, and query strings (which may carry `password=`) are
//! dropped. Used for the startup log line naming the database and Redis.

/// `url` without its password or query string.
pub fn redact_url(url: &str) -> String {
    let without_query = url.split_once('?').map_or(url, |(base, _)| base);
    let Some((scheme, rest)) = without_query.split_once("://") else {
        return without_query.to_owned();
    };
    // The userinfo ends at the last '@' before the path: passwords may contain '@'.
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let (authority, path) = rest.split_at(authority_end);
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => {
            let user = userinfo.split_once(':').map_or(userinfo, |(user, _)| user);
            if userinfo.contains(':') {
                format!("{scheme}://{user}:***@{host}{path}")
            } else {
                format!("{scheme}://{user}@{host}{path}")
            }
        }
        None => format!("{scheme}://{authority}{path}"),
    }
}

#[cfg(test)]
mod tests {
    use super::redact_url;

    #[test]
    fn passwords_and_queries_are_removed() {
        assert_eq!(
            redact_url("postgres://sb:hunter2@db:5432/sb"),
            "postgres://sb:***@db:5432/sb"
        );
        assert_eq!(
            redact_url("postgres://sb:p@ss@db/sb?password=x"),
            "postgres://sb:***@db/sb"
        );
        assert_eq!(redact_url("redis://:tok@cache:6379"), "redis://:***@cache:6379");
        assert_eq!(
            redact_url("postgres://postgres@127.0.0.1/x"),
            "postgres://postgres@127.0.0.1/x"
        );
        assert_eq!(
            redact_url("sqlite:///var/lib/sb/switchboard.db?mode=rwc"),
            "sqlite:///var/lib/sb/switchboard.db"
        );
        assert_eq!(redact_url("sqlite::memory:"), "sqlite::memory:");
    }
}
