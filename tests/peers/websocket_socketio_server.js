// A real Socket.IO v4 server (npm `socket.io`) for the websocket probe's tests
// (src/probe/websocket.rs). Listens on 127.0.0.1 on a free port, prints the port on the first
// line of stdout, and exits when stdin closes (the test dropped it).
//
// Namespaces:
//   /        accepts every connection
//   /chat    accepts, emits `welcome` on connect, answers `ping` with `pong` (same argument)
//   /admin   refuses every connection in a middleware: CONNECT_ERROR "not authorized"
// Any other namespace gets socket.io's own CONNECT_ERROR "Invalid namespace".
"use strict";
const http = require("http");
const { Server } = require("socket.io");

const httpServer = http.createServer();
const io = new Server(httpServer);

io.on("connection", () => {});
io.of("/chat").on("connection", (socket) => {
  socket.emit("welcome", { room: "chat" });
  socket.on("ping", (arg) => socket.emit("pong", arg));
});
io.of("/admin").use((_socket, next) => next(new Error("not authorized")));

httpServer.listen(0, "127.0.0.1", () => {
  process.stdout.write(`${httpServer.address().port}\n`);
});
process.stdin.on("end", () => process.exit(0));
process.stdin.on("error", () => process.exit(0));
process.stdin.resume();
