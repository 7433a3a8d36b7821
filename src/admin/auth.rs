//! Bearer-token check for mutating admin calls: 401 without a token, 403 with a wrong one.

use subtle_eq::constant_time_eq;

/// Checks an `Authorization` header value against the configured token.
/// No configured token means mutating calls are refused (401) with a hint.
pub fn check(header: Option<&str>, token: Option<&str>) -> Result<(), (u16, &'static str)> {
    let Some(token) = token else {
        return Err((
            401,
            "admin token not configured: set the env var named by admin.token_env",
        ));
    };
    // RFC 9110 §11.1: the scheme name is case-insensitive; one or more spaces follow it.
    let given = header.map(str::trim_start).and_then(|h| {
        let (scheme, rest) = h.split_once([' ', '\t'])?;
        scheme.eq_ignore_ascii_case("bearer").then_some(rest)
    });
    let Some(given) = given else {
        return Err((401, "missing bearer token"));
    };
    if constant_time_eq(given.trim().as_bytes(), token.as_bytes()) {
        Ok(())
    } else {
        Err((403, "wrong bearer token"))
    }
}

mod subtle_eq {
    /// Compares without an early exit on the first differing byte.
    pub(super) fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
        if a.len() != b.len() {
            return false;
        }
        a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
    }
}

#[cfg(test)]
mod tests {
    use super::check;

    #[test]
    fn token_rules() {
        assert_eq!(check(None, Some("s3cret")).unwrap_err().0, 401);
        assert_eq!(
            check(Some("Bearer nope"), Some("s3cret")).unwrap_err().0,
            403
        );
        assert!(check(Some("Bearer s3cret"), Some("s3cret")).is_ok());
        for spelling in ["bearer s3cret", "BEARER s3cret", "BeArEr  s3cret"] {
            assert!(check(Some(spelling), Some("s3cret")).is_ok(), "{spelling}");
        }
        assert_eq!(
            check(Some("Basic s3cret"), Some("s3cret")).unwrap_err().0,
            401
        );
        assert_eq!(
            check(Some("Bearers3cret"), Some("s3cret")).unwrap_err().0,
            401
        );
        assert_eq!(check(Some("Bearer s3cret"), None).unwrap_err().0, 401);
        assert_eq!(check(Some("Basic abc"), Some("s3cret")).unwrap_err().0, 401);
    }
}
