//! Every layer has its limit: connections in all and per address, the time to send headers, the
//! size of a websocket message, admin credentials before a body, module names and compile cost.

use crate::cluster_support::HostProcess;
use crate::raw;
use crate::support::{Endpoint, PATIENCE, Player, activate, http, module_bytes, server, upload};
use futures_util::SinkExt;
use serde_json::{Value, json};
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::tungstenite::Message;

/// A TCP connection to `server` from the loopback address `from` (127.x.y.z).
async fn connect_from(from: [u8; 4], server: SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(SocketAddr::from((from, 0))).unwrap();
    socket.connect(server).await.unwrap()
}

/// Everything the server sends until it closes the connection (panics if it never does).
async fn until_closed(stream: &mut (impl AsyncReadExt + Unpin)) -> String {
    let mut received = Vec::new();
    let mut chunk = [0u8; 4096];
    let read_all = async {
        loop {
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => received.extend_from_slice(&chunk[..n]),
            }
        }
    };
    tokio::time::timeout(PATIENCE, read_all)
        .await
        .expect("the server closes the connection");
    String::from_utf8_lossy(&received).into_owned()
}

/// The status line of the answer to a request whose body was never sent.
async fn status_line(stream: &mut TcpStream) -> String {
    let mut received = Vec::new();
    let mut byte = [0u8; 1];
    let read_line = async {
        while !received.ends_with(b"\r\n") {
            if stream.read(&mut byte).await.unwrap_or(0) == 0 {
                return;
            }
            received.push(byte[0]);
        }
    };
    tokio::time::timeout(PATIENCE, read_line)
        .await
        .expect("an answer without the body");
    String::from_utf8_lossy(&received).trim_end().to_string()
}

/// An honest client from 127.0.0.1 is served, over HTTP and Socket.IO.
async fn serves_honest_clients(server: &impl Endpoint) {
    let (status, _) = http(server, "GET", "/health/live", None).await;
    assert_eq!(status, 200);
    let player = Player::connect(server).await;
    let answer = player
        .request("joinMatchmaking", json!({ "level": 1 }))
        .await;
    assert_eq!(answer, Value::Null);
}

