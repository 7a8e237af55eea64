//! `examples/idp_api.rs` run in process: its self-test (the provider on loopback, the
//! API fetching its keys by discovery, the delegated step-up, a key rotation) passes.

#[allow(dead_code)] // the example's `main`, unused here
#[path = "../examples/idp_api.rs"]
mod example;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_idp_api_example_passes_its_self_test() {
    if let Err(error) = example::self_test().await {
        panic!("the example's self-test failed: {error}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_examples_provider_publishes_discovery_and_its_rotated_keys() {
    let demo = example::start("127.0.0.1:0").await.unwrap();
    let client = reqwest::Client::new();
    let get = |url: String| {
        let client = client.clone();
        async move {
            let res = client.get(url).send().await.unwrap();
            assert_eq!(res.status(), 200);
            res.json::<serde_json::Value>().await.unwrap()
        }
    };
    let discovery = get(format!("{}/.well-known/openid-configuration", demo.iss)).await;
    assert_eq!(discovery["issuer"], demo.iss.as_str());
    let jwks_uri = discovery["jwks_uri"].as_str().unwrap().to_owned();
    assert_eq!(jwks_uri, format!("{}/.well-known/jwks.json", demo.iss));
    let kids = |set: &serde_json::Value| -> Vec<String> {
        let keys = set["keys"].as_array().unwrap();
        keys.iter()
            .map(|k| k["kid"].as_str().unwrap().to_owned())
            .collect()
    };
    let before = kids(&get(jwks_uri.clone()).await);
    assert_eq!(before.len(), 1);
    let new_kid = demo.rotate().unwrap();
    assert_ne!(new_kid, before[0]);
    // The new key first, the retired one still published.
    assert_eq!(kids(&get(jwks_uri).await), [new_kid, before[0].clone()]);
}
