// shardchat web UI: a client of the shardchat protocol (docs/protocol.md) in plain JavaScript.
//
// Rule of the file: text that came from the network (names, messages, error messages) only
// ever reaches the page through textContent or a property, never through innerHTML.

const ROOM_RE = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/;
const CONTROL_RE = /[\u0000-\u001f\u007f-\u009f]/;
const GROUP_MS = 5 * 60 * 1000; // messages of one author closer than this share one header
const TYPING_SEND_EVERY = 2000; // the server forwards a repeated typing-on at most every 2 s
const TYPING_IDLE = 4000; // stop saying we type after this long without a keystroke
const TYPING_EXPIRE = 5000; // the server refreshes typing-on every 2 s, so silence this long means gone
const HISTORY_PAGE = 50;
const MAX_SHOWN = 1000; // messages a room keeps on screen; older ones load again on scrolling up
const PING_EVERY = 20000; // browsers cannot see a dead TCP connection on their own
const PING_TIMEOUT = 10000;
const BACKOFF_BASE = 500;
const BACKOFF_MAX = 30000;
const NAME_RETRY = 3000; // a name of ours may be held by our own previous, dying connection
const RATE_MARGIN = 0.9; // send a little under the server's rate: its clock counts arrivals, not sends
const CONNECT_TIMEOUT = 10000; // a connect to a vanished host can hang for minutes
const MAX_FRAME = 16384; // bytes in one frame to the server; more and it closes with 1009
const UNAVAILABLE_FIRST = 1000; // wait before sending again after "unavailable", doubling up to BACKOFF_MAX
const SIGNED_OUT = "Your sign-in has expired. Open a fresh sign-in link to go on.";

const $ = (id) => document.getElementById(id);

function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text != null) node.textContent = text;
  return node;
}

// ---------------------------------------------------------------- state

const state = {
  user: "", // our name once a join succeeded, or the name being tried
  limits: { text: 4000, rooms: 16, rate: 10, burst: 20 },
  rooms: new Map(), // name -> room, in sidebar order
  active: null, // the room on screen
  joinView: true,

  ws: null,
  conn: "idle", // idle | connecting | open | waiting | offline
  connUser: "", // the name the current connection is bound to by its first join
  attempt: 0, // failed connects in a row, for the backoff
  retryAt: 0,
  retryTimer: 0,
  countdownTimer: 0,
  pingTimer: 0,
  connectTimer: 0,
  lastHeard: 0,
  everConnected: false,
  welcomed: false, // whether the current connection got its welcome
  refusedCloses: 0, // closes with 1008 or 1009 since our last message went through; they slow reconnects

  requests: new Map(), // ref -> what we asked, for this connection; messages live in outbox
  joinQueue: [], // joins waiting for the connection: {room, source}
  nameRetries: new Map(), // room -> {tries, timer, source}: joins refused as name_taken, tried again
  outbox: new Map(), // ref -> our message until its echo comes back
  tokens: 20,
  tokensAt: 0,
  outboxTimer: 0,
  holdUntil: 0, // no message goes out before this (performance.now()): the server was unavailable
  holdDelay: 0, // the last such wait, doubled on each "unavailable" until a message goes through

  typingRoom: null, // the room we told that we are typing
  typingSentAt: 0,
  typingIdleTimer: 0,
};

// ---------------------------------------------------------------- sign-in token

// With authentication on, the page is opened as /?token=JWT (docs/security.md). The token
// goes to the server as the token query parameter of /ws. It leaves the address bar at once,
// so that a room link copied from there does not hand it on, and stays in this tab's session
// storage for reloads. The page reads the token's claims only to show them: the server judges.
const auth = { token: "", sub: "", exp: 0 };
const TOKEN_LEEWAY = 30000; // the server's default clock skew on exp

function readToken() {
  const params = new URLSearchParams(location.search);
  let token = params.get("token") || "";
  if (token) {
    params.delete("token");
    const query = params.toString();
    history.replaceState(null, "", location.pathname + (query ? `?${query}` : "") + location.hash);
    try {
      sessionStorage.setItem("shardchat.token", token);
    } catch {
      // without storage a reload needs the link again
    }
  } else {
    try {
      token = sessionStorage.getItem("shardchat.token") || "";
    } catch {
      // as above
    }
  }
  auth.token = token;
  try {
    const part = token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
    const bytes = Uint8Array.from(atob(part + "=".repeat((4 - (part.length % 4)) % 4)), (c) => c.charCodeAt(0));
    const claims = JSON.parse(new TextDecoder().decode(bytes));
    if (typeof claims.sub === "string") auth.sub = claims.sub.trim();
    if (typeof claims.exp === "number") auth.exp = claims.exp * 1000;
  } catch {
    // no token, or one the page cannot read: the server says what it thinks of it
  }
}

function tokenExpired() {
  return auth.exp > 0 && Date.now() > auth.exp + TOKEN_LEEWAY;
}

const refPrefix = Math.random().toString(36).slice(2, 8);
let refCounter = 0;
const newRef = (kind) => `${kind}-${refPrefix}-${++refCounter}`;

// ---------------------------------------------------------------- connection

function wsURL() {
  const token = auth.token ? `?token=${encodeURIComponent(auth.token)}` : "";
  return `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/ws${token}`;
}

function connect() {
  clearTimeout(state.retryTimer);
  clearInterval(state.countdownTimer);
  if (state.ws) return;
  setConn("connecting");
  const ws = new WebSocket(wsURL());
  state.ws = ws;
  state.connUser = "";
  state.welcomed = false;
  state.requests.clear();
  clearTimeout(state.connectTimer);
  state.connectTimer = setTimeout(() => {
    if (state.ws === ws && state.conn === "connecting") dropSocket(4000);
  }, CONNECT_TIMEOUT);
  ws.onmessage = (ev) => {
    if (ws !== state.ws) return;
    state.lastHeard = Date.now();
    // The server batches objects into one frame, one per line.
    for (const line of String(ev.data).split("\n")) {
      if (!line) continue;
      let obj;
      try {
        obj = JSON.parse(line);
      } catch {
        continue;
      }
      try {
        handle(obj);
      } catch (err) {
        console.error("shardchat: handling", obj.type, err);
      }
    }
  };
  ws.onclose = (ev) => socketGone(ws, ev.code);
}

// dropSocket forgets a socket at once: close() on a dead connection can take long to report.
function dropSocket(code) {
  const ws = state.ws;
  if (!ws) return;
  ws.onclose = ws.onmessage = null;
  try {
    ws.close(code || 1000);
  } catch {
    // a socket that is still connecting cannot take every code; it is forgotten anyway
  }
  socketGone(ws, 1006);
}

