// A stock socket.io-client against a real shardchat server, driven by
// transport/socketio_node_test.go: it runs the Socket.IO side of a chat with a native client
// that the Go test plays, and reports each step as a JSON line on stdout. The Go test answers
// on stdin when its side of a step is done. Any failure prints {"error": ...} and exits 1.
import { io } from "socket.io-client";
import readline from "node:readline";

const url = process.argv[2];
const lines = readline.createInterface({ input: process.stdin })[Symbol.asyncIterator]();

function report(obj) {
  process.stdout.write(JSON.stringify(obj) + "\n");
}
function fail(msg) {
  report({ error: msg });
  process.exit(1);
}
setTimeout(() => fail("timed out"), 20000).unref();

// waitFor resolves with the first event name's argument that satisfies pred.
function waitFor(socket, name, pred = () => true) {
  return new Promise((resolve) => {
    const on = (arg) => {
      if (pred(arg)) {
        socket.off(name, on);
        resolve(arg);
      }
    };
    socket.on(name, on);
  });
}
async function next() {
  const { value, done } = await lines.next();
  if (done) fail("the Go test closed stdin");
  return value.trim();
}
function connect() {
  const socket = io(url, { transports: ["websocket"], reconnection: false });
  return new Promise((resolve, reject) => {
    socket.on("connect", () => resolve(socket));
    socket.on("connect_error", (err) => reject(new Error("connect_error: " + err.message)));
  });
}

try {
  const alice = await connect();
  const bob = await connect();

  const a = await alice.emitWithAck("join", { username: "alice", room: "lobby" });
  if (!a.ok || !a.users.includes("nat") || !a.users.includes("alice")) fail("alice's join ack: " + JSON.stringify(a));
  const aliceSeesBob = waitFor(alice, "users", (u) => u.users.includes("bob"));
  const aliceSeesJoin = waitFor(alice, "joined", (j) => j.username === "bob");
  const b = await bob.emitWithAck("join", { username: "bob", room: "lobby" });
  if (!b.ok || b.users.join(",") !== "alice,bob,nat") fail("bob's join ack: " + JSON.stringify(b));
  await aliceSeesBob;
  await aliceSeesJoin;
  report({ step: "joined" });
  await next();

  // socket.io to everyone: the ack carries the seq every member sees.
  const bobGets = waitFor(bob, "message", (m) => m.text === "hello from alice");
  const ack = await alice.emitWithAck("message", "hello from alice");
  if (!ack.ok || !(ack.seq > 0)) fail("message ack: " + JSON.stringify(ack));
  const got = await bobGets;
  if (got.seq !== ack.seq || got.username !== "alice" || got.room !== "lobby" || !got.time) fail("bob got " + JSON.stringify(got));
  report({ step: "sent", seq: ack.seq });

  // native to socket.io.
  const fromNative = (m) => m.text === "hello from native" && m.username === "nat";
  const both = Promise.all([waitFor(alice, "message", fromNative), waitFor(bob, "message", fromNative)]);
  await next();
  const [ma, mb] = await both;
  if (ma.seq !== mb.seq || ma.seq !== ack.seq + 1) fail(`native message seq ${ma.seq}/${mb.seq} after ${ack.seq}`);

  // Typing crosses protocols and never comes back to the typist.
  const aliceSeesTyping = waitFor(alice, "typing", (t) => t.username === "bob" && t.isTyping === true);
  let bobHeardHimself = false;
  bob.on("typing", (t) => { if (t.username === "bob") bobHeardHimself = true; });
  bob.emit("typing", true);
  await aliceSeesTyping;
  report({ step: "typing" });
  await next();
  if (bobHeardHimself) fail("bob got his own typing");

  // A refused request gets its error in the ack.
  const bad = await alice.emitWithAck("join", { username: "alice", room: "bad room" });
  if (bad.ok !== false || bad.code !== "invalid_room" || !bad.message) fail("invalid room ack: " + JSON.stringify(bad));

  // users lists the room on request too.
  const users = await alice.emitWithAck("users", { room: "lobby" });
  if (!users.ok || users.users.join(",") !== "alice,bob,nat") fail("users ack: " + JSON.stringify(users));

  // Polling is refused cleanly: a connect_error, not a hang.
  const polling = io(url, { transports: ["polling"], reconnection: false });
  const refused = await new Promise((resolve) => {
    polling.on("connect", () => resolve(null));
    polling.on("connect_error", (err) => resolve(err));
  });
  polling.close();
  if (!refused) fail("a polling client connected");

  // Leaving tells the others.
  const aliceSeesLeave = waitFor(alice, "left", (l) => l.username === "bob");
  await bob.emitWithAck("leave", { room: "lobby" });
  await aliceSeesLeave;

  alice.close();
  bob.close();
  report({ step: "done", pollingError: String(refused.message) });
  process.exit(0);
} catch (err) {
  fail(String(err && err.stack ? err.stack : err));
}
