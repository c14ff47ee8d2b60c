//! The websocket gate: an event a client sends right behind its Socket.IO `connect` packet waits
//! until the server has answered that connect.
//!
//! Why: socketioxide connects a socket to a namespace in a task of its own, while the packets
//! behind the connect are handled at once; an event that arrives before the socket exists closes
//! the whole connection (`SocketGone`). A client that does not wait for the answer (a raw one,
//! or any client on a slow link whose frames arrive together) loses its connection. So this
//! wrapper of the TCP stream reads the websocket frames as they pass: once it has handed over a
//! client frame that begins `40` (connect), it hands over nothing more until the server has
//! written a frame that begins `40` (connected) or `44` (refused), or [`GATE_TIMEOUT`] has passed.
//! HTTP long-polling gets the same treatment in `transport` (it can split a request).
//!
//! The gate reads frame headers only, in both directions; it copies nothing but the bytes it
//! holds back. Anything it cannot follow (a frame it does not understand, bytes hyper read ahead
//! of the upgrade) makes it step aside for the rest of the connection: the stream then behaves
//! exactly as without it.

use super::Slot;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// The longest a client's frames wait for the answer to its connect.
const GATE_TIMEOUT: Duration = Duration::from_secs(5);

/// A Socket.IO packet the gate looks for, by the first two bytes of a text frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Packet {
    /// `40`: a client's connect, or the server's answer that it is connected.
    Connect,
    /// `44`: the server refused a connect.
    ConnectError,
}

/// Follows one direction of a websocket stream, frame by frame.
#[derive(Debug)]
enum FrameScanner {
    Header {
        bytes: [u8; 14],
        have: usize,
    },
    Payload {
        left: u64,
        seen: u64,
        mask: Option<[u8; 4]>,
        /// A whole (unfragmented) text frame: the only kind a packet is looked for in.
        text: bool,
        prefix: [u8; 2],
    },
    /// Something it did not understand: it no longer looks.
    Lost,
}

impl Default for FrameScanner {
    fn default() -> Self {
        FrameScanner::Header {
            bytes: [0; 14],
            have: 0,
        }
    }
}

impl FrameScanner {
    /// Follows `bytes`. Stops just past the end of the first frame that carries a packet the gate
    /// looks for, and returns where that is and which packet; else follows all of `bytes`.
    fn scan(&mut self, bytes: &[u8]) -> Option<(usize, Packet)> {
        let mut at = 0;
        while at < bytes.len() {
            match self {
                FrameScanner::Lost => return None,
                FrameScanner::Header {
                    bytes: header,
                    have,
                } => {
                    header[*have] = bytes[at];
                    *have += 1;
                    at += 1;
                    match parse_header(&header[..*have]) {
                        Header::Incomplete => {}
                        Header::Invalid => *self = FrameScanner::Lost,
                        Header::Complete {
                            len,
                            mask,
                            text_fin,
                        } => {
                            *self = FrameScanner::Payload {
                                left: len,
                                seen: 0,
                                mask,
                                text: text_fin,
                                prefix: [0; 2],
                            };
                            if let Some(found) = self.end_of_frame() {
                                return Some((at, found));
                            }
                        }
                    }
                }
                FrameScanner::Payload {
                    left,
                    seen,
                    mask,
                    prefix,
                    ..
                } => {
                    let take = (*left).min((bytes.len() - at) as u64) as usize;
                    for (i, byte) in bytes[at..at + take].iter().enumerate() {
                        let offset = *seen + i as u64;
                        if offset >= 2 {
                            break;
                        }
                        let key = mask.map_or(0, |m| m[(offset % 4) as usize]);
                        prefix[offset as usize] = byte ^ key;
                    }
                    *seen += take as u64;
                    *left -= take as u64;
                    at += take;
                    if let Some(found) = self.end_of_frame() {
                        return Some((at, found));
                    }
                }
            }
        }
        None
    }