function socketGone(ws, code) {
  if (ws !== state.ws) return;
  state.ws = null;
  state.connUser = "";
  clearInterval(state.pingTimer);
  clearTimeout(state.connectTimer);
  for (const req of state.requests.values()) {
    if (req.kind === "history") {
      const room = state.rooms.get(req.room);
      if (room) room.loadingOlder = false;
    }
    // Joins from the join screen and the sidebar are asked again on the next connection.
    if (req.kind === "join" && req.source !== "rejoin" && !state.rooms.has(req.room)) {
      state.joinQueue.push({ room: req.room, source: req.source });
    }
  }
  state.requests.clear();
  // A join that waits to be tried again goes with the next connection instead.
  for (const [name, retry] of state.nameRetries) {
    if (!retry.timer) continue;
    clearTimeout(retry.timer);
    retry.timer = 0;
    if (!state.rooms.has(name) && !state.joinQueue.some((j) => j.room === name)) state.joinQueue.push({ room: name, source: retry.source });
  }
  // 1008 and 1009 say that what we sent was wrong (1009: a frame over MAX_FRAME), so the
  // message on its way must not go again by itself: it would close the next connection too.
  if (code === 1008 || code === 1009) {
    state.refusedCloses++;
    for (const entry of state.outbox.values()) {
      if (entry.state !== "sent") continue;
      entry.state = "failed";
      entry.error = code === 1009 ? "it is too big for the server." : "the server refused it.";
    }
  }
  for (const room of state.rooms.values()) {
    room.joined = false;
    room.typing.forEach((t) => clearTimeout(t));
    room.typing.clear();
  }
  state.typingRoom = null;
  renderTyping();
  renderOutbox();
  if (state.rooms.size === 0 && state.joinQueue.length === 0) {
    setConn("idle");
    return;
  }
  console.info("shardchat: connection closed", code);
  // 4003: the token expired. A refused upgrade (HTTP 401) looks like any failed connect, so
  // an expired token is the best guess then. Either way the same token cannot get back in.
  if (code === 4003 || (!state.welcomed && tokenExpired())) {
    clearTimeout(state.retryTimer);
    setConn("expired");
    return;
  }
  scheduleReconnect();
}

function scheduleReconnect() {
  clearTimeout(state.retryTimer);
  if (!navigator.onLine) {
    // The "online" event brings us back at once; the slow retry covers browsers whose
    // idea of being offline is wrong.
    state.retryTimer = setTimeout(connect, BACKOFF_MAX);
    setConn("offline");
    return;
  }
  // Exponential backoff with jitter, so that the clients of a restarted server do not all
  // come back in the same instant.
  // A join resets attempt, so refused closes count on their own: a client the server keeps
  // refusing comes back slower and slower.
  const ceiling = Math.min(BACKOFF_MAX, BACKOFF_BASE * 2 ** (state.attempt + state.refusedCloses));
  const delay = Math.round(ceiling / 2 + Math.random() * (ceiling / 2));
  state.attempt++;
  state.retryAt = Date.now() + delay;
  state.retryTimer = setTimeout(connect, delay);
  clearInterval(state.countdownTimer);
  state.countdownTimer = setInterval(renderConn, 1000);
  setConn("waiting");
}

function reconnectNow() {
  state.attempt = 0;
  connect();
}

window.addEventListener("online", () => {
  if (state.conn === "offline" || state.conn === "waiting") reconnectNow();
});
window.addEventListener("offline", () => {
  if (state.conn === "waiting") scheduleReconnect();
});

function send(obj) {
  if (!state.ws || state.conn !== "open") return false;
  state.ws.send(JSON.stringify(obj));
  return true;
}

function startPing() {
  clearInterval(state.pingTimer);
  state.pingTimer = setInterval(() => {
    if (Date.now() - state.lastHeard > PING_EVERY + PING_TIMEOUT) {
      dropSocket(4000);
      return;
    }
    if (Date.now() - state.lastHeard > PING_EVERY / 2) send({ type: "ping", ref: newRef("p") });
  }, PING_EVERY / 2);
}

const connSpoken = {
  open: "Connected.",
  waiting: "Connection lost. Reconnecting soon.",
  offline: "You are offline.",
  expired: SIGNED_OUT,
};

function setConn(conn) {
  const changed = state.conn !== conn;
  state.conn = conn;
  document.body.dataset.conn = conn;
  if (conn !== "waiting") clearInterval(state.countdownTimer);
  // The visible status counts down every second; a screen reader hears only the changes.
  if (changed && state.everConnected && connSpoken[conn]) $("conn-live").textContent = connSpoken[conn];
  renderConn();
}

function renderConn() {
  let text;
  let banner = "";
  switch (state.conn) {
    case "open":
      text = "Connected";
      break;
    case "connecting":
      text = state.everConnected ? "Reconnecting…" : "Connecting…";
      banner = state.everConnected ? "Reconnecting…" : "";
      break;
    case "waiting": {
      const secs = Math.max(0, Math.ceil((state.retryAt - Date.now()) / 1000));
      text = secs > 0 ? `Reconnecting in ${secs} s` : "Reconnecting…";
      banner = `Connection lost. ${text}.`;
      break;
    }
    case "offline":
      text = "Offline";
      banner = "You are offline. shardchat reconnects when the network is back.";
      break;
    case "expired":
      text = "Signed out";
      banner = SIGNED_OUT;
      break;
    default:
      text = "Not connected";
  }
  $("conn-text").textContent = text;
  if (state.joinView && $("join-submit").disabled) {
    const status = $("join-status");
    if (state.conn === "expired") {
      status.textContent = SIGNED_OUT;
      status.classList.add("error");
    } else if (state.conn === "waiting" || state.conn === "offline") {
      let why = `Cannot reach the server. ${text}.`;
      if (auth.token && !state.everConnected && state.attempt >= 3) why += " If it keeps failing, your sign-in link may not be valid.";
      status.textContent = why;
      status.classList.add("error");
    } else if (status.classList.contains("error")) {
      status.textContent = "Connecting…";
      status.classList.remove("error");
    }
  }
  $("banner-text").textContent = banner;
  $("banner").hidden = !banner || state.rooms.size === 0;
  $("banner-retry").hidden = state.conn !== "waiting" && state.conn !== "offline";
}

$("banner-retry").addEventListener("click", reconnectNow);

// ---------------------------------------------------------------- server objects

function handle(obj) {
  switch (obj.type) {
    case "welcome":
      return onWelcome(obj);
    case "joined":
      return onJoined(obj);
    case "message":
      return onMessage(obj);
    case "presence":
      return onPresence(obj);
    case "typing":
      return onTyping(obj);
    case "history":
      return onHistory(obj);
    case "users":
      return onUsers(obj);
    case "error":
      return onError(obj);
    default:
      // left, pong, and types of later versions need nothing
      state.requests.delete(obj.ref);
  }
}

function onWelcome(obj) {
  if (obj.limits) Object.assign(state.limits, obj.limits);
  state.tokens = state.limits.burst;
  state.tokensAt = performance.now();
  state.everConnected = true;
  state.welcomed = true;
  setConn("open");
  startPing();
  if (state.rooms.size === 0) state.attempt = 0;
  // Every room we were in, with what we already have, then the joins that waited.
  for (const room of state.rooms.values()) sendJoin(room.name, "rejoin");
  const queue = state.joinQueue.splice(0);
  for (const j of queue) if (!state.rooms.has(j.room)) sendJoin(j.room, j.source);
}

// joinRoom asks to join a room from the join screen ("form"), the sidebar ("add") or a link
// ("hash"). Without a connection the join waits for one.
function joinRoom(name, source) {
  if (state.rooms.has(name)) {
    activate(name);
    return;
  }
  if (state.connUser && state.connUser !== state.user) {
    // A connection keeps the name of its first join; a new name needs a new connection.
    dropSocket(1000);
  }
  if (state.conn === "open") {
    sendJoin(name, source);
  } else {
    state.joinQueue = state.joinQueue.filter((j) => j.room !== name);
    state.joinQueue.push({ room: name, source });
    if (!state.ws) reconnectNow();
  }
}

function sendJoin(name, source) {
  const room = state.rooms.get(name);
  const ref = newRef("j");
  // With a token the server takes the name from it; a join may leave it out.
  const req = { type: "join", room: name, ref };
  if (state.user) req.user = state.user;
  if (room && room.epoch) req.since = { epoch: room.epoch, seq: room.lastSeq };
  state.requests.set(ref, { kind: "join", room: name, source });
  send(req);
}

