//! Purge request parsing and validation (the 400 messages of `POST /purge`).

use super::*;

fn err(json: &str) -> String {
    match PurgeRequest::from_json(json.as_bytes()) {
        Ok(r) => panic!("{json} parsed as {r:?}"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn every_kind_parses() {
    let r = PurgeRequest::from_json(
        br#"{"urls":["http://a.test/x"],"tags":["t"],"prefixes":["https://a.test/img/"],"hosts":["a.test"],"all":true,"soft":true}"#,
    )
    .unwrap();
    assert_eq!(r.urls, ["http://a.test/x"]);
    assert_eq!(r.tags, ["t"]);
    assert_eq!(r.prefixes, ["https://a.test/img/"]);
    assert_eq!(r.hosts, ["a.test"]);
    assert!(r.all && r.soft);
}

#[test]
fn nothing_to_purge_is_rejected() {
    for json in [
        r#"{}"#,
        r#"{"urls":[],"tags":[]}"#,
        r#"{"all":false}"#,
        r#"{"soft":true}"#,
    ] {
        assert!(err(json).starts_with("nothing to purge"), "{json}");
    }
}

#[test]
fn bad_json_and_unknown_fields_are_rejected_with_the_reason() {
    assert!(err("not json").starts_with("invalid purge request"));
    assert!(err(r#"{"url":["http://a.test/"]}"#).contains("unknown field `url`"));
    assert!(err(r#"{"tags":"t"}"#).starts_with("invalid purge request"));
}

#[test]
fn malformed_items_name_their_position() {
    assert_eq!(
        err(r#"{"urls":["http://a.test/","/relative"]}"#),
        "urls[1]: expected an absolute http(s) URL like \"http://example.test/a.css\", got \"/relative\""
    );
    assert!(err(r#"{"prefixes":["http:///x"]}"#).starts_with("prefixes[0]: URL has no host"));
    assert_eq!(err(r#"{"tags":[" "]}"#), "tags[0]: empty tag");
    assert!(err(r#"{"hosts":["a.test/x"]}"#).starts_with("hosts[0]: expected a host name"));
}

#[test]
fn items_are_trimmed() {
    let r = PurgeRequest::from_json(br#"{"tags":[" t "],"urls":[" HTTP://a.test/x "]}"#).unwrap();
    assert_eq!(
        (r.tags[0].as_str(), r.urls[0].as_str()),
        ("t", "HTTP://a.test/x")
    );
    assert_eq!(
        PurgeRequest::url("http://a.test/"),
        PurgeRequest {
            urls: vec!["http://a.test/".into()],
            ..Default::default()
        }
    );
}

#[test]
fn urls_resolve_to_both_schemes_and_canonical_names() {
    let r = PurgeRequest::from_json(
        br#"{"urls":["HTTP://A.test.:8080/x/../y?utm_a=1"],"prefixes":["http://A.test/img/"],"hosts":["A.Test."]}"#,
    )
    .unwrap();
    let p = r
        .resolve(&QueryFilter::new(&["utm_*".to_string()]))
        .unwrap();
    let urls: Vec<&str> = p.urls.iter().map(ObjectUrl::as_str).collect();
    assert_eq!(urls, ["http://a.test/y", "https://a.test/y"]);
    assert_eq!(p.prefixes[0].as_str(), "http://a.test/img/");
    assert_eq!(p.hosts, ["a.test"]);
    let bad = PurgeRequest::from_json(br#"{"urls":["http://u@a.test/"]}"#);
    assert!(bad
        .unwrap_err()
        .to_string()
        .starts_with("urls[0]: the URL carries userinfo"));
}
