// What the game page and the playground share: a player's connection that survives reloads,
// requests answered through acknowledgements, and small DOM helpers.
//
// The player's id and resume token are kept in the tab's sessionStorage under `key`: a page
// that reloads presents them in the handshake and is the same player again (the server then
// sends `resumed` with the match it is in), while another tab is another player, so two tabs
// can play each other. A refused resume (expired session) starts afresh.

export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (name === "class") node.className = value;
    else if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else node.setAttribute(name, value === true ? "" : value);
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

export const $ = (selector) => document.querySelector(selector);

/// Connects as the player remembered under `key` (or a new one). `on` maps event names to
/// handlers; they are registered before the connection opens, so nothing is missed.
export function connectPlayer(key, on) {
  const remembered = JSON.parse(sessionStorage.getItem(key) || "null");
  const socket = io({ auth: remembered || undefined, transports: ["websocket", "polling"] });
  socket.on("session", (session) => {
    sessionStorage.setItem(
      key,
      JSON.stringify({ playerId: session.playerId, resumeToken: session.resumeToken }),
    );
  });
  socket.on("connect_error", (error) => {
    if (remembered && !socket.active) {
      // The server refused the remembered identity (expired, or another server's): be new.
      sessionStorage.removeItem(key);
      location.reload();
    }
    on.connect_error?.(error);
  });
  for (const [event, handler] of Object.entries(on)) {
    if (event !== "connect_error") socket.on(event, handler);
  }
  return socket;
}

/// Sends `event` and waits for its acknowledgement (at most 10 s).
export function request(socket, event, payload) {
  return socket.timeout(10_000).emitWithAck(event, payload);
}

/// A log list that keeps its newest entries in view.
export function logTo(list, limit = 300) {
  return (text, kind = "") => {
    const time = new Date().toLocaleTimeString();
    list.append(el("li", { class: kind }, el("span", { class: "t" }, time), text));
    while (list.children.length > limit) list.firstChild.remove();
    list.scrollTop = list.scrollHeight;
  };
}

/// A refusal's words: `code: error`.
export function refusal(answer) {
  return `${answer.code}: ${answer.error}`;
}
