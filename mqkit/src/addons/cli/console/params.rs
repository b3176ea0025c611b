//! The console's request parameters: the filter of the list (a query
//! string, or the hidden fields of a replay form) as [`FilterText`] (what was
//! typed, to show again) and the archive [`Filter`] it means, checked the way
//! the CLI checks its options (`--since` / `--until` through
//! [`parse_time`]); the replay form ([`ReplayForm`]). Parsed with
//! `form_urlencoded`, which keeps repeated keys (`id=1&id=2`).

use crate::addons::cli::archive::parse_time;
use crate::addons::dlq::store::Filter;

/// The filter fields as the user typed them (empty = not set).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct FilterText {
    pub(super) queue: String,
    pub(super) kind: String,
    pub(super) since: String,
    pub(super) until: String,
    pub(super) text: String,
    pub(super) key: String,
}

impl FilterText {
    /// `(name, value)` of every field that is set, for links and hidden
    /// fields.
    pub(super) fn pairs(&self) -> Vec<(&'static str, &str)> {
        [
            ("queue", self.queue.as_str()),
            ("kind", self.kind.as_str()),
            ("since", self.since.as_str()),
            ("until", self.until.as_str()),
            ("text", self.text.as_str()),
            ("key", self.key.as_str()),
        ]
        .into_iter()
        .filter(|(_, v)| !v.is_empty())
        .collect()
    }

    /// `?queue=…&kind=…` (with `extra` pairs after), or `""` when empty.
    pub(super) fn query(&self, extra: &[(&str, &str)]) -> String {
        let mut q = form_urlencoded::Serializer::new(String::new());
        for (k, v) in self.pairs().into_iter().chain(extra.iter().copied()) {
            q.append_pair(k, v);
        }
        let q = q.finish();
        if q.is_empty() { q } else { format!("?{q}") }
    }

    /// The archive filter these fields mean (every row, replayed or not);
    /// `Err` says which field is wrong and what it accepts.
    pub(super) fn filter(&self) -> Result<Filter, String> {
        let set = |s: &str| Some(s.trim().to_owned()).filter(|s| !s.is_empty());
        let time = |name: &str, value: &str| match set(value) {
            None => Ok(None),
            Some(v) => parse_time(&v).map(Some).map_err(|e| format!("{name}: {e}")),
        };
        Ok(Filter {
            queue: set(&self.queue),
            kinds: self.kind.split(',').filter_map(set).collect(),
            since: time("since", &self.since)?,
            until: time("until", &self.until)?,
            key: set(&self.key),
            text: set(&self.text),
            include_replayed: true,
            ids: Vec::new(),
        })
    }

    /// The same filter with the times resolved (`2h` becomes the instant it
    /// meant now), so a confirmation replays what it counted.
    pub(super) fn resolved(&self, filter: &Filter) -> FilterText {
        FilterText {
            since: filter.since.clone().unwrap_or_default(),
            until: filter.until.clone().unwrap_or_default(),
            ..self.clone()
        }
    }

    fn set(&mut self, key: &str, value: String) -> bool {
        let field = match key {
            "queue" => &mut self.queue,
            "kind" => &mut self.kind,
            "since" => &mut self.since,
            "until" => &mut self.until,
            "text" => &mut self.text,
            "key" => &mut self.key,
            _ => return false,
        };
        *field = value;
        true
    }
}

/// `GET /`'s query: the filter and the page cursor.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct ListQuery {
    pub(super) filter: FilterText,
    /// Only rows with a smaller id (the "older" link).
    pub(super) before: Option<i64>,
}

impl ListQuery {
    /// Parses a query string; unknown keys are ignored.
    pub(super) fn parse(query: &str) -> Result<ListQuery, String> {
        let mut q = ListQuery::default();
        for (k, v) in form_urlencoded::parse(query.as_bytes()) {
            if k == "before" {
                if !v.trim().is_empty() {
                    q.before = Some(id(&v, "before")?);
                }
            } else {
                q.filter.set(&k, v.into_owned());
            }
        }
        Ok(q)
    }
}

/// Which letters a replay form names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Scope {
    /// The checked ids.
    Selected,
    /// Every letter the filter matches.
    Matching,
}

/// `POST /replay`'s form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct ReplayForm {
    pub(super) scope: Scope,
    pub(super) filter: FilterText,
    pub(super) ids: Vec<i64>,
    /// Letters replayed before too.
    pub(super) again: bool,
    /// Set by the confirmation page: run it.
    pub(super) confirm: bool,
    /// On confirmation: at most this many letters (the count confirmed).
    pub(super) count: Option<u64>,
}

