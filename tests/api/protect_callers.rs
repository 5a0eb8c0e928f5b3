//! Per-caller tokens (issue #4) through the real router: one per JWT subject (session names
//! STS accepts, even for hostile subjects; cached; one STS call per subject), the process-wide
//! AssumeRole budget under a crowd of new users, the negative cache for refusals that will not
//! fix themselves, and tokens bound to the caller's address.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use serde_json::Value;
use stsvend::auth::subject::session_name;
use stsvend::sts::policy::{bound_to_source_network, logstore_policy, parse_logstores};

use crate::helpers::{
    Answer, JWT_SECRET, LogCapture, MockSts, Reply, TestApp, assert_logged_denial, bearer,
    hs256_jwt, max_in_window,
};

/// The shared token's session name (the default `role_session_name`).
const SHARED: &str = "stsvend";

const LOGSTORE_POLICY: &str = r#"{"Version":"1","Statement":[{"Effect":"Allow","Action":"log:PostLogStoreLogs","Resource":["acs:log:*:*:project/my-proj/logstore/web-log"]}]}"#;

/// Request headers, name and value.
type Headers = Vec<(String, String)>;

/// A `jwt`-mode service (HS256) against `endpoint`, ready (its shared token fetched).
async fn jwt_app(endpoint: &str, extra: &[(&str, &str)]) -> TestApp {
    let mut env = vec![
        ("STSVEND_AUTH", "jwt"),
        ("STSVEND_JWT_HS256_SECRET", JWT_SECRET),
        ("STSVEND_JWT_ISSUER", crate::helpers::JWT_ISSUER),
        ("STSVEND_JWT_AUDIENCE", crate::helpers::JWT_AUDIENCE),
        ("STSVEND_LOGSTORE", "my-proj/web-log"),
    ];
    env.extend_from_slice(extra);
    let app = TestApp::builder(endpoint).env(&env).start().await;
    app.wait_ready().await;
    app
}

fn as_user(subject: &str) -> Headers {
    vec![bearer(&hs256_jwt(subject))]
}

/// What STS accepts as a `RoleSessionName`, and what stsvend promises: `[A-Za-z0-9.@_-]{2,32}`.
fn acceptable_session_name(name: &str) -> bool {
    (2..=32).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '@' | '_' | '-'))
}

/// How many calls STS saw per `RoleSessionName`.
fn calls_by_session(requests: &[HashMap<String, String>]) -> HashMap<String, usize> {
    let mut counts = HashMap::new();
    for params in requests {
        *counts.entry(params["RoleSessionName"].clone()).or_default() += 1;
    }
    counts
}

#[tokio::test]
async fn each_subject_gets_a_token_under_its_own_session_name_even_for_hostile_subjects() {
    let mock = MockSts::start(vec![]).await;
    let app = jwt_app(&mock.endpoint(), &[]).await;
    let long = "x".repeat(500);
    // (subject, whether it is used as it is)
    let subjects = [
        ("oA1b2C3d-wx_openid", true),
        ("user@example.com", true),
        ("a b", false),
        ("a-b", true),
        ("用户一", false),
        ("用户二", false),
        (long.as_str(), false),
        ("../../etc/passwd", false),
        ("../", false),
        ("x", false),
    ];
    let mut served = Vec::new();
    for (subject, kept) in &subjects {
        let answer = app.get_with("/get_sts_token", &as_user(subject)).await;
        assert_eq!(answer.status, 200, "{subject:.40}: {}", answer.body);
        served.push(answer.access_key_id().unwrap());
        let requests = mock.requests();
        let sent = &requests.last().unwrap()["RoleSessionName"];
        assert_eq!(*sent, session_name(subject), "{subject:.40}");
        assert!(acceptable_session_name(sent), "{subject:.40} -> {sent:?}");
        assert_eq!(sent == subject, *kept, "{subject:.40} -> {sent:?}");
        assert_eq!(
            requests.last().unwrap()["Policy"],
            LOGSTORE_POLICY,
            "per-user tokens keep the profile's policy"
        );
    }
    let names: HashSet<String> = mock.requests()[1..]
        .iter()
        .map(|p| p["RoleSessionName"].clone())
        .collect();
    assert_eq!(
        names.len(),
        subjects.len(),
        "distinct subjects, distinct names"
    );
    // The token served is the one STS issued for that subject (calls were one at a time).
    let issued: Vec<String> = mock.issued()[1..]
        .iter()
        .map(|i| i.access_key_id.clone())
        .collect();
    assert_eq!(served, issued);
}

