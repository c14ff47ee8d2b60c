// Opens N idle Socket.IO connections with the official client and holds them, for measuring a
// server's memory per idle socket (see "Load generator" in the README):
//   node tests/js/idle-sockets.mjs <url> <count> [websocket|default] [hold-ms]
// `websocket` connects over WebSocket directly; `default` is the client's default (long polling,
// then an upgrade). Prints "connected <count>" once every socket is connected.
import { io } from "socket.io-client";

const [url, count, transport = "websocket", holdMs = "60000"] = process.argv.slice(2);
const n = Number(count);
let connected = 0;
for (let i = 0; i < n; i++) {
  const socket = io(url, {
    transports: transport === "default" ? ["polling", "websocket"] : ["websocket"],
    forceNew: true,
    reconnection: false,
  });
  socket.on("connect", () => connected++);
  socket.on("connect_error", (error) => {
    console.error("connect_error", error.message);
    process.exit(1);
  });
  // In steps, as clients arrive, rather than one burst.
  if (i % 50 === 49) await new Promise((resolve) => setTimeout(resolve, 50));
}
while (connected < n) await new Promise((resolve) => setTimeout(resolve, 100));
console.log("connected", connected);
await new Promise((resolve) => setTimeout(resolve, Number(holdMs)));
process.exit(0);