function onJoined(obj) {
  const req = state.requests.get(obj.ref) || { source: "rejoin" };
  state.requests.delete(obj.ref);
  state.user = state.connUser = obj.user;
  state.attempt = 0;
  forgetNameRetry(obj.room);
  rememberUser();

  let room = state.rooms.get(obj.room);
  const isNew = !room;
  if (isNew && req.source === "rejoin") {
    // We left this room while its rejoin was on its way.
    send({ type: "leave", room: obj.room, ref: newRef("l") });
    return;
  }
  if (isNew) room = createRoom(obj.room);
  const wasShown = !!room.epoch;
  const previousEpoch = room.epoch;
  room.joined = true;
  room.users = new Set(obj.users || []);

  const backlog = obj.history || [];
  if (obj.recovered) {
    // Exactly what we missed: show it as if it had come live.
    for (const m of backlog) onMessage(m);
  } else {
    if (wasShown) {
      resetRoom(room);
      addSys(room, "You were away too long to catch up, so some messages may be missing. Showing the latest ones.", "warn");
    }
    room.epoch = obj.epoch;
    room.lastSeq = 0;
    insertOlder(room, backlog, false);
    room.atBottom = true;
  }
  room.epoch = obj.epoch;
  room.lastSeq = Math.max(room.lastSeq, obj.seq || 0);
  if (!obj.recovered && backlog.length < HISTORY_PAGE) markStart(room);

  // Our messages that were on their way when the connection broke: the history showed those
  // that were sent (see confirmOwn). The others go again, with the same ref, when the history
  // proves they were not sent: it was recovered, or the room began a new epoch. Otherwise
  // the writer decides.
  const proof = obj.recovered || !wasShown || previousEpoch !== obj.epoch;
  for (const entry of state.outbox.values()) {
    if (entry.room !== room.name || entry.state !== "sent") continue;
    if (proof) {
      entry.state = "queued";
    } else {
      entry.state = "failed";
      entry.error = "it may not have been sent.";
    }
  }

  renderRoomList();
  if (isNew && (["form", "add", "hash", "restore"].includes(req.source) || !state.active)) {
    showChat();
    activate(room.name);
    if (req.source === "form" || req.source === "restore") clearJoinForm();
  }
  if (room.name === state.active) {
    renderPeople();
    // A recovered backlog came in as live messages, which keep a reader's place.
    stickIfAtBottom(room, isNew || !obj.recovered);
    maybeLoadOlder(room);
  }
  saveSession();
  flushOutbox();
}

// confirmOwn takes one of our messages out of the outbox once the server has ordered it:
// its echo, or a history that holds it, carries the ref we gave it.
function confirmOwn(m) {
  if (m.user !== state.user || !m.ref || !state.outbox.has(m.ref)) return;
  const entry = state.outbox.get(m.ref);
  entry.node?.remove();
  state.outbox.delete(m.ref);
  // It went through: the server takes our messages again.
  state.refusedCloses = 0;
  if (state.holdDelay) {
    state.holdDelay = state.holdUntil = 0;
    clearNote("warn");
  }
  if (entry.state === "sent") queueMicrotask(flushOutbox);
}

// A batch collects what messages change on screen until the next animation frame, and
// applies it then: whether the reader follows the newest message is measured once, before the
// first of them, and the list is laid out once, however many frames of messages came. (A
// layout per frame made a busy room crawl.) Hidden tabs get no animation frames; the timer
// keeps their unread counts and title current.
let batch = null;
let batchFrame = 0;
let batchTimer = 0;

function openBatch() {
  if (!batch) {
    batch = { atBottom: new Map(), follow: new Set(), fresh: new Map(), roomsDirty: false, announce: "" };
    batchFrame = requestAnimationFrame(flushBatch);
    batchTimer = setTimeout(flushBatch, 250);
  }
  return batch;
}

function flushBatch() {
  cancelAnimationFrame(batchFrame);
  clearTimeout(batchTimer);
  const b = batch;
  batch = null;
  if (!b) return;
  for (const room of b.follow) {
    if (!state.rooms.has(room.name)) continue;
    trimOldest(room);
    scrollToBottom(room);
  }
  for (const [room, n] of b.fresh) if (!b.follow.has(room)) room.newCount += n;
  if (b.fresh.size) renderMarker();
  if (b.roomsDirty) renderRoomList();
  if (b.announce) announce(b.announce);
}

// wasAtBottom tells whether the reader was at the bottom of room when the batch began.
function wasAtBottom(room) {
  const b = openBatch();
  if (!b.atBottom.has(room)) b.atBottom.set(room, isAtBottom(room));
  return b.atBottom.get(room);
}

function onMessage(m) {
  const room = state.rooms.get(m.room);
  if (!room || room.bySeq.has(m.seq)) return;
  const b = openBatch();
  const mine = m.user === state.user;
  const active = room.name === state.active;
  const follow = active && (wasAtBottom(room) || mine);
  confirmOwn(m);
  clearTyping(room, m.user);
  insertMessage(room, m);
  room.lastSeq = Math.max(room.lastSeq, m.seq);

  if (!mine && !(active && !document.hidden)) {
    room.unread++;
    b.roomsDirty = true;
  }
  if (active) {
    if (follow) b.follow.add(room);
    else b.fresh.set(room, (b.fresh.get(room) || 0) + 1);
    if (!mine) b.announce = `${m.user}: ${m.text}`;
  }
}

function onPresence(obj) {
  const room = state.rooms.get(obj.room);
  if (!room) return;
  if (obj.event === "join") {
    room.users.add(obj.user);
    addSys(room, `${obj.user} joined`);
  } else {
    room.users.delete(obj.user);
    clearTyping(room, obj.user);
    addSys(room, `${obj.user} left`);
  }
  if (room.name === state.active) renderPeople();
}

function onTyping(obj) {
  const room = state.rooms.get(obj.room);
  if (!room || obj.user === state.user) return;
  clearTimeout(room.typing.get(obj.user));
  if (obj.on) {
    room.typing.set(obj.user, setTimeout(() => clearTyping(room, obj.user), TYPING_EXPIRE));
  } else {
    room.typing.delete(obj.user);
  }
  if (room.name === state.active) renderTyping();
}

function clearTyping(room, user) {
  if (!room.typing.has(user)) return;
  clearTimeout(room.typing.get(user));
  room.typing.delete(user);
  if (room.name === state.active) renderTyping();
}

function onHistory(obj) {
  const req = state.requests.get(obj.ref);
  state.requests.delete(obj.ref);
  const room = state.rooms.get(obj.room);
  if (!room || !req || req.epoch !== room.epoch) return;
  room.loadingOlder = false;
  const messages = obj.messages || [];
  insertOlder(room, messages, true);
  if (messages.length < req.limit) markStart(room);
  else setHistoryTop(room, "");
  // A short page may leave nothing to scroll: ask for more until there is.
  maybeLoadOlder(room);
}

function onUsers(obj) {
  state.requests.delete(obj.ref);
  const room = state.rooms.get(obj.room);
  if (!room) return;
  room.users = new Set(obj.users || []);
  if (room.name === state.active) renderPeople();
}