#[tokio::test]
async fn one_user_costs_one_sts_call_and_m_users_cost_m_calls_and_never_get_the_guest_token() {
    let mock = MockSts::start(vec![]).await;
    let app = jwt_app(&mock.endpoint(), &[]).await;
    let guest = mock.issued()[0].access_key_id.clone();

    // N requests of one user, one after another and then all at once: one STS call.
    let mut keys = HashSet::new();
    for _ in 0..10 {
        let answer = app.get_with("/get_sts_token", &as_user("carol")).await;
        assert_eq!(answer.status, 200, "{}", answer.body);
        keys.insert(answer.access_key_id().unwrap());
    }
    let at_once = app
        .get_all("/get_sts_token", vec![as_user("carol"); 10])
        .await;
    for answer in &at_once {
        assert_eq!(answer.status, 200, "{}", answer.body);
        keys.insert(answer.access_key_id().unwrap());
    }
    assert_eq!(keys.len(), 1, "every request of carol gets the same token");
    assert_eq!(mock.calls(), 2, "the shared token and carol's");

    // M users, three requests each, all at once (a new user's first requests share one call).
    let users: Vec<String> = (0..8).map(|i| format!("user-{i}")).collect();
    let requests: Vec<Headers> = users
        .iter()
        .flat_map(|user| std::iter::repeat_n(as_user(user), 3))
        .collect();
    let answers = app.get_all("/get_sts_token", requests).await;
    let mut per_user: HashMap<&str, HashSet<String>> = HashMap::new();
    for (i, answer) in answers.iter().enumerate() {
        assert_eq!(answer.status, 200, "{}", answer.body);
        per_user
            .entry(users[i / 3].as_str())
            .or_default()
            .insert(answer.access_key_id().unwrap());
    }
    let calls = calls_by_session(&mock.requests());
    for user in &users {
        assert_eq!(per_user[user.as_str()].len(), 1, "{user}: one token");
        assert_eq!(calls.get(user.as_str()), Some(&1), "{user}: one STS call");
    }
    let distinct: HashSet<&String> = per_user.values().flatten().collect();
    assert_eq!(
        distinct.len(),
        users.len(),
        "M users, M distinct AccessKeyIds"
    );
    assert_eq!(mock.calls(), 2 + users.len());
    assert!(!keys.contains(&guest) && !distinct.contains(&guest));
    assert_eq!(calls[SHARED], 1, "the guest token exists (for /readyz) …");
    let anonymous = app.get_with("/get_sts_token", &[]).await;
    assert_eq!(anonymous.status, 401, "… but is never served in jwt mode");
    assert!(!anonymous.mentions(&guest));
}