    /// At the end of a frame's payload, starts on the next header; returns the packet the frame
    /// carried, if it is one the gate looks for.
    fn end_of_frame(&mut self) -> Option<Packet> {
        let FrameScanner::Payload {
            left: 0,
            seen,
            text,
            prefix,
            ..
        } = *self
        else {
            return None;
        };
        *self = FrameScanner::default();
        if !text || seen < 2 {
            return None;
        }
        match &prefix {
            b"40" => Some(Packet::Connect),
            b"44" => Some(Packet::ConnectError),
            _ => None,
        }
    }
}

enum Header {
    Incomplete,
    Invalid,
    Complete {
        len: u64,
        mask: Option<[u8; 4]>,
        text_fin: bool,
    },
}

/// Reads a frame header (RFC 6455 §5.2) from its first bytes.
fn parse_header(bytes: &[u8]) -> Header {
    if bytes.len() < 2 {
        return Header::Incomplete;
    }
    let (first, second) = (bytes[0], bytes[1]);
    let reserved = first & 0x70 != 0;
    let opcode = first & 0x0f;
    // Continuation, text, binary, close, ping, pong.
    if reserved || !matches!(opcode, 0 | 1 | 2 | 8 | 9 | 10) {
        return Header::Invalid;
    }
    let masked = second & 0x80 != 0;
    let (extended, len7) = match second & 0x7f {
        126 => (2, None),
        127 => (8, None),
        len => (0, Some(u64::from(len))),
    };
    let need = 2 + extended + if masked { 4 } else { 0 };
    if bytes.len() < need {
        return Header::Incomplete;
    }
    let len = match len7 {
        Some(len) => len,
        None => {
            let mut value = 0u64;
            for byte in &bytes[2..2 + extended] {
                value = value << 8 | u64::from(*byte);
            }
            if value >> 63 != 0 {
                return Header::Invalid;
            }
            value
        }
    };
    let mask = masked.then(|| {
        let at = 2 + extended;
        [bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]]
    });
    Header::Complete {
        len,
        mask,
        text_fin: first & 0x80 != 0 && opcode == 1,
    }
}

/// Where a connection is, as far as the gate can tell from what the server wrote.
#[derive(Debug, PartialEq, Eq)]
enum Phase {
    Http,
    /// The server began a `101 Switching Protocols` answer; `window` holds its last bytes, to
    /// find where its head ends.
    UpgradeHead {
        window: u32,
    },
    Websocket,
}

/// Client frames held back until the server answered a connect.
struct Waiting {
    deadline: Pin<Box<tokio::time::Sleep>>,
    reader: Option<Waker>,
}

/// A client's TCP stream, holding its place among the connections and gating its websocket
/// frames (see the module docs).
pub struct GatedIo {
    tcp: TcpStream,
    _slot: Slot,
    phase: Phase,
    reads: FrameScanner,
    writes: FrameScanner,
    /// Bytes the client sent behind a connect, read already but not handed over yet.
    held: Vec<u8>,
    waiting: Option<Waiting>,
    /// The client closed its side while the gate was closed; said once `held` is handed over.
    ended: bool,
}

const SWITCHING_PROTOCOLS: &[u8] = b"HTTP/1.1 101 ";
/// The most a client may send while its frames are held; past that it is not read until the gate
/// opens.
const HOLD_LIMIT: usize = 64 * 1024;
const END_OF_HEAD: u32 = u32::from_be_bytes(*b"\r\n\r\n");

impl GatedIo {
    pub fn new(tcp: TcpStream, slot: Slot) -> Self {
        GatedIo {
            tcp,
            _slot: slot,
            phase: Phase::Http,
            reads: FrameScanner::default(),
            writes: FrameScanner::default(),
            held: Vec::new(),
            waiting: None,
            ended: false,
        }
    }