function onError(obj) {
  const entry = obj.ref && state.outbox.get(obj.ref);
  if (entry) return onMessageError(entry, obj);
  const req = obj.ref && state.requests.get(obj.ref);
  state.requests.delete(obj.ref);
  if (req && req.kind === "join") return onJoinError(req, obj);
  if (req && req.kind === "history") {
    const room = state.rooms.get(req.room);
    if (room) room.loadingOlder = false;
    return;
  }
  if (obj.code === "rate_limited") {
    notice("You are going a little fast. Give it a second.");
    return;
  }
  notice(obj.message || `The server said ${obj.code}.`);
}

function forgetNameRetry(name) {
  clearTimeout(state.nameRetries.get(name)?.timer);
  state.nameRetries.delete(name);
}

const friendly = {
  unauthorized: (room) => (auth.sub ? `Your sign-in does not let you into #${room}.` : ""),
  name_taken: (room, user) => `Someone in #${room} is already called “${user}”. Pick another name.`,
  invalid_room: () => "A room name starts with a letter or digit, then letters, digits, “.”, “_” or “-”, at most 64 in all.",
  room_limit: () => `You can be in at most ${state.limits.rooms} rooms at once. Leave one first.`,
  rate_limited: () => "Too many requests at once. Wait a moment, then try again.",
};

function explain(obj, room, user) {
  const f = friendly[obj.code];
  return (f && f(room, user)) || obj.message || obj.code;
}

function onJoinError(req, obj) {
  if (obj.code === "name_taken" && ["rejoin", "restore", "rejoin-later"].includes(req.source)) {
    // Most likely our own previous connection, which the server has not seen die yet: it
    // lets go of the name within a ping interval, so try again for a while.
    // The timer is kept so that a new connection can take the join over (see socketGone).
    const room = state.rooms.get(req.room);
    const retry = state.nameRetries.get(req.room) || { tries: 0, timer: 0, source: req.source };
    state.nameRetries.set(req.room, retry);
    if (++retry.tries <= 20) {
      if (room && retry.tries === 1) addSys(room, `Waiting for your previous connection to let go of the name “${state.user}”…`, "warn");
      clearTimeout(retry.timer);
      retry.timer = setTimeout(() => {
        retry.timer = 0;
        if (state.conn === "open" && !(room && room.joined)) sendJoin(req.room, req.source);
      }, NAME_RETRY);
      return;
    }
  }
  forgetNameRetry(req.room);
  const message = explain(obj, req.room, state.user);
  if (req.source === "form" || req.source === "restore") {
    loadBusyRooms();
    // A token fixes the name, so then a refusal is about the room.
    const aboutName = ["name_taken", "invalid_user"].includes(obj.code) || (obj.code === "unauthorized" && !auth.sub);
    const field = aboutName ? "user" : "room";
    if (!state.rooms.size) state.user = "";
    showJoinView();
    setJoinBusy(false);
    fieldError(field === "user" ? "join-user" : "join-room", message);
    $(field === "user" ? "join-user" : "join-room").focus();
    return;
  }
  if (req.source === "add" || req.source === "hash") {
    fieldError("add-room", message);
    if (isNarrow()) openSidebar();
    $("add-room").focus();
    notice(message);
    return;
  }
  const room = state.rooms.get(req.room);
  if (!room) return;
  addSys(room, `Could not rejoin: ${message}`, "warn");
  for (const entry of state.outbox.values()) {
    if (entry.room === room.name && entry.state !== "failed") {
      entry.state = "failed";
      entry.error = "this room could not be joined again.";
    }
  }
  renderOutbox();
  flushOutbox();
}

// ---------------------------------------------------------------- rooms

function createRoom(name) {
  const scroller = el("div", "messages");
  scroller.tabIndex = 0;
  scroller.setAttribute("role", "log");
  scroller.setAttribute("aria-live", "off"); // new messages are read out by the announcer
  scroller.setAttribute("aria-label", `Messages in #${name}`);
  scroller.hidden = true;
  const top = el("div", "history-top");
  const list = el("div", "list");
  const pending = el("div", "pending-list");
  scroller.append(top, list, pending);
  $("timeline").append(scroller);

  const room = {
    name,
    scroller,
    top,
    list,
    pending,
    joined: false,
    epoch: "",
    lastSeq: 0,
    oldestSeq: 0,
    bySeq: new Map(),
    users: new Set(),
    typing: new Map(),
    unread: 0,
    newCount: 0,
    atBottom: true,
    savedScroll: null,
    loadingOlder: false,
    atStart: false,
    draft: "",
    item: null, // its entry in the sidebar, made by roomItem
  };
  scroller.addEventListener("scroll", () => onScroll(room), { passive: true });
  state.rooms.set(name, room);
  return room;
}

function resetRoom(room) {
  room.list.replaceChildren();
  room.bySeq.clear();
  room.oldestSeq = 0;
  room.lastSeq = 0;
  room.atStart = false;
  room.loadingOlder = false;
  room.newCount = 0;
  setHistoryTop(room, "");
}

function leaveRoom(name) {
  const room = state.rooms.get(name);
  if (!room) return;
  send({ type: "leave", room: name, ref: newRef("l") });
  forgetNameRetry(name);
  if (state.typingRoom === name) state.typingRoom = null;
  room.typing.forEach((t) => clearTimeout(t));
  for (const [ref, entry] of state.outbox) if (entry.room === name) state.outbox.delete(ref);
  room.scroller.remove();
  room.item?.li.remove();
  const names = [...state.rooms.keys()];
  const i = names.indexOf(name);
  state.rooms.delete(name);
  saveSession();
  if (state.rooms.size === 0) {
    state.active = null;
    history.replaceState(null, "", location.pathname + location.search);
    showJoinView();
    $("join-room").value = name;
    $("join-user").value = state.user;
    $("join-room").focus();
    return;
  }
  renderRoomList();
  if (state.active === name) activate(names[i + 1] || names[i - 1]);
}

function activate(name) {
  const room = state.rooms.get(name);
  if (!room) return;
  const prev = state.rooms.get(state.active);
  if (prev && prev !== room) {
    prev.savedScroll = prev.atBottom ? null : prev.scroller.scrollTop;
    prev.scroller.hidden = true;
    prev.draft = $("text").value;
    stopTyping();
  }
  state.active = name;
  room.scroller.hidden = false;
  room.unread = 0;
  if (room.savedScroll == null) scrollToBottom(room);
  else room.scroller.scrollTop = room.savedScroll;
  if (prev !== room) {
    $("text").value = room.draft;
    autosize();
  }
  $("room-title").textContent = name;
  $("text").placeholder = `Message #${name}`;
  $("text-label").textContent = `Message #${name}`;
  if (location.hash.slice(1) !== name) history.replaceState(null, "", `#${name}`);
  renderRoomList();
  renderPeople();
  renderTyping();
  renderMarker();
  renderTitle();
  updateSend();
  closeSidebar();
  saveSession();
  maybeLoadOlder(room);
}

// ---------------------------------------------------------------- messages

function avatarFor(user, small) {
  const a = el("span", small ? "avatar small" : "avatar", [...user.trim()][0] || "?");
  a.setAttribute("aria-hidden", "true");
  let h = 0;
  for (const ch of user) h = (h * 31 + ch.codePointAt(0)) >>> 0;
  a.style.setProperty("--hue", String(h % 360));
  return a;
}

// Made once: a formatter is costly to make, and a busy room formats every message.
const timeFormat = new Intl.DateTimeFormat([], { hour: "2-digit", minute: "2-digit" });
const dayFormat = new Intl.DateTimeFormat([], { month: "short", day: "numeric" });
// toLocaleString's default: numeric date and time, with seconds.
const fullFormat = new Intl.DateTimeFormat([], { year: "numeric", month: "numeric", day: "numeric", hour: "numeric", minute: "numeric", second: "numeric" });

