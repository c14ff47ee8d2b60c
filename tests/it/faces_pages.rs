//! What the pages are served with, over plain HTTP: everything from the host itself (no CDN),
//! and the console's endpoints behind the admin token.

use crate::faces_browser::web_dir;
use crate::support::{Endpoint, Player, http, matched_pair, server};

async fn get(server: &impl Endpoint, path: &str) -> (u16, String, String) {
    let response = reqwest::get(format!("{}{path}", server.url()))
        .await
        .unwrap();
    let status = response.status().as_u16();
    let kind = response
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    (status, kind, response.text().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_page_and_what_it_loads_comes_from_the_host_itself() {
    let server = server(|config| config.web_dir = Some(web_dir())).await;
    for (path, script) in [
        ("/", "/assets/game.js"),
        ("/play", "/assets/play.js"),
        ("/console", "/assets/console.js"),
    ] {
        let (status, kind, page) = get(&server, path).await;
        assert_eq!(status, 200, "{path}");
        assert!(kind.starts_with("text/html"), "{path}: {kind}");
        assert!(page.contains(script), "{path} loads {script}");
        assert!(
            !page.contains("https://"),
            "{path} loads nothing from elsewhere"
        );
        let (status, kind, _) = get(&server, script).await;
        assert_eq!(status, 200, "{script}");
        assert!(kind.contains("javascript"), "{script}: {kind}");
    }
    let (status, _, client) = get(&server, "/vendor/socket.io.min.js").await;
    assert_eq!(status, 200);
    assert!(
        client.contains("Socket.IO v4.8.1"),
        "the official client, as npm pins it"
    );

    // The Admin UI's page, with its icon font served here instead of from a CDN.
    let (status, _, page) = get(&server, "/admin-ui/").await;
    assert_eq!(status, 200);
    assert!(page.contains("Socket.IO Admin UI"));
    assert!(!page.contains("https://"), "no CDN link is left: {page}");
    assert!(page.contains("/vendor/mdi/css/materialdesignicons.min.css"));
    let (status, _, css) = get(&server, "/vendor/mdi/css/materialdesignicons.min.css").await;
    assert_eq!(status, 200);
    assert!(css.contains("../fonts/materialdesignicons-webfont.woff2"));
    let (status, kind, _) = get(
        &server,
        "/vendor/mdi/fonts/materialdesignicons-webfont.woff2",
    )
    .await;
    assert_eq!((status, kind.as_str()), (200, "font/woff2"));
    for asset in page
        .split('"')
        .filter(|part| part.starts_with("js/") || part.starts_with("css/"))
    {
        let (status, _, _) = get(&server, &format!("/admin-ui/{asset}")).await;
        assert_eq!(status, 200, "/admin-ui/{asset}");
    }

    let (status, _, hint) = get(&server, "/no-such-page").await;
    assert_eq!(status, 404);
    assert!(
        hint.contains("/play"),
        "a 404 says where the pages are: {hint}"
    );
    server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_reads_the_fleet_only_with_the_admin_token() {
    let server = server(|config| config.admin_token = Some("console-token".into())).await;
    let (_a, _b, room) = matched_pair(&server, 4).await;
    let waiting = Player::connect(&server).await;
    waiting
        .request("joinMatchmaking", serde_json::json!({ "level": 9 }))
        .await;

    for token in [None, Some("wrong")] {
        let (status, body) = http(&server, "GET", "/console/overview", token).await;
        assert_eq!(status, 401, "{token:?}: {body}");
        assert!(!body.to_string().contains(&room));
        let (status, _) = http(&server, "GET", &format!("/console/matches/{room}"), token).await;
        assert_eq!(status, 401);
    }

    let (status, overview) = http(&server, "GET", "/console/overview", Some("console-token")).await;
    assert_eq!(status, 200, "{overview}");
    let instances = overview["instances"].as_array().unwrap();
    assert_eq!(instances.len(), 1);
    assert_eq!(instances[0]["sockets"], 3);
    assert_eq!(instances[0]["self"], true);
    assert!(instances[0]["uptimeSeconds"].is_u64());
    let listed = &overview["matches"]["listed"][0];
    assert_eq!(listed["roomId"], room.as_str());
    assert_eq!(listed["game"], "wizard-battle");
    assert_eq!(listed["players"].as_array().unwrap().len(), 2);
    assert_eq!(
        overview["queues"],
        serde_json::json!([{ "game": "wizard-battle", "mode": "default", "level": 9, "players": 1 }])
    );
    let active = overview["rules"]["games"]["wizard-battle"]["active"].clone();
    assert_eq!(listed["version"], active);
    assert_eq!(instances[0]["code"][active.as_str().unwrap()], "optimized");

    let (status, stored) = http(
        &server,
        "GET",
        &format!("/console/matches/{room}"),
        Some("console-token"),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(stored["roomId"], room.as_str());
    assert!(
        stored["gameData"]["game"]["wizards"].is_array(),
        "the full rules state: {stored}"
    );
    let (status, _) = http(
        &server,
        "GET",
        "/console/matches/nope",
        Some("console-token"),
    )
    .await;
    assert_eq!(status, 404);
    server.shutdown().await.unwrap();
}