    /// Follows what the server wrote: an upgrade, and on a websocket the answers to connects.
    fn observe_written(&mut self, mut written: &[u8]) {
        while !written.is_empty() {
            match &mut self.phase {
                Phase::Http => {
                    if !written.starts_with(SWITCHING_PROTOCOLS) {
                        return;
                    }
                    self.phase = Phase::UpgradeHead { window: 0 };
                }
                Phase::UpgradeHead { window } => {
                    let end = written.iter().position(|byte| {
                        *window = *window << 8 | u32::from(*byte);
                        *window == END_OF_HEAD
                    });
                    let Some(end) = end else { return };
                    written = &written[end + 1..];
                    self.phase = Phase::Websocket;
                }
                Phase::Websocket => {
                    let Some((end, _answer)) = self.writes.scan(written) else {
                        return;
                    };
                    written = &written[end..];
                    self.open_gate();
                }
            }
        }
    }

    fn open_gate(&mut self) {
        if let Some(waiting) = self.waiting.take()
            && let Some(reader) = waiting.reader
        {
            reader.wake();
        }
    }

    fn close_gate(&mut self) {
        self.waiting = Some(Waiting {
            deadline: Box::pin(tokio::time::sleep(GATE_TIMEOUT)),
            reader: None,
        });
    }

    /// Of `bytes`, just handed over to the reader, how many it may keep: up to the end of a
    /// connect frame, if one ends there (and the gate closes behind it).
    fn admit_read(&mut self, bytes: &[u8]) -> usize {
        if self.phase != Phase::Websocket {
            return bytes.len();
        }
        match self.reads.scan(bytes) {
            Some((end, Packet::Connect)) => {
                self.close_gate();
                end
            }
            _ => bytes.len(),
        }
    }
}