function formatTime(ts) {
  const d = new Date(ts);
  const time = timeFormat.format(d);
  if (d.toDateString() === new Date().toDateString()) return time;
  return `${dayFormat.format(d)}, ${time}`;
}

// appendText fills node with text, with web addresses as links. Everything goes in as text
// nodes; a link gets its address only when it parses as http or https.
function appendText(node, text) {
  const re = /\bhttps?:\/\/[^\s<>"]+[^\s<>".,;:!?)\]'’”]/g;
  let last = 0;
  for (const match of text.matchAll(re)) {
    let url;
    try {
      url = new URL(match[0]);
    } catch {
      continue;
    }
    if (url.protocol !== "http:" && url.protocol !== "https:") continue;
    node.append(text.slice(last, match.index));
    const a = el("a", null, match[0]);
    a.href = url.href;
    a.target = "_blank";
    a.rel = "noopener noreferrer";
    node.append(a);
    last = match.index + match[0].length;
  }
  node.append(text.slice(last));
}

function messageNode(m, { pending } = {}) {
  const mine = m.user === state.user;
  const node = el("div", "msg");
  if (mine) node.classList.add("own");
  if (pending) node.classList.add("pending");
  if (m.seq) node.dataset.seq = String(m.seq);
  node.dataset.user = m.user;
  node.dataset.ts = String(m.ts || 0);

  const body = el("div", "body");
  const meta = el("div", "meta");
  meta.append(el("span", "author", m.user));
  if (mine) meta.append(el("span", "you", "you"));
  if (m.ts) {
    const time = el("time", null, formatTime(m.ts));
    time.dateTime = new Date(m.ts).toISOString();
    time.title = fullFormat.format(m.ts);
    meta.append(time);
  }
  const text = el("div", "text");
  appendText(text, m.text);
  body.append(meta, text);
  node.append(avatarFor(m.user), body);
  return node;
}

// groups decides whether node continues the group of the message before it.
function regroup(node) {
  if (!node || !node.classList.contains("msg")) return;
  const prev = node.previousElementSibling;
  const cont =
    prev &&
    prev.classList.contains("msg") &&
    prev.dataset.user === node.dataset.user &&
    Math.abs(Number(node.dataset.ts) - Number(prev.dataset.ts)) < GROUP_MS;
  node.classList.toggle("cont", !!cont);
}

function insertMessage(room, m) {
  const node = messageNode(m);
  room.bySeq.set(m.seq, node);
  let before = null;
  if (m.seq < room.lastSeq) {
    // Rare: older than the newest shown. Find its place.
    for (const child of room.list.children) {
      if (child.dataset.seq && Number(child.dataset.seq) > m.seq) {
        before = child;
        break;
      }
    }
  }
  room.list.insertBefore(node, before);
  regroup(node);
  regroup(node.nextElementSibling);
  if (!room.oldestSeq || m.seq < room.oldestSeq) room.oldestSeq = m.seq;
}

// insertOlder puts messages (oldest first) above everything shown, keeping what the reader
// looks at in place.
function insertOlder(room, messages, keepScroll) {
  const fresh = messages.filter((m) => !room.bySeq.has(m.seq));
  if (!fresh.length) return;
  const first = room.list.firstElementChild;
  const fromBottom = room.scroller.scrollHeight - room.scroller.scrollTop;
  const frag = document.createDocumentFragment();
  const nodes = [];
  for (const m of fresh) {
    confirmOwn(m);
    const node = messageNode(m);
    room.bySeq.set(m.seq, node);
    nodes.push(node);
    frag.append(node);
    if (!room.oldestSeq || m.seq < room.oldestSeq) room.oldestSeq = m.seq;
    room.lastSeq = Math.max(room.lastSeq, m.seq);
  }
  room.list.insertBefore(frag, first);
  for (const node of nodes) regroup(node);
  regroup(first);
  if (keepScroll) room.scroller.scrollTop = room.scroller.scrollHeight - fromBottom;
}

// trimOldest drops the oldest messages past MAX_SHOWN, so that a tab left open in a busy room
// stays light. Only for a reader at the bottom: nobody is looking at them.
function trimOldest(room) {
  let excess = room.bySeq.size - MAX_SHOWN;
  if (excess <= 0) return;
  while (excess > 0 && room.list.firstElementChild) {
    const node = room.list.firstElementChild;
    if (node.dataset.seq) {
      room.bySeq.delete(Number(node.dataset.seq));
      excess--;
    }
    node.remove();
  }
  // Lines before the first remaining message belong to what went.
  while (room.list.firstElementChild && !room.list.firstElementChild.dataset.seq) room.list.firstElementChild.remove();
  const first = room.list.firstElementChild;
  room.oldestSeq = first ? Number(first.dataset.seq) : 0;
  regroup(first);
  room.atStart = false;
  setHistoryTop(room, "");
}

function addSys(room, text, kind) {
  const follow = room.name === state.active && wasAtBottom(room);
  room.list.append(el("div", kind ? `sys ${kind}` : "sys", text));
  if (follow) openBatch().follow.add(room);
}

function setHistoryTop(room, text, title) {
  room.top.replaceChildren();
  if (title) room.top.append(el("span", "start-title", title));
  if (text) room.top.append(text);
}

function markStart(room) {
  room.atStart = true;
  if (room.oldestSeq <= 1) {
    setHistoryTop(room, `This is the very beginning of #${room.name}.`, `#${room.name}`);
  } else {
    setHistoryTop(room, "Older messages are no longer kept.", `#${room.name}`);
  }
}

function maybeLoadOlder(room) {
  if (room.loadingOlder || room.atStart || !room.joined || room.name !== state.active) return;
  if (room.oldestSeq <= 1) {
    if (room.bySeq.size || room.lastSeq === 0) markStart(room);
    return;
  }
  if (room.scroller.scrollTop > 120 && room.scroller.scrollHeight > room.scroller.clientHeight) return;
  const ref = newRef("h");
  room.loadingOlder = true;
  state.requests.set(ref, { kind: "history", room: room.name, epoch: room.epoch, limit: HISTORY_PAGE });
  setHistoryTop(room, "Loading older messages…");
  if (!send({ type: "history", room: room.name, before: room.oldestSeq, limit: HISTORY_PAGE, ref })) {
    room.loadingOlder = false;
  }
}

function isAtBottom(room) {
  const s = room.scroller;
  if (s.hidden) return room.savedScroll == null;
  return s.scrollHeight - s.scrollTop - s.clientHeight < 48;
}

function scrollToBottom(room) {
  room.scroller.scrollTop = room.scroller.scrollHeight;
  room.atBottom = true;
  room.newCount = 0;
  room.savedScroll = null;
  if (room.name === state.active) renderMarker();
}

function stickIfAtBottom(room, force) {
  if (force || room.atBottom) scrollToBottom(room);
}

function onScroll(room) {
  if (room.scroller.hidden) return;
  room.atBottom = isAtBottom(room);
  if (room.atBottom && room.newCount) {
    room.newCount = 0;
    renderMarker();
  }
  if (room.scroller.scrollTop < 120) maybeLoadOlder(room);
}

// ---------------------------------------------------------------- sending

function textBytes(text) {
  return new TextEncoder().encode(text).length;
}