impl ReplayForm {
    /// Parses a form body.
    pub(super) fn parse(body: &[u8]) -> Result<ReplayForm, String> {
        let mut form = ReplayForm {
            scope: Scope::Selected,
            filter: FilterText::default(),
            ids: Vec::new(),
            again: false,
            confirm: false,
            count: None,
        };
        let mut scope = None;
        for (k, v) in form_urlencoded::parse(body) {
            match &*k {
                "id" => form.ids.push(id(&v, "id")?),
                "scope" => {
                    scope = Some(match &*v {
                        "selected" => Scope::Selected,
                        "matching" => Scope::Matching,
                        other => return Err(format!("unknown scope `{other}`")),
                    })
                }
                "again" => form.again = !v.is_empty(),
                "confirm" => form.confirm = !v.is_empty(),
                "count" => {
                    form.count = Some(
                        v.trim()
                            .parse()
                            .map_err(|_| format!("count `{v}` is not a number"))?,
                    )
                }
                _ => {
                    form.filter.set(&k, v.into_owned());
                }
            }
        }
        form.scope = scope.ok_or("the form says neither `selected` nor `matching`")?;
        form.ids.sort_unstable();
        form.ids.dedup();
        if form.scope == Scope::Selected && form.ids.is_empty() {
            return Err("no letters selected: check the box of each letter to replay, or use \"Replay all matching\"".to_owned());
        }
        Ok(form)
    }

    /// The archive filter of the letters this form replays.
    pub(super) fn filter(&self) -> Result<Filter, String> {
        let mut filter = match self.scope {
            Scope::Matching => self.filter.filter()?,
            Scope::Selected => Filter {
                ids: self.ids.clone(),
                ..Filter::default()
            },
        };
        filter.include_replayed = self.again;
        Ok(filter)
    }
}

fn id(text: &str, name: &str) -> Result<i64, String> {
    text.trim()
        .parse::<i64>()
        .ok()
        .filter(|n| *n > 0)
        .ok_or_else(|| format!("{name} `{text}` is not a letter id (a positive number)"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_filter_reads_like_the_clis_options() {
        let q = ListQuery::parse(
            "queue=order&kind=decode%2C+rejected&since=2026-11-30&until=&text=Bad&key=A-1&before=51&x=y",
        );
        let Ok(q) = q else { panic!("{q:?}") };
        assert_eq!(q.before, Some(51));
        let f = q.filter.filter();
        assert_eq!(
            f,
            Ok(Filter {
                queue: Some("order".into()),
                kinds: vec!["decode".into(), "rejected".into()],
                since: Some("2026-11-30 00:00:00.000".into()),
                until: None,
                key: Some("A-1".into()),
                text: Some("Bad".into()),
                include_replayed: true,
                ids: vec![],
            })
        );
        assert_eq!(
            q.filter.query(&[("before", "7")]),
            "?queue=order&kind=decode%2C+rejected&since=2026-11-30&text=Bad&key=A-1&before=7"
        );
        assert_eq!(FilterText::default().query(&[]), "");

        let bad = ListQuery::parse("since=yesterday")
            .map(|q| q.filter.filter())
            .map_err(|e| e.clone());
        let err = bad.ok().and_then(|f| f.err()).unwrap_or_default();
        assert!(err.starts_with("since: `yesterday` is not a time"), "{err}");
        let err = ListQuery::parse("before=-3").err().unwrap_or_default();
        assert!(err.contains("not a letter id"), "{err}");
    }

    #[test]
    fn a_relative_time_is_pinned_for_the_confirmation() {
        let text = FilterText {
            since: "2h".into(),
            ..FilterText::default()
        };
        let filter = text.filter().unwrap_or_default();
        let pinned = text.resolved(&filter);
        assert_eq!(Some(pinned.since.clone()), filter.since);
        assert_eq!(pinned.filter().map(|f| f.since), Ok(filter.since));
    }

    #[test]
    fn replay_forms() {
        let f = ReplayForm::parse(b"scope=selected&id=3&id=1&id=3&queue=q&again=on");
        let Ok(f) = f else { panic!("{f:?}") };
        assert_eq!(f.ids, [1, 3]);
        assert!(f.again && !f.confirm);
        let filter = f.filter().unwrap_or_default();
        // Selected ids only, whatever the list's filter was.
        assert_eq!(filter.ids, [1, 3]);
        assert_eq!(filter.queue, None);
        assert!(filter.include_replayed);

        let f = ReplayForm::parse(b"scope=matching&queue=q&kind=decode&confirm=yes&count=12");
        let Ok(f) = f else { panic!("{f:?}") };
        assert_eq!(f.count, Some(12));
        let filter = f.filter().unwrap_or_default();
        assert_eq!(filter.queue.as_deref(), Some("q"));
        assert_eq!(filter.kinds, ["decode"]);
        assert!(!filter.include_replayed, "replayed rows only with `again`");

        for (body, want) in [
            (&b"scope=selected"[..], "no letters selected"),
            (b"id=1", "neither"),
            (b"scope=all&id=1", "unknown scope"),
            (b"scope=selected&id=x", "not a letter id"),
            (b"scope=matching&count=many", "not a number"),
        ] {
            let err = ReplayForm::parse(body).err().unwrap_or_default();
            assert!(err.contains(want), "{body:?}: {err}");
        }
    }
}