/// Starts sending a request's headers and goes on a byte every 100 ms; returns the reading half.
async fn trickle(from: [u8; 4], server: SocketAddr) -> tokio::net::tcp::OwnedReadHalf {
    let (read, mut write) = connect_from(from, server).await.into_split();
    tokio::spawn(async move {
        let _ = write
            .write_all(b"GET /health/live HTTP/1.1\r\nHost: x\r\n")
            .await;
        while write.write_all(b"X").await.is_ok() {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    read
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_address_cannot_take_every_connection_and_slow_headers_are_cut_off() {
    let server = server(|c| {
        c.connection_limits.max_per_address = 10;
        c.connection_limits.header_read_timeout = Duration::from_secs(1);
    })
    .await;
    let attacker = [127, 0, 0, 2];
    let mut held = Vec::new();
    for _ in 0..10 {
        held.push(trickle(attacker, server.addr()).await);
    }
    // The eleventh from that address is closed as it arrives, unanswered.
    let mut eleventh = connect_from(attacker, server.addr()).await;
    let _ = eleventh
        .write_all(b"GET /health/live HTTP/1.1\r\nHost: x\r\n\r\n")
        .await;
    assert_eq!(until_closed(&mut eleventh).await, "");

    // Meanwhile honest clients are served.
    serves_honest_clients(&server).await;

    // The tricklers never finish their headers: each is disconnected, unanswered.
    for mut connection in held {
        let answer = until_closed(&mut connection).await;
        assert!(!answer.contains("200 OK"), "{answer}");
    }
    // Their places came back.
    let mut again = connect_from(attacker, server.addr()).await;
    again
        .write_all(b"GET /health/live HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    assert!(until_closed(&mut again).await.starts_with("HTTP/1.1 200"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_total_is_capped_and_freed_by_the_header_deadline() {
    let server = server(|c| {
        c.connection_limits.max_connections = 20;
        c.connection_limits.max_per_address = 0;
        c.connection_limits.header_read_timeout = Duration::from_secs(1);
    })
    .await;
    let mut held = Vec::new();
    for i in 0..20u8 {
        held.push(trickle([127, 0, 1, 1 + i % 4], server.addr()).await);
    }
    let mut over = connect_from([127, 0, 2, 1], server.addr()).await;
    assert_eq!(until_closed(&mut over).await, "", "one over the limit");
    for mut connection in held {
        until_closed(&mut connection).await;
    }
    let (status, _) = http(&server, "GET", "/health/live", None).await;
    assert_eq!(status, 200, "served again once the slow ones were cut off");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_process_out_of_descriptors_still_serves_honest_clients() {
    // As found: 520 trickling connections against a limit of 512 open files took every
    // descriptor, and nobody else was served.
    let host = HostProcess::standalone_with_open_files(512, &[]).await;
    let addr = host.addr();
    let mut held = Vec::new();
    for _ in 0..520 {
        held.push(trickle([127, 0, 0, 2], addr).await);
    }
    serves_honest_clients(&host).await;
    drop(held);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_is_refused_before_its_body_is_read() {
    let server = server(|c| c.admin_token = Some("s3cret".into())).await;
    let head = |authorization: &str| {
        format!(
            "POST /rules/wizard-battle HTTP/1.1\r\nHost: x\r\n{authorization}\
             Content-Type: application/wasm\r\nContent-Length: {}\r\n\r\n",
            32 << 20
        )
    };
    // No body follows the head: an answer proves the server did not wait for one.
    let mut anonymous = TcpStream::connect(server.addr()).await.unwrap();
    anonymous.write_all(head("").as_bytes()).await.unwrap();
    assert_eq!(
        status_line(&mut anonymous).await,
        "HTTP/1.1 401 Unauthorized"
    );
    // And the connection is let go, not kept for the body.
    until_closed(&mut anonymous).await;

    let mut wrong = TcpStream::connect(server.addr()).await.unwrap();
    let wrong_head = head("Authorization: Bearer guess\r\n");
    wrong.write_all(wrong_head.as_bytes()).await.unwrap();
    assert_eq!(status_line(&mut wrong).await, "HTTP/1.1 401 Unauthorized");

    // With the token, a body larger than a module may be is refused from its announced length.
    let mut admin = TcpStream::connect(server.addr()).await.unwrap();
    let admin_head = head("Authorization: Bearer s3cret\r\n");
    admin.write_all(admin_head.as_bytes()).await.unwrap();
    assert_eq!(
        status_line(&mut admin).await,
        "HTTP/1.1 413 Payload Too Large"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_huge_websocket_message_closes_its_connection_unread() {
    let host = HostProcess::standalone(&[]).await;
    let addr = host.addr();
    let bystander = Player::connect(&host).await;
    let mut ws = raw::websocket(addr).await;
    ws.send(Message::text("40")).await.unwrap();
    let (event, _) = raw::next_event(&mut ws).await.unwrap();
    assert_eq!(event, "session");
    let before = host.rss_kib();

    let huge = format!(
        r#"42["gameMessage",{{"roomId":"r","message":"{}"}}]"#,
        "x".repeat(20 << 20)
    );
    let _ = ws.send(Message::text(huge)).await;
    assert_eq!(
        raw::next_text(&mut ws).await,
        None,
        "the connection is closed"
    );

    let grown_kib = host.rss_kib().saturating_sub(before);
    assert!(
        grown_kib < 8 << 10,
        "a 20 MB message grew the server by {grown_kib} KiB"
    );
    // Everyone else is unaffected.
    let (status, _) = http(&host, "GET", "/health/live", None).await;
    assert_eq!(status, 200);
    let answer = bystander
        .request("joinMatchmaking", json!({ "level": 2 }))
        .await;
    assert_eq!(answer, Value::Null);
}

/// A valid module of `count` functions of `work` instructions pairs each (and nothing a rules
/// module needs).
fn many_functions(count: u32, work: usize) -> Vec<u8> {
    use wasm_encoder::{CodeSection, Function, FunctionSection, Instruction, Module, TypeSection};
    let mut types = TypeSection::new();
    types.ty().function([], []);
    let mut functions = FunctionSection::new();
    let mut code = CodeSection::new();
    let mut body = Function::new([]);
    for _ in 0..work {
        body.instruction(&Instruction::I32Const(1));
        body.instruction(&Instruction::Drop);
    }
    body.instruction(&Instruction::End);
    for _ in 0..count {
        functions.function(0);
        code.function(&body);
    }
    let mut module = Module::new();
    module.section(&types).section(&functions).section(&code);
    module.finish()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_module_too_costly_to_compile_is_refused_uncompiled() {
    let host = HostProcess::standalone(&[]).await;
    let before = host.rss_kib();
    let module = many_functions(200_000, 0);
    assert!(
        module.len() < 1 << 20,
        "small: its function count refuses it"
    );
    let (status, answer) = upload(&host, "wizard-battle", module, None).await;
    assert_eq!(status, 422, "{answer}");
    let error = answer["error"].as_str().unwrap();
    assert!(error.contains("200000 functions"), "{error}");
    let grown_kib = host.rss_kib().saturating_sub(before);
    assert!(
        grown_kib < 64 << 10,
        "refusing it grew the server by {grown_kib} KiB"
    );

    // One within both limits is compiled (and refused, for it is no rules module): the
    // compiler's memory is handed back after.
    let big = many_functions(19_000, 120);
    assert!(big.len() > 4 << 20, "{} bytes", big.len());
    let before = host.rss_kib();
    let (status, answer) = upload(&host, "wizard-battle", big, None).await;
    assert_eq!(status, 422, "{answer}");
    let grown_kib = host.rss_kib().saturating_sub(before);
    // Without handing it back: about 80 MiB more (debug build).
    assert!(
        grown_kib < 32 << 10,
        "compiling it grew the server by {grown_kib} KiB"
    );
    // Wizard battle itself is well within both limits.
    let (status, answer) = upload(
        &host,
        "wizard-battle",
        module_bytes("rules", "wizard-battle"),
        None,
    )
    .await;
    assert_eq!(status, 200, "{answer}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_game_name_is_a_plain_word() {
    let server = server(|_| {}).await;
    let bytes = module_bytes("rules", "wizard-battle");
    for name in ["..%2F..%2Ftmp%2Fpwn", "Wizard", "a%20b", "-x"] {
        let (status, answer) = upload(&server, name, bytes.clone(), None).await;
        assert_eq!(status, 400, "{name}: {answer}");
        assert!(
            answer["error"]
                .as_str()
                .unwrap()
                .contains("not a game name"),
            "{answer}"
        );
    }
    let (_, rules) = http(&server, "GET", "/rules", None).await;
    let games: Vec<&String> = rules["games"].as_object().unwrap().keys().collect();
    assert_eq!(
        games,
        ["liars-dice", "wizard-battle"],
        "the bundled games, nothing relabelled"
    );
    let active = rules["games"]["wizard-battle"]["active"].clone();
    assert!(active.is_string(), "{rules}");
    let (status, answer) = activate(&server, "wizard-battle", active.as_str().unwrap()).await;
    assert_eq!(status, 200, "{answer}");
}