function submitMessage() {
  const room = state.rooms.get(state.active);
  const textarea = $("text");
  const text = textarea.value;
  if (!room || !text.trim()) return;
  const bytes = textBytes(text);
  if (bytes > state.limits.text) {
    composerNote(`That message is ${bytes - state.limits.text} bytes too long (the limit is ${state.limits.text}).`, "error");
    return;
  }
  const ref = newRef("m");
  // JSON writes a control character as six bytes (\u0001), so a text within the limit can
  // still make a frame the server closes the connection over.
  const frame = textBytes(JSON.stringify({ type: "message", room: room.name, text, ref }));
  if (frame > MAX_FRAME) {
    composerNote(
      `That message is too big to send: its special characters take up to 6 bytes each on the way, ${frame} bytes in all, over the limit of ${MAX_FRAME}. Remove some, or send it in parts.`,
      "error",
    );
    return;
  }
  const entry = { ref, room: room.name, text, state: "queued", node: null, error: "" };
  state.outbox.set(ref, entry);
  textarea.value = "";
  room.draft = "";
  autosize();
  updateSend();
  // Sending a message ends typing on the server, which tells the others itself.
  state.typingRoom = null;
  clearTimeout(state.typingIdleTimer);
  flushOutbox();
  renderOutbox();
  scrollToBottom(room);
}

function refillTokens() {
  const now = performance.now();
  const rate = state.limits.rate * RATE_MARGIN;
  state.tokens = Math.min(state.limits.burst, state.tokens + ((now - state.tokensAt) / 1000) * rate);
  state.tokensAt = now;
}

// flushOutbox sends queued messages in order, no faster than the server's rate limit allows,
// so that a burst of typing waits politely instead of being refused. One message is on its
// way at a time: a refused one is sent again before any later one, so that our messages keep
// the order in which they were written. People type slower than an echo comes back.
function flushOutbox() {
  clearTimeout(state.outboxTimer);
  if (state.conn !== "open") return;
  const hold = state.holdUntil - performance.now();
  if (hold > 0) {
    state.outboxTimer = setTimeout(flushOutbox, hold);
    renderOutbox();
    return;
  }
  const blocked = new Set();
  for (const entry of state.outbox.values()) {
    if (entry.state === "sent") break;
    if (entry.state !== "queued") continue;
    const room = state.rooms.get(entry.room);
    if (!room || !room.joined || blocked.has(entry.room)) {
      blocked.add(entry.room);
      continue;
    }
    refillTokens();
    if (state.tokens < 1) {
      const wait = Math.ceil(((1 - state.tokens) / (state.limits.rate * RATE_MARGIN)) * 1000);
      state.outboxTimer = setTimeout(flushOutbox, Math.max(50, wait));
      composerNote("Sending a little slower to stay within the server's limit…", "warn");
      renderOutbox();
      return;
    }
    state.tokens -= 1;
    if (send({ type: "message", room: entry.room, text: entry.text, ref: entry.ref })) entry.state = "sent";
    break;
  }
  // After "unavailable" the note stays until a message goes through (confirmOwn).
  if (!state.holdDelay) clearNote("warn");
  renderOutbox();
}

function onMessageError(entry, obj) {
  switch (obj.code) {
    case "unavailable":
      // The cluster cannot order messages (its bus or store is down): ours go again, more
      // and more slowly, until one goes through.
      entry.state = "queued";
      state.holdDelay = state.holdDelay ? Math.min(BACKOFF_MAX, state.holdDelay * 2) : UNAVAILABLE_FIRST;
      state.holdUntil = performance.now() + state.holdDelay;
      composerNote("The server cannot send messages right now; retrying…", "warn");
      flushOutbox();
      break;
    case "rate_limited":
      entry.state = "queued";
      state.tokens = 0;
      state.tokensAt = performance.now();
      composerNote("The server asked us to slow down; your message goes out in a moment.", "warn");
      clearTimeout(state.outboxTimer);
      state.outboxTimer = setTimeout(flushOutbox, 1000);
      break;
    case "not_joined": {
      // The server no longer counts us in: join again, and the message follows.
      entry.state = "queued";
      const room = state.rooms.get(entry.room);
      if (room && room.joined) {
        room.joined = false;
        sendJoin(room.name, "rejoin");
      }
      break;
    }
    default:
      entry.state = "failed";
      entry.error = obj.message || obj.code;
  }
  renderOutbox();
}

function renderOutbox() {
  for (const entry of state.outbox.values()) {
    const room = state.rooms.get(entry.room);
    if (!room) continue;
    if (!entry.node) {
      entry.node = messageNode({ user: state.user, text: entry.text, ts: 0 }, { pending: true });
      entry.status = el("div", "msg-status");
      entry.node.querySelector(".body").append(entry.status);
      room.pending.append(entry.node);
    }
    let status;
    if (entry.state === "failed") status = `Not sent: ${entry.error}`;
    else if (state.conn !== "open" || !room.joined) status = "Waiting for the connection…";
    else status = "Sending…";
    entry.node.classList.toggle("failed", entry.state === "failed");
    if (entry.status.dataset.status === status) continue;
    entry.status.dataset.status = status;
    entry.status.replaceChildren(el("span", null, status));
    if (entry.state === "failed") {
      const retry = el("button", null, "Retry");
      retry.type = "button";
      retry.addEventListener("click", () => {
        entry.state = "queued";
        flushOutbox();
      });
      const discard = el("button", null, "Discard");
      discard.type = "button";
      discard.addEventListener("click", () => {
        entry.node.remove();
        state.outbox.delete(entry.ref);
      });
      entry.status.append(retry, discard);
    }
  }
}

// ---------------------------------------------------------------- typing

function onComposerInput() {
  autosize();
  updateSend();
  const room = state.rooms.get(state.active);
  if (!room) return;
  room.draft = $("text").value;
  if (!$("text").value.trim()) {
    stopTyping();
    return;
  }
  const now = Date.now();
  if (state.typingRoom !== room.name || now - state.typingSentAt >= TYPING_SEND_EVERY) {
    if (room.joined && send({ type: "typing", room: room.name, on: true })) {
      state.typingRoom = room.name;
      state.typingSentAt = now;
    }
  }
  clearTimeout(state.typingIdleTimer);
  state.typingIdleTimer = setTimeout(stopTyping, TYPING_IDLE);
}

function stopTyping() {
  clearTimeout(state.typingIdleTimer);
  const name = state.typingRoom;
  state.typingRoom = null;
  const room = name && state.rooms.get(name);
  if (room && room.joined) send({ type: "typing", room: name, on: false });
}

function renderTyping() {
  const room = state.rooms.get(state.active);
  const names = room ? [...room.typing.keys()] : [];
  let text = "";
  if (names.length === 1) text = `${names[0]} is typing…`;
  else if (names.length === 2) text = `${names[0]} and ${names[1]} are typing…`;
  else if (names.length === 3) text = `${names[0]}, ${names[1]} and ${names[2]} are typing…`;
  else if (names.length > 3) text = "Several people are typing…";
  $("typing").textContent = text;
}

// ---------------------------------------------------------------- rendering

// roomItem is room's entry in the sidebar, made once: renderRoomList updates it in place, so
// that messages to a room not on screen touch only its badge.
function roomItem(room) {
  if (room.item) return room.item;
  const li = el("li");
  const btn = el("button", "room-btn");
  btn.type = "button";
  btn.dataset.room = room.name;
  btn.append(el("span", "hash", "#"), el("span", "name", room.name));
  btn.addEventListener("click", () => activate(room.name));
  const leave = el("button", "room-leave", "✕");
  leave.type = "button";
  leave.setAttribute("aria-label", `Leave #${room.name}`);
  leave.title = `Leave #${room.name}`;
  leave.addEventListener("click", () => leaveRoom(room.name));
  li.append(btn, leave);
  room.item = { li, btn, badge: el("span", "badge") };
  return room.item;
}