impl AsyncRead for GatedIo {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        while let Some(waiting) = &mut this.waiting {
            // Reads on while the gate is closed, so that a connection that ends is noticed now
            // (the answer to its connect may never be written then).
            if this.held.len() < HOLD_LIMIT {
                let mut chunk = [0u8; 1024];
                let mut ahead = ReadBuf::new(&mut chunk);
                match Pin::new(&mut this.tcp).poll_read(cx, &mut ahead) {
                    Poll::Ready(Err(error)) => return Poll::Ready(Err(error)),
                    Poll::Ready(Ok(())) if ahead.filled().is_empty() => {
                        this.ended = true;
                        this.waiting = None;
                        break;
                    }
                    Poll::Ready(Ok(())) => {
                        this.held.extend_from_slice(ahead.filled());
                        continue;
                    }
                    Poll::Pending => {}
                }
            }
            if waiting.deadline.as_mut().poll(cx).is_pending() {
                waiting.reader = Some(cx.waker().clone());
                return Poll::Pending;
            }
            tracing::debug!("no answer to a connect in time: the client's frames go on");
            this.waiting = None;
        }
        if !this.held.is_empty() {
            let offered = this.held.len().min(buf.remaining());
            let held = std::mem::take(&mut this.held);
            let admitted = this.admit_read(&held[..offered]);
            buf.put_slice(&held[..admitted]);
            this.held = held[admitted..].to_vec();
            return Poll::Ready(Ok(()));
        }
        if this.ended {
            return Poll::Ready(Ok(()));
        }
        let before = buf.filled().len();
        std::task::ready!(Pin::new(&mut this.tcp).poll_read(cx, buf))?;
        let read = &buf.filled()[before..];
        let admitted = this.admit_read(read);
        if admitted < read.len() {
            this.held.extend_from_slice(&read[admitted..]);
            buf.set_filled(before + admitted);
        }
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for GatedIo {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let written = match std::task::ready!(Pin::new(&mut this.tcp).poll_write(cx, buf)) {
            Ok(written) => written,
            Err(error) => {
                // Nothing more will be written: no answer is coming.
                this.open_gate();
                return Poll::Ready(Err(error));
            }
        };
        this.observe_written(&buf[..written]);
        Poll::Ready(Ok(written))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().tcp).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().tcp).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A frame as a client sends it: masked.
    fn client_frame(opcode: u8, fin: bool, payload: &[u8]) -> Vec<u8> {
        let mask = [0x12, 0x34, 0x56, 0x78];
        let mut frame = vec![if fin { 0x80 } else { 0 } | opcode];
        match payload.len() {
            len @ 0..=125 => frame.push(0x80 | len as u8),
            len @ 126..=65535 => {
                frame.push(0x80 | 126);
                frame.extend_from_slice(&(len as u16).to_be_bytes());
            }
            len => {
                frame.push(0x80 | 127);
                frame.extend_from_slice(&(len as u64).to_be_bytes());
            }
        }
        frame.extend_from_slice(&mask);
        frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        frame
    }

    /// A frame as the server sends it: unmasked.
    fn server_frame(payload: &[u8]) -> Vec<u8> {
        let mut frame = vec![0x81, payload.len() as u8];
        frame.extend_from_slice(payload);
        frame
    }

    #[test]
    fn a_connect_is_found_where_its_frame_ends() {
        let mut stream = client_frame(1, true, b"3");
        let connect_end = stream.len() + client_frame(1, true, b"40").len();
        stream.extend(client_frame(1, true, b"40"));
        stream.extend(client_frame(
            1,
            true,
            br#"42["joinMatchmaking",{"level":1}]"#,
        ));
        let mut scanner = FrameScanner::default();
        assert_eq!(scanner.scan(&stream), Some((connect_end, Packet::Connect)));
        assert_eq!(scanner.scan(&stream[connect_end..]), None, "an event");
    }

    #[test]
    fn frames_split_anywhere_are_followed() {
        let mut stream = client_frame(1, true, &[b'x'; 300]);
        stream.extend(client_frame(1, true, br#"40{"token":"abc"}"#));
        let whole = stream.len();
        for step in [1, 2, 3, 7, 64] {
            let mut scanner = FrameScanner::default();
            let mut found = None;
            for (i, chunk) in stream.chunks(step).enumerate() {
                if let Some((end, packet)) = scanner.scan(chunk) {
                    found = Some((i * step + end, packet));
                }
            }
            assert_eq!(found, Some((whole, Packet::Connect)), "chunks of {step}");
        }
    }

    #[test]
    fn only_whole_text_frames_count() {
        for frame in [
            client_frame(2, true, b"40"),  // binary
            client_frame(1, false, b"40"), // the first fragment of a message
            client_frame(1, true, b"4"),
            client_frame(9, true, b"40"), // ping
        ] {
            assert_eq!(FrameScanner::default().scan(&frame), None, "{frame:?}");
        }
    }

    #[test]
    fn answers_are_found_unmasked() {
        let mut scanner = FrameScanner::default();
        let answer = server_frame(br#"40{"sid":"abc"}"#);
        assert_eq!(scanner.scan(&answer), Some((answer.len(), Packet::Connect)));
        let refusal = server_frame(br#"44{"message":"no"}"#);
        assert_eq!(
            scanner.scan(&refusal),
            Some((refusal.len(), Packet::ConnectError))
        );
    }

    #[test]
    fn a_stream_it_cannot_follow_makes_it_step_aside() {
        let mut scanner = FrameScanner::default();
        // Reserved bits set: compressed, or not websocket at all.
        assert_eq!(scanner.scan(b"\xf1\x02ab"), None);
        assert!(matches!(scanner, FrameScanner::Lost));
        assert_eq!(scanner.scan(&client_frame(1, true, b"40")), None);
        // A length with its top bit set.
        let mut scanner = FrameScanner::default();
        let mut frame = vec![0x81, 127];
        frame.extend_from_slice(&u64::MAX.to_be_bytes());
        assert_eq!(scanner.scan(&frame), None);
        assert!(matches!(scanner, FrameScanner::Lost));
    }

    #[test]
    fn long_lengths_are_read_whole() {
        let payload = vec![b'x'; 70_000];
        let frame = client_frame(1, true, &payload);
        let mut scanner = FrameScanner::default();
        assert_eq!(scanner.scan(&frame), None);
        assert!(
            matches!(scanner, FrameScanner::Header { have: 0, .. }),
            "at the next header"
        );
    }
}