/// Answers to `users` distinct new users asking at once, while `cached` users (with tokens
/// already) keep asking every 100 ms until the new users are done.
async fn crowd_of_new_users(
    app: &TestApp,
    users: usize,
    cached: &[(String, String)],
) -> (Vec<Answer>, Vec<(String, Answer)>) {
    let crowd: Vec<Headers> = (0..users)
        .map(|i| as_user(&format!("new-user-{i:02}")))
        .collect();
    let meanwhile = async {
        let mut answers = Vec::new();
        for round in 0..15 {
            let (user, key) = &cached[round % cached.len()];
            answers.push((
                key.clone(),
                app.get_with("/get_sts_token", &as_user(user)).await,
            ));
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        answers
    };
    tokio::join!(app.get_all("/get_sts_token", crowd), meanwhile)
}

#[tokio::test]
async fn a_crowd_of_new_users_never_spends_more_than_the_sts_budget_and_cached_users_are_served() {
    const BUDGET: f64 = 5.0;
    let (logs, _guard) = LogCapture::start();
    let mock = MockSts::start(vec![]).await;
    // The per-network new-token limit (issue 13) would refuse part of this crowd from one
    // address first; this test is about the budget.
    let app = jwt_app(
        &mock.endpoint(),
        &[
            ("STSVEND_STS_BUDGET_PER_SECOND", "5"),
            ("STSVEND_NEW_TOKENS_PER_NETWORK_PER_MINUTE", "1000000"),
        ],
    )
    .await;
    let mut cached = Vec::new();
    for user in ["regular-1", "regular-2"] {
        let answer = app.get_with("/get_sts_token", &as_user(user)).await;
        assert_eq!(answer.status, 200, "{}", answer.body);
        cached.push((user.to_owned(), answer.access_key_id().unwrap()));
    }
    let calls_before = mock.calls();
    let started = Instant::now();
    let (crowd, meanwhile) = crowd_of_new_users(&app, 30, &cached).await;
    let elapsed = started.elapsed();

    let mut admitted = 0;
    for answer in &crowd {
        match answer.status {
            200 => admitted += 1,
            503 => {
                assert_eq!(answer.error_code().as_deref(), Some("sts_unavailable"));
                let retry: u64 = answer
                    .header("retry-after")
                    .and_then(|v| v.parse().ok())
                    .expect("a 503 carries Retry-After in seconds");
                assert!((1..=60).contains(&retry), "Retry-After {retry}");
            }
            other => panic!("status {other}: {}", answer.body),
        }
        assert_logged_denial(&logs, answer, "no token available", "127.0.0.1");
    }
    assert_eq!(
        mock.calls() - calls_before,
        admitted,
        "an STS call for every admitted new user, none for a refused one"
    );
    assert!(
        admitted >= 5,
        "at least a full burst is admitted: {admitted}"
    );
    assert!(
        admitted < 30,
        "30 new users at 5/s within the 2 s wait cannot all be served"
    );
    for (key, answer) in &meanwhile {
        assert_eq!(
            answer.status, 200,
            "cached users are served: {}",
            answer.body
        );
        assert_eq!(answer.access_key_id().as_ref(), Some(key), "from the cache");
    }
    // The budget is a token bucket of 5 a second with a burst of 5: over any stretch of time T,
    // at most 5 + 5·T calls (one call of slack for timing at the mock).
    let times = {
        let mut times = mock.call_times();
        times.sort();
        times
    };
    for (i, first) in times.iter().enumerate() {
        for (j, last) in times.iter().enumerate().skip(i) {
            let span = last.duration_since(*first).as_secs_f64();
            let allowed = BUDGET + BUDGET * span + 1.0;
            assert!(
                (j - i + 1) as f64 <= allowed,
                "{} calls within {span:.3} s; the budget allows {allowed:.1}",
                j - i + 1
            );
        }
    }
    println!(
        "budget: {admitted}/30 new users admitted in {elapsed:?}; busiest second saw {} calls",
        max_in_window(&times, Duration::from_secs(1))
    );
}

#[tokio::test]
async fn no_one_second_window_sees_more_assume_role_calls_than_the_budget_per_second() {
    let mock = MockSts::start(vec![]).await;
    let app = jwt_app(
        &mock.endpoint(),
        &[
            ("STSVEND_STS_BUDGET_PER_SECOND", "5"),
            ("STSVEND_NEW_TOKENS_PER_NETWORK_PER_MINUTE", "1000000"),
        ],
    )
    .await;
    let crowd: Vec<Headers> = (0..30).map(|i| as_user(&format!("crowd-{i:02}"))).collect();
    let answers = app.get_all("/get_sts_token", crowd).await;
    assert!(answers.iter().all(|a| a.status == 200 || a.status == 503));
    let busiest = max_in_window(&mock.call_times(), Duration::from_secs(1));
    assert!(
        busiest <= 5 + 1,
        "STSVEND_STS_BUDGET_PER_SECOND=5, yet STS saw {busiest} AssumeRole calls within one second"
    );
}

#[tokio::test]
async fn a_refusal_that_will_not_fix_itself_is_remembered_instead_of_asked_again() {
    // The shared token succeeds; every call after it is refused.
    let mock = MockSts::start(vec![Reply::Success { lifetime: 3600 }]).await;
    mock.set_fallback(Reply::error(403, "NoPermission"));
    let app = jwt_app(&mock.endpoint(), &[]).await;
    assert_eq!(mock.calls(), 1);

    let first = app.get_with("/get_sts_token", &as_user("first-user")).await;
    let check = |answer: &Answer, who: &str| {
        assert_eq!(answer.status, 502, "{who}: {}", answer.body);
        assert_eq!(
            answer.error_code().as_deref(),
            Some("sts_rejected"),
            "{who}"
        );
        let retry: u64 = answer
            .header("retry-after")
            .and_then(|v| v.parse().ok())
            .expect("Retry-After in seconds");
        assert!((1..=61).contains(&retry), "{who}: Retry-After {retry}");
    };
    check(&first, "first user");
    assert_eq!(mock.calls(), 2, "the first user's call was refused");

    let crowd: Vec<Headers> = (0..20)
        .map(|i| as_user(&format!("later-user-{i}")))
        .collect();
    for (i, answer) in app
        .get_all("/get_sts_token", crowd)
        .await
        .iter()
        .enumerate()
    {
        check(answer, &format!("later user {i}"));
    }
    assert_eq!(
        app.get_with("/get_sts_token", &as_user("first-user"))
            .await
            .status,
        502
    );
    assert_eq!(
        mock.calls(),
        2,
        "the refusal is remembered: no further STS calls"
    );
}

#[tokio::test]
async fn users_with_a_cached_token_keep_it_while_new_users_are_refused() {
    let mock = MockSts::start(vec![]).await;
    let app = jwt_app(&mock.endpoint(), &[]).await;
    let before = app.get_with("/get_sts_token", &as_user("early-bird")).await;
    assert_eq!(before.status, 200);
    // The role's trust policy changes: from now on STS refuses.
    mock.set_fallback(Reply::error(403, "NoPermission"));
    let refused = app.get_with("/get_sts_token", &as_user("newcomer")).await;
    assert_eq!(refused.status, 502, "{}", refused.body);
    // early-bird's token was issued before and is valid for an hour; refusing new tokens must
    // not take it away (no STS call is needed to serve it).
    let after = app.get_with("/get_sts_token", &as_user("early-bird")).await;
    assert_eq!(after.status, 200, "{}", after.body);
    assert_eq!(after.access_key_id(), before.access_key_id());
    assert_eq!(mock.calls(), 3);
}

/// The `Policy` STS received for each call bound to an address, by that address.
fn bound_policies(requests: &[HashMap<String, String>]) -> Vec<(String, String)> {
    requests
        .iter()
        .filter_map(|params| {
            let policy = params.get("Policy")?;
            let doc: Value = serde_json::from_str(policy).expect("the policy is JSON");
            let ip = doc["Statement"]
                .as_array()?
                .iter()
                .find_map(|s| s.pointer("/Condition/NotIpAddress/acs:SourceIp"))?
                .as_str()?
                .to_owned();
            Some((ip, policy.clone()))
        })
        .collect()
}

#[tokio::test]
async fn source_ip_binding_denies_every_other_address_in_the_policy_sts_receives() {
    let mock = MockSts::start(vec![]).await;
    let app = TestApp::builder(&mock.endpoint())
        .env(&[
            ("STSVEND_LOGSTORE", "my-proj/web-log"),
            ("STSVEND_BIND_SOURCE_IP", "true"),
            ("STSVEND_TRUSTED_PROXIES", "127.0.0.1/32"),
        ])
        .start()
        .await;
    app.wait_ready().await;
    assert_eq!(
        mock.requests()[0]["Policy"],
        LOGSTORE_POLICY,
        "the shared token"
    );
    let guest = mock.issued()[0].access_key_id.clone();
    let from = |ip: &str| vec![("x-forwarded-for".to_owned(), ip.to_owned())];
    // (client, headers, the address STS must see)
    let cases = [
        ("direct", vec![], "127.0.0.1"),
        ("behind the proxy", from("198.51.100.7"), "198.51.100.7"),
        ("again, same address", from("198.51.100.7"), "198.51.100.7"),
        (
            "spoofed left hop",
            from("6.6.6.6, 198.51.100.7"),
            "198.51.100.7",
        ),
        ("another address", from("203.0.113.9"), "203.0.113.9"),
        // An IPv6 caller is its /64 (issue 13): the token allows the whole prefix.
        ("IPv6", from("2001:db8::1"), "2001:db8::/64"),
        ("IPv6, same /64", from("2001:db8::2"), "2001:db8::/64"),
    ];
    let mut keys: HashMap<&str, String> = HashMap::new();
    for (case, headers, ip) in &cases {
        let answer = app.get_with("/get_sts_token", headers).await;
        assert_eq!(answer.status, 200, "{case}: {}", answer.body);
        let key = answer.access_key_id().unwrap();
        assert_ne!(key, guest, "{case}: a bound token, not the shared one");
        let known = keys.entry(ip).or_insert_with(|| key.clone());
        assert_eq!(*known, key, "{case}: one token per address");
    }
    let bound = bound_policies(&mock.requests());
    let ips: Vec<&str> = bound.iter().map(|(ip, _)| ip.as_str()).collect();
    assert_eq!(
        ips,
        ["127.0.0.1", "198.51.100.7", "203.0.113.9", "2001:db8::/64"],
        "one STS call per address, none for a repeat"
    );
    let stores = parse_logstores("my-proj/web-log").unwrap();
    let base = logstore_policy(&stores).unwrap();
    for (ip, policy) in &bound {
        assert_eq!(
            *policy,
            bound_to_source_network(
                Some(&base),
                ip.parse().unwrap_or_else(|_| {
                    ipnet::IpNet::from(ip.parse::<std::net::IpAddr>().unwrap())
                })
            )
            .unwrap()
        );
    }
    // Spelled out once, independently of the code under test.
    assert_eq!(
        bound[1].1,
        r#"{"Version":"1","Statement":[{"Effect":"Allow","Action":"log:PostLogStoreLogs","Resource":["acs:log:*:*:project/my-proj/logstore/web-log"]},{"Effect":"Deny","Action":"*","Resource":"*","Condition":{"NotIpAddress":{"acs:SourceIp":"198.51.100.7"}}}]}"#
    );
    assert_eq!(mock.calls(), 1 + 4);
}

#[tokio::test]
async fn without_trusted_proxies_a_bound_token_names_the_socket_address_whatever_the_headers_say() {
    let mock = MockSts::start(vec![]).await;
    let app = TestApp::builder(&mock.endpoint())
        .env(&[
            ("STSVEND_LOGSTORE", "my-proj/web-log"),
            ("STSVEND_BIND_SOURCE_IP", "true"),
        ])
        .start()
        .await;
    app.wait_ready().await;
    for spoof in ["198.51.100.7", "203.0.113.9"] {
        let headers = vec![
            ("x-forwarded-for".to_owned(), spoof.to_owned()),
            ("x-real-ip".to_owned(), spoof.to_owned()),
        ];
        assert_eq!(app.get_with("/get_sts_token", &headers).await.status, 200);
    }
    let ips: Vec<String> = bound_policies(&mock.requests())
        .into_iter()
        .map(|(ip, _)| ip)
        .collect();
    assert_eq!(ips, ["127.0.0.1"]);
}