function renderRoomList() {
  const list = $("room-list");
  let unreadElsewhere = 0;
  let i = 0;
  for (const room of state.rooms.values()) {
    const { li, btn, badge } = roomItem(room);
    const active = room.name === state.active;
    li.classList.toggle("active", active);
    li.classList.toggle("unread", room.unread > 0);
    if (active) btn.setAttribute("aria-current", "page");
    else btn.removeAttribute("aria-current");
    if (room.unread) {
      badge.textContent = room.unread > 99 ? "99+" : String(room.unread);
      if (badge.parentNode !== btn) btn.append(badge);
      btn.setAttribute("aria-label", `${room.name}, ${room.unread} unread`);
      if (!active) unreadElsewhere += room.unread;
    } else {
      badge.remove();
      btn.removeAttribute("aria-label");
    }
    // Rooms join at the end and leaveRoom takes its item out, so only a new room moves here
    // (a moved node would lose the focus).
    if (list.children[i] !== li) list.insertBefore(li, list.children[i] || null);
    i++;
  }
  while (list.children.length > i) list.lastElementChild.remove();
  const badge = $("menu-badge");
  badge.hidden = !unreadElsewhere;
  badge.textContent = unreadElsewhere > 99 ? "99+" : String(unreadElsewhere);
  renderTitle();
}

function renderPeople() {
  const room = state.rooms.get(state.active);
  const users = room ? [...room.users].sort((a, b) => a.localeCompare(b)) : [];
  const items = users.map((user) => {
    const li = el("li");
    li.dataset.user = user;
    li.append(avatarFor(user, true), el("span", "name", user));
    if (user === state.user) li.append(el("span", "you", "you"));
    const dot = el("span", "online");
    dot.setAttribute("aria-hidden", "true");
    li.append(dot);
    return li;
  });
  $("people-list").replaceChildren(...items);
  $("people-count").textContent = String(users.length);
  $("people-title").textContent = `Online · ${users.length}`;
}

function renderMarker() {
  const room = state.rooms.get(state.active);
  const n = room ? room.newCount : 0;
  $("new-marker").hidden = !n;
  $("new-marker").textContent = n === 1 ? "1 new message ↓" : `${n} new messages ↓`;
}

function renderTitle() {
  let unread = 0;
  for (const room of state.rooms.values()) unread += room.unread;
  const where = state.active ? `#${state.active} · ` : "";
  document.title = `${unread ? `(${unread}) ` : ""}${where}shardchat`;
}

function announce(text) {
  $("announcer").textContent = text.length > 200 ? `${text.slice(0, 200)}…` : text;
}

let noticeTimer = 0;
function notice(text) {
  const n = $("notice");
  n.textContent = text;
  n.hidden = state.joinView;
  clearTimeout(noticeTimer);
  noticeTimer = setTimeout(() => (n.hidden = true), 6000);
}

function composerNote(text, kind) {
  const n = $("composer-note");
  if (n.textContent === text) return;
  n.textContent = text;
  n.className = kind ? `composer-note ${kind}` : "composer-note";
}

// clearNote clears the composer's note if it is of kind, leaving other news standing.
function clearNote(kind) {
  if ($("composer-note").classList.contains(kind)) composerNote("");
}

function autosize() {
  const t = $("text");
  t.style.height = "auto";
  t.style.height = `${t.scrollHeight}px`;
}

function updateSend() {
  const text = $("text").value;
  $("send-btn").disabled = !text.trim();
  if (textBytes(text) > state.limits.text) {
    composerNote(`${textBytes(text) - state.limits.text} bytes over the limit of ${state.limits.text}.`, "error");
  } else {
    clearNote("error");
  }
}

// ---------------------------------------------------------------- views

function showChat() {
  state.joinView = false;
  $("join-view").hidden = true;
  $("chat-view").hidden = false;
  $("me-name").textContent = state.user;
  $("me-avatar").replaceWith(Object.assign(avatarFor(state.user, true), { id: "me-avatar" }));
  renderConn();
  stopBusyRooms();
  setJoinBusy(false);
  // On a phone the focus would open the keyboard over the conversation one came to read.
  if (!isNarrow()) $("text").focus();
}

function showJoinView() {
  state.joinView = true;
  $("chat-view").hidden = true;
  $("join-view").hidden = false;
  startBusyRooms();
}

function setJoinBusy(busy, text) {
  $("join-submit").disabled = busy;
  const status = $("join-status");
  status.textContent = text || "";
  status.classList.remove("error");
}

function fieldError(id, message) {
  const input = $(id);
  const error = $(`${id}-error`);
  error.textContent = message || "";
  error.hidden = !message;
  if (message) input.setAttribute("aria-invalid", "true");
  else input.removeAttribute("aria-invalid");
}

function clearJoinForm() {
  fieldError("join-user", "");
  fieldError("join-room", "");
  setJoinBusy(false);
}

function validUser(user) {
  const n = [...user].length;
  if (n === 0) return "Enter a name.";
  if (n > 32) return "At most 32 characters.";
  if (CONTROL_RE.test(user)) return "No control characters, please.";
  return "";
}

function validRoom(room) {
  if (!room) return "Enter a room.";
  return ROOM_RE.test(room) ? "" : friendly.invalid_room();
}

