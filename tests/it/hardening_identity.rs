//! Knowing a player's id grants nothing: the id others see is never a transport session id. And
//! what a client sends before it is told it is connected is not lost.

use crate::raw::{self, Polling};
use crate::support::{Player, seated, server, settle};
use futures_util::SinkExt;
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;

const LIGHTNING: &str = r#"{"spell":"lightning","target":{"x":0,"y":0}}"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_players_id_opens_no_polling_session() {
    let server = server(|_| {}).await;
    // The victim polls only, as a client whose upgrade failed does.
    let mut victim = Polling::open(server.addr()).await;
    let victim_id = victim.connect().await;
    assert_ne!(
        victim_id, victim.sid,
        "the socket id others see is not the session id"
    );
    let session = victim.next_event("session").await;
    assert_eq!(session["socketId"], victim_id.as_str());
    assert_eq!(session["playerId"], victim_id.as_str());

    victim.send(&[r#"42["joinMatchmaking",{"level":1}]"#]).await;
    let rival = Player::connect(&server).await;
    let room = rival
        .request("joinMatchmaking", json!({ "level": 1 }))
        .await;
    let room = room.as_str().unwrap().to_string();
    let found = rival.next("matchFound").await;
    let seen = seated(&found);
    assert!(
        seen.contains(&victim_id.as_str()),
        "the rival learns {seen:?}"
    );
    assert_eq!(
        victim.next_event("matchFound").await["roomId"],
        room.as_str()
    );

    // The rival, knowing the victim's id, tries its transport session every way there is.
    let forged_action = format!(r#"42["submitAction",{{"roomId":"{room}","action":{LIGHTNING}}}]"#);
    let forged_chat = format!(r#"42["gameMessage",{{"roomId":"{room}","message":"I give up"}}]"#);
    for forged in [&forged_action, &forged_chat] {
        let (status, body) = victim.post_as(&victim_id, forged).await;
        assert_eq!(status, 400, "POST as the victim: {body}");
        assert!(body.contains("Session ID unknown"), "{body}");
    }
    let (status, body) = victim.get_as(&victim_id).await;
    assert_eq!(status, 400, "GET as the victim: {body}");
    let upgrade = format!(
        "ws://{}/socket.io/?EIO=4&transport=websocket&sid={victim_id}",
        server.addr()
    );
    assert!(
        tokio_tungstenite::connect_async(upgrade).await.is_err(),
        "no websocket takes the victim's session over"
    );

    // Nothing of it happened, and the victim plays on in its own session.
    settle().await;
    assert_eq!(rival.count("gameMessage"), 0, "no forged chat");
    assert!(
        rival
            .received("gameEvent")
            .iter()
            .all(|e| e["event"]["player"] != victim_id.as_str()),
        "no forged action"
    );
    victim
        .send(&[&format!(
            r#"42["submitAction",{{"roomId":"{room}","action":{LIGHTNING}}}]"#
        )])
        .await;
    let answer = victim.next_event("actionResult").await;
    assert_eq!(answer["success"], true, "{answer}");
    let submitted = rival
        .first_where("gameEvent", |e| e["event"]["type"] == "submitted")
        .await;
    assert_eq!(submitted["event"]["player"], victim_id.as_str());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upgrade_in_the_players_own_session_still_works() {
    let server = server(|_| {}).await;
    let mut client = Polling::open(server.addr()).await;
    let id = client.connect().await;
    let upgrade = format!(
        "ws://{}/socket.io/?EIO=4&transport=websocket&sid={}",
        server.addr(),
        client.sid
    );
    let (mut ws, _) = tokio_tungstenite::connect_async(upgrade).await.unwrap();
    ws.send(Message::text("2probe")).await.unwrap();
    assert_eq!(raw::next_text(&mut ws).await.as_deref(), Some("3probe"));
    ws.send(Message::text("5")).await.unwrap();
    ws.send(Message::text(r#"42["joinMatchmaking",{"level":4}]"#))
        .await
        .unwrap();
    let (event, payload) = raw::next_event(&mut ws).await.unwrap();
    // `session` was queued on the polling side before the upgrade; `waiting` comes after.
    let waiting = if event == "waiting" {
        payload
    } else {
        raw::next_event(&mut ws).await.unwrap().1
    };
    assert_eq!(waiting["message"], "Waiting for a match...", "{id}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_sent_with_the_connect_are_handled_not_fatal() {
    let server = server(|_| {}).await;
    // Websocket: the connect and an event in one burst, many times over (before, 999 in 1,000
    // such connections were closed).
    let mut open = Vec::new();
    for attempt in 0..100 {
        let mut ws = raw::websocket(server.addr()).await;
        let join = format!(r#"42["joinMatchmaking",{{"level":{}}}]"#, 1_000 + attempt);
        let burst = [Message::text("40"), Message::text(join)];
        let mut burst = futures_util::stream::iter(burst.map(Ok));
        ws.send_all(&mut burst).await.unwrap();
        let connected = raw::next_text(&mut ws).await;
        assert!(
            connected.as_deref().is_some_and(|t| t.starts_with("40{")),
            "attempt {attempt}: {connected:?}"
        );
        let mut names = Vec::new();
        while names.len() < 2 {
            let (name, _) = raw::next_event(&mut ws)
                .await
                .unwrap_or_else(|| panic!("attempt {attempt}: closed after {names:?}"));
            names.push(name);
        }
        assert_eq!(names, ["session", "waiting"], "attempt {attempt}");
        open.push(ws);
    }
    // Long-polling: both packets in one POST.
    let mut polling = Polling::open(server.addr()).await;
    polling
        .send(&["40", r#"42["joinMatchmaking",{"level":999}]"#])
        .await;
    assert_eq!(
        polling.next_event("waiting").await["message"],
        "Waiting for a match..."
    );
    let (_, health) = crate::support::http(&server, "GET", "/health", None).await;
    assert_eq!(
        health["details"]["matchmakingData"], 101,
        "every join was queued"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leaving_the_queue_needs_no_payload() {
    let server = server(|_| {}).await;
    let player = Player::connect(&server).await;
    player
        .request("joinMatchmaking", json!({ "level": 3 }))
        .await;
    let answer = player.request_bare("leaveMatchmaking").await;
    assert_eq!(answer, json!({ "success": true, "left": true }));
    // Without an acknowledgement too, as the original's clients send it.
    player
        .request("joinMatchmaking", json!({ "level": 3 }))
        .await;
    player.emit_bare("leaveMatchmaking").await;
    assert_eq!(
        player.next("matchmakingLeft").await,
        json!({ "success": true, "left": true })
    );
    let (_, health) = crate::support::http(&server, "GET", "/health", None).await;
    assert_eq!(health["details"]["matchmakingData"], 0);
    assert_eq!(player.count("serverError"), 0);
}
