//! Masking secrets in URLs before they reach a log, an error, a metric label
//! or an HTTP body: [`mask_password`] and [`mask_secrets`].

/// `scheme://user:secret@host/…` becomes `scheme://user:****@host/…`.
/// Strings without a password come back unchanged.
pub(crate) fn mask_password(url: &str) -> String {
    let Some(scheme_end) = url.find("://").map(|i| i + 3) else {
        return url.to_owned();
    };
    let rest = &url[scheme_end..];
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = &rest[..authority_end];
    let Some(at) = authority.rfind('@') else {
        return url.to_owned();
    };
    let userinfo = &authority[..at];
    let Some(colon) = userinfo.find(':') else {
        return url.to_owned();
    };
    format!(
        "{}{}:****{}",
        &url[..scheme_end],
        &userinfo[..colon],
        &rest[at..]
    )
}

/// A URL for logs: password masked, and query values masked too (webhook
/// URLs carry their secret there, e.g. `?key=…`).
pub(crate) fn mask_secrets(url: &str) -> String {
    let url = mask_password(url);
    let Some((base, query)) = url.split_once('?') else {
        return url;
    };
    let masked = query
        .split('&')
        .map(|pair| match pair.split_once('=') {
            Some((k, _)) => format!("{k}=****"),
            None => pair.to_owned(),
        })
        .collect::<Vec<_>>()
        .join("&");
    format!("{base}?{masked}")
}

/// `text` with every occurrence of `password` replaced by `****` (a
/// one-character password is left alone: it would mask every such letter).
#[cfg(any(feature = "dlq", feature = "cli"))]
pub(crate) fn scrub(text: &str, password: Option<&str>) -> String {
    match password {
        Some(p) if p.len() >= 2 => text.replace(p, "****"),
        _ => text.to_owned(),
    }
}

/// The password in `scheme://user:password@host…`, if any (to scrub it from
/// texts that quote the URL, such as a database driver's errors).
#[cfg(any(feature = "dlq", feature = "cli"))]
pub(crate) fn password_of(url: &str) -> Option<String> {
    let rest = &url[url.find("://")? + 3..];
    let authority = &rest[..rest.find(['/', '?', '#']).unwrap_or(rest.len())];
    let userinfo = &authority[..authority.rfind('@')?];
    let password = &userinfo[userinfo.find(':')? + 1..];
    (!password.is_empty()).then(|| password.to_owned())
}

#[cfg(test)]
mod tests {
    use super::mask_password;

    #[test]
    fn masks_only_the_password() {
        assert_eq!(
            mask_password("amqp://user:secret@127.0.0.1:1/%2f"),
            "amqp://user:****@127.0.0.1:1/%2f"
        );
        assert_eq!(
            mask_password("redis://:pw@h:6379/0"),
            "redis://:****@h:6379/0"
        );
        assert_eq!(
            mask_password("amqp://p%40ss:s@cr@et@h/"),
            "amqp://p%40ss:****@h/"
        );
        assert_eq!(mask_password("amqp://guest@h/x@y"), "amqp://guest@h/x@y");
        assert_eq!(
            mask_password("redis://127.0.0.1:6379"),
            "redis://127.0.0.1:6379"
        );
        assert_eq!(mask_password("not a url"), "not a url");
    }
}