$("join-form").addEventListener("submit", (ev) => {
  ev.preventDefault();
  const user = $("join-user").value.trim();
  const room = $("join-room").value.trim().replace(/^#/, "");
  const userErr = validUser(user);
  const roomErr = validRoom(room);
  fieldError("join-user", userErr);
  fieldError("join-room", roomErr);
  if (userErr || roomErr) {
    $(userErr ? "join-user" : "join-room").focus();
    return;
  }
  state.user = user;
  setJoinBusy(true, `Joining #${room}…`);
  joinRoom(room, "form");
});

for (const id of ["join-user", "join-room", "add-room"]) {
  $(id).addEventListener("input", () => fieldError(id, ""));
}

$("add-room-form").addEventListener("submit", (ev) => {
  ev.preventDefault();
  const room = $("add-room").value.trim().replace(/^#/, "");
  const err = validRoom(room);
  fieldError("add-room", err);
  if (err) return;
  if (!state.rooms.has(room) && state.rooms.size >= state.limits.rooms) {
    fieldError("add-room", friendly.room_limit());
    return;
  }
  $("add-room").value = "";
  joinRoom(room, "add");
});

$("composer").addEventListener("submit", (ev) => {
  ev.preventDefault();
  submitMessage();
  $("text").focus();
});

let swallowBreak = false;
$("text").addEventListener("keydown", (ev) => {
  swallowBreak = false;
  if (ev.key === "Enter" && !ev.shiftKey && !ev.isComposing && ev.keyCode !== 229) {
    ev.preventDefault();
    swallowBreak = true;
    submitMessage();
  }
});
// Some input paths deliver the line break of an Enter whose keydown was cancelled as an
// insertion of its own, before the keyup. The known case is DevTools key events, which is
// how chromedp types in the UI tests (SendKeys with "\n"); a few virtual keyboards may too.
$("text").addEventListener("beforeinput", (ev) => {
  if (swallowBreak && (ev.inputType === "insertLineBreak" || ev.inputType === "insertParagraph")) {
    ev.preventDefault();
  }
  swallowBreak = false;
});
$("text").addEventListener("keyup", () => (swallowBreak = false));
$("text").addEventListener("input", onComposerInput);
$("text").addEventListener("blur", stopTyping);

$("new-marker").addEventListener("click", () => {
  const room = state.rooms.get(state.active);
  if (room) scrollToBottom(room);
  $("text").focus();
});

$("leave-btn").addEventListener("click", () => state.active && leaveRoom(state.active));

// The people panel and the room list become overlays on narrow screens.
function isNarrow() {
  return window.matchMedia("(max-width: 720px)").matches;
}
function peopleOverlay() {
  return window.matchMedia("(max-width: 1000px)").matches;
}
function setPeople(open) {
  $("chat-view").classList.toggle("people-closed", !open);
  $("people-btn").setAttribute("aria-expanded", String(open));
}
setPeople(!peopleOverlay());
$("people-btn").addEventListener("click", () => {
  const open = $("chat-view").classList.contains("people-closed");
  setPeople(open);
  if (open && peopleOverlay()) $("close-people").focus();
});
$("close-people").addEventListener("click", () => {
  setPeople(false);
  $("people-btn").focus();
});

function openSidebar() {
  $("chat-view").classList.add("sidebar-open");
  $("scrim").hidden = false;
  $("menu-btn").setAttribute("aria-expanded", "true");
  $("room-list").querySelector(".active .room-btn")?.focus();
}
function closeSidebar() {
  if (!$("chat-view").classList.contains("sidebar-open")) return;
  $("chat-view").classList.remove("sidebar-open");
  $("scrim").hidden = true;
  $("menu-btn").setAttribute("aria-expanded", "false");
}
$("menu-btn").addEventListener("click", openSidebar);
$("close-sidebar").addEventListener("click", () => {
  closeSidebar();
  $("menu-btn").focus();
});
$("scrim").addEventListener("click", closeSidebar);

document.addEventListener("keydown", (ev) => {
  if (ev.key === "Escape") {
    if ($("chat-view").classList.contains("sidebar-open")) {
      closeSidebar();
      $("menu-btn").focus();
    } else if (peopleOverlay() && !$("chat-view").classList.contains("people-closed")) {
      setPeople(false);
      $("people-btn").focus();
    }
  }
  // Alt+Up and Alt+Down move between rooms, as in other chat apps.
  if (ev.altKey && (ev.key === "ArrowUp" || ev.key === "ArrowDown") && state.rooms.size > 1) {
    ev.preventDefault();
    const names = [...state.rooms.keys()];
    const i = names.indexOf(state.active);
    const next = names[(i + (ev.key === "ArrowDown" ? 1 : names.length - 1)) % names.length];
    activate(next);
    $("text").focus();
  }
});

document.addEventListener("visibilitychange", () => {
  const room = state.rooms.get(state.active);
  if (!document.hidden && room && room.unread) {
    room.unread = 0;
    renderRoomList();
  }
});

window.addEventListener("hashchange", () => {
  const name = decodeURIComponent(location.hash.slice(1));
  if (!name || name === state.active) return;
  if (state.rooms.has(name)) activate(name);
  else if (ROOM_RE.test(name) && !state.joinView) joinRoom(name, "hash");
  else if (state.joinView) $("join-room").value = name;
});

// ---------------------------------------------------------------- busy rooms

let busyTimer = 0;
async function loadBusyRooms() {
  try {
    // With authentication on, the list shows only the rooms the token may join.
    const headers = auth.token ? { Authorization: `Bearer ${auth.token}` } : {};
    const res = await fetch("/api/rooms", { cache: "no-store", headers });
    if (!res.ok) return;
    const body = await res.json();
    renderBusyRooms(Array.isArray(body.rooms) ? body.rooms : []);
  } catch {
    // The list is a nicety; the form works without it.
  }
}

function renderBusyRooms(rooms) {
  const chips = rooms.slice(0, 12).map((r) => {
    const li = el("li");
    const b = el("button", "chip");
    b.type = "button";
    b.dataset.room = r.room;
    b.append(el("span", "name", `#${r.room}`), el("span", "count", r.members === 1 ? "1 person" : `${r.members} people`));
    b.addEventListener("click", () => {
      $("join-room").value = r.room;
      fieldError("join-room", "");
      if ($("join-user").value.trim()) $("join-form").requestSubmit();
      else $("join-user").focus();
    });
    li.append(b);
    return li;
  });
  $("busy-rooms").replaceChildren(...chips);
  $("busy-empty").hidden = rooms.length > 0;
  $("room-suggestions").replaceChildren(
    ...rooms.filter((r) => !state.rooms.has(r.room)).map((r) => Object.assign(el("option"), { value: r.room })),
  );
}

function startBusyRooms() {
  loadBusyRooms();
  clearInterval(busyTimer);
  busyTimer = setInterval(loadBusyRooms, 10000);
}

function stopBusyRooms() {
  clearInterval(busyTimer);
  // One more look, for the sidebar's suggestions.
  loadBusyRooms();
}

// ---------------------------------------------------------------- memory

function rememberUser() {
  try {
    localStorage.setItem("shardchat.user", state.user);
  } catch {
    // storage may be off; the page works without it
  }
}

// saveSession lets a reload come back to the same rooms in this tab.
function saveSession() {
  try {
    if (state.rooms.size === 0) sessionStorage.removeItem("shardchat.session");
    else sessionStorage.setItem("shardchat.session", JSON.stringify({ user: state.user, rooms: [...state.rooms.keys()], active: state.active }));
  } catch {
    // as above
  }
}

function readSession() {
  try {
    const s = JSON.parse(sessionStorage.getItem("shardchat.session") || "null");
    if (s && typeof s.user === "string" && Array.isArray(s.rooms)) return s;
  } catch {
    // as above
  }
  return null;
}

// ---------------------------------------------------------------- start

function start() {
  readToken();
  const hashRoom = decodeURIComponent(location.hash.slice(1));
  let saved = null;
  try {
    $("join-user").value = localStorage.getItem("shardchat.user") || "";
  } catch {
    // as above
  }
  if (auth.sub) {
    $("join-user").value = auth.sub;
    $("join-user").readOnly = true;
    $("join-user-hint").hidden = false;
  }
  $("join-room").value = ROOM_RE.test(hashRoom) ? hashRoom : "general";
  saved = readSession();
  showJoinView();
  renderConn();
  if (saved && saved.user && auth.sub && saved.user !== auth.sub) saved = null; // another sign-in
  if (saved && saved.user && !validUser(saved.user) && saved.rooms.length) {
    state.user = saved.user;
    $("join-user").value = saved.user;
    const rooms = saved.rooms.filter((r) => ROOM_RE.test(r));
    const first = ROOM_RE.test(hashRoom) ? hashRoom : saved.active && rooms.includes(saved.active) ? saved.active : rooms[0];
    setJoinBusy(true, `Rejoining #${first} as ${saved.user}…`);
    // In the saved order, which the sidebar keeps; the room of the URL comes to the front.
    for (const r of rooms) joinRoom(r, r === first ? "restore" : "rejoin-later");
    if (!rooms.includes(first)) joinRoom(first, "restore");
  } else if (tokenExpired()) {
    setConn("expired");
    $("join-status").textContent = SIGNED_OUT;
    $("join-status").classList.add("error");
  } else if ($("join-user").value) {
    $("join-submit").focus();
  } else {
    $("join-user").focus();
  }
}

start();
