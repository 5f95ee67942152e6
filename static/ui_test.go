package static_test

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/shardchat/shardchat/transport"
	"github.com/shardchat/shardchat/transport/auth"
)

// TestUIChat: alice and bob, each in a browser context of their own, chat in one room.
func TestUIChat(t *testing.T) {
	env := setupUI(t, transport.Config{})
	alice := env.newPage("alice", 1280, 800)
	bob := env.newPage("bob", 1280, 800)

	alice.join(env.server.base, "alice", "general")
	bob.join(env.server.base, "bob", "general")

	// The online lists follow presence, live.
	bob.waitFor("alice and bob in bob's online list",
		peopleJS+` === "alice,bob"`)
	alice.waitFor("bob joining in alice's online list",
		peopleJS+` === "alice,bob"`)
	alice.waitFor("a quiet line saying bob joined",
		`[...document.querySelectorAll(".messages:not([hidden]) .sys")].some(s => s.textContent === "bob joined")`)

	// alice types: bob sees it; alice sends: the line clears, and the message arrives.
	alice.do(chromedp.SendKeys(chromedp.ID("text"), "hello bo"))
	bob.waitFor("alice's typing", `document.getElementById("typing").textContent === "alice is typing…"`)
	alice.do(chromedp.SendKeys(chromedp.ID("text"), "b\n"))
	bob.waitMessage("hello bob")
	bob.waitFor("alice's typing to clear", `document.getElementById("typing").textContent === ""`)

	// Shift+Enter is a new line, Enter sends; the send button sends too.
	alice.do(
		chromedp.SendKeys(chromedp.ID("text"), "line one"),
		chromedp.KeyEvent(kb.Enter, chromedp.KeyModifiers(chromedp.ModifierShift)),
		chromedp.SendKeys(chromedp.ID("text"), "line two\n"),
	)
	bob.waitMessage("line one\nline two")
	bob.do(chromedp.SendKeys(chromedp.ID("text"), "hi alice, good to see you here!"), chromedp.Click(chromedp.ID("send-btn")))
	alice.waitMessage("hi alice, good to see you here!")
	bob.waitMessage("hi alice, good to see you here!") // the echo, back on bob's page

	got := bob.messages()
	want := []shownMessage{
		{User: "alice", Text: "hello bob"},
		{User: "alice", Text: "line one\nline two"},
		{User: "bob", Text: "hi alice, good to see you here!", Own: true},
	}
	if len(got) != len(want) {
		t.Fatalf("bob shows %+v, want %+v", got, want)
	}
	for i := range want {
		if got[i].User != want[i].User || got[i].Text != want[i].Text || got[i].Own != want[i].Own {
			t.Errorf("bob's message %d: %+v, want %+v", i, got[i], want[i])
		}
		if i > 0 && got[i].Seq != got[i-1].Seq+1 {
			t.Errorf("bob's message %d has seq %d after %d", i, got[i].Seq, got[i-1].Seq)
		}
	}
	if n := eval[int](alice, `document.querySelectorAll(".messages:not([hidden]) .msg.own").length`); n != 2 {
		t.Errorf("alice's page sets %d messages apart as her own, want 2", n)
	}
	if s := eval[string](bob, `document.querySelector(".messages:not([hidden]) .msg time").textContent`); s == "" {
		t.Error("messages show no time")
	}
	if s := eval[string](bob, `location.hash`); s != "#general" {
		t.Errorf("bob's URL fragment is %q, want #general", s)
	}

	// A screenshot of a lively room, light and dark.
	alice.do(chromedp.SendKeys(chromedp.ID("text"), "I'll share the notes"))
	bob.waitFor("alice's typing again", `document.getElementById("typing").textContent === "alice is typing…"`)
	bob.screenshot("desktop")
	bob.darkMode()
	bob.screenshot("desktop-dark")
}

// TestUITextIsNotHTML: markup in messages and names shows as text, and runs nothing.
func TestUITextIsNotHTML(t *testing.T) {
	env := setupUI(t, transport.Config{})
	alice := env.newPage("alice", 1280, 800)
	mallory := env.newPage("mallory", 1280, 800)
	const evil = `<img src=x onerror=alert(1)>`
	const evilName = `<b onclick=alert(2)>mal</b>`

	alice.join(env.server.base, "alice", "general")
	mallory.join(env.server.base, evilName, "general")
	mallory.say(evil)
	mallory.say("see https://example.com/a?b=<i>c</i> and javascript:alert(3)")
	alice.waitMessage(evil)
	alice.waitMessage("see https://example.com/a?b=<i>c</i> and javascript:alert(3)")

	got := alice.messages()
	if got[0].User != evilName || got[0].Text != evil {
		t.Errorf("alice shows %+v, want the text %q from %q", got[0], evil, evilName)
	}
	counts := eval[map[string]int](alice, `({
		img: document.querySelectorAll("#chat-view img").length,
		b: document.querySelectorAll("#chat-view b, #chat-view i").length,
		links: document.querySelectorAll(".messages a").length,
		badLinks: [...document.querySelectorAll(".messages a")].filter(a => !a.href.startsWith("https://example.com/")).length,
	})`)
	if counts["img"] != 0 || counts["b"] != 0 {
		t.Errorf("markup from the network became elements: %v", counts)
	}
	if counts["links"] != 1 || counts["badLinks"] != 0 {
		t.Errorf("links: %v, want exactly the one https link", counts)
	}
	if !eval[bool](alice, fmt.Sprintf(`[...document.querySelectorAll("#people-list li")].some(li => li.textContent.includes(%s))`, js(evilName))) {
		t.Error("the online list does not show the name as text")
	}
	if n := alice.dialogCount() + mallory.dialogCount(); n != 0 {
		t.Errorf("%d dialogs opened", n)
	}
}

// TestUIReconnect: bob's connection drops while alice sends; when it is back, bob's page
// shows every message once, in order, and sends what bob wrote while away.
func TestUIReconnect(t *testing.T) {
	env := setupUI(t, transport.Config{})
	proxy := newCutProxy(t, env.server.addr)
	alice := env.newPage("alice", 1280, 800)
	bob := env.newPage("bob", 1280, 800)

	alice.join(env.server.base, "alice", "general")
	bob.join(proxy.base(), "bob", "general")
	alice.say("before the tunnel")
	bob.waitMessage("before the tunnel")

	proxy.cut()
	bob.waitFor("bob's page to say it reconnects",
		`document.body.dataset.conn !== "open" && !document.getElementById("banner").hidden && document.getElementById("banner-text").textContent.includes("Reconnecting")`)
	alice.waitFor("bob to leave", peopleJS+` === "alice"`)
	var missed []string
	for i := 1; i <= 5; i++ {
		text := fmt.Sprintf("missed %d", i)
		alice.say(text)
		alice.waitMessage(text)
		missed = append(missed, text)
	}
	bob.say("written in the tunnel")
	bob.waitFor("the message to wait for the connection",
		`[...document.querySelectorAll(".pending-list .msg-status")].some(s => s.textContent.includes("Waiting for the connection"))`)
	bob.screenshot("desktop-reconnecting")

	proxy.restore()
	bob.waitInRoom("general")
	want := append(append([]string{"before the tunnel"}, missed...), "written in the tunnel")
	bob.waitFor("every message", fmt.Sprintf(`%s.map(m => m.text).join("\n") === %s`, messagesJS, js(strings.Join(want, "\n"))))
	alice.waitMessage("written in the tunnel")

	got := bob.messages()
	for i := 1; i < len(got); i++ {
		if got[i].Seq != got[i-1].Seq+1 {
			t.Errorf("bob shows seq %d after %d: %+v", got[i].Seq, got[i-1].Seq, got)
		}
	}
	if n := eval[int](bob, `document.querySelectorAll(".pending-list .msg").length`); n != 0 {
		t.Errorf("%d messages still pending on bob's page", n)
	}
	if n := eval[int](bob, `document.querySelectorAll(".messages:not([hidden]) .sys.warn").length`); n != 0 {
		t.Errorf("bob's page says recovery failed, though the server still had every message")
	}
	texts := func(ms []shownMessage) []string {
		var out []string
		for _, m := range ms {
			out = append(out, m.Text)
		}
		return out
	}
	if got := texts(alice.messages()); !slices.Equal(got, want) {
		t.Errorf("alice shows %q, want %q", got, want)
	}
	if !eval[bool](alice, peopleJS+` === "alice,bob"`) {
		t.Error("bob is not back in alice's online list")
	}
}

// TestUIServerRestart: after a restart the server cannot recover the room (a new epoch);
// the page says so, shows the room's latest history, and goes on working.
func TestUIServerRestart(t *testing.T) {
	env := setupUI(t, transport.Config{})
	alice := env.newPage("alice", 1280, 800)
	bob := env.newPage("bob", 1280, 800)
	alice.join(env.server.base, "alice", "general")
	bob.join(env.server.base, "bob", "general")
	alice.say("before the restart")
	bob.waitMessage("before the restart")

	env.server.stop() // sessions get 1012
	bob.waitFor("bob's page to notice", `document.body.dataset.conn !== "open"`)
	env.server = startServer(t, env.server.addr, env.cfg)

	bob.waitInRoom("general")
	alice.waitInRoom("general")
	bob.waitFor("the notice that messages may be missing",
		`[...document.querySelectorAll(".messages:not([hidden]) .sys.warn")].some(s => s.textContent.includes("some messages may be missing"))`)
	alice.say("after the restart")
	bob.waitMessage("after the restart")
	if got := bob.messages(); len(got) != 1 || got[0].Text != "after the restart" || got[0].Seq != 1 {
		t.Errorf("after the restart bob shows %+v, want only the new room's message, seq 1", got)
	}
}

// TestUINameTaken: a taken name is explained next to the name field, and another name works.
func TestUINameTaken(t *testing.T) {
	env := setupUI(t, transport.Config{})
	alice := env.newPage("alice", 1280, 800)
	bob := env.newPage("bob", 1280, 800)
	alice.join(env.server.base, "alice", "general")

	// Keyboard only: the name field has the focus, Enter submits.
	bob.open(env.url("general"))
	if id := eval[string](bob, `document.activeElement.id`); id != "join-user" {
		t.Errorf("the focus starts on %q, want the name field", id)
	}
	bob.do(chromedp.SendKeys(chromedp.ID("join-user"), "alice\n"))
	bob.waitFor("the name_taken message next to the name field",
		`!document.getElementById("join-user-error").hidden && document.getElementById("join-user-error").textContent.includes("already called “alice”")`)
	state := eval[map[string]any](bob, `({
		invalid: document.getElementById("join-user").getAttribute("aria-invalid"),
		described: document.getElementById("join-user").getAttribute("aria-describedby"),
		roomError: document.getElementById("join-room-error").hidden,
		joinView: !document.getElementById("join-view").hidden,
		button: document.getElementById("join-submit").disabled,
	})`)
	bob.screenshot("join-name-taken")
	if state["invalid"] != "true" || !slices.Contains(strings.Fields(fmt.Sprint(state["described"])), "join-user-error") || state["roomError"] != true || state["joinView"] != true || state["button"] != false {
		t.Errorf("after name_taken: %v", state)
	}

	// A bad room name is explained next to the room field.
	bob.do(chromedp.SetValue(chromedp.ID("join-user"), "bob"), chromedp.SetValue(chromedp.ID("join-room"), "no spaces!"), chromedp.Click(chromedp.ID("join-submit")))
	bob.waitFor("the invalid room message", `!document.getElementById("join-room-error").hidden && document.getElementById("join-user-error").hidden`)

	bob.do(chromedp.SetValue(chromedp.ID("join-room"), "general"), chromedp.Click(chromedp.ID("join-submit")))
	bob.waitInRoom("general")
	bob.waitFor("both in the online list", peopleJS+` === "alice,bob"`)
	bob.say("bob it is")
	alice.waitMessage("bob it is")
}

// TestUIPhone: at 360 px wide, the message box and the send button are on screen and work,
// long words wrap, and the room list opens as a drawer.
func TestUIPhone(t *testing.T) {
	env := setupUI(t, transport.Config{})
	phone := env.newPage("phone", 360, 740, chromedp.EmulateMobile, chromedp.EmulateScale(2))
	desk := env.newPage("desk", 1280, 800)

	desk.join(env.server.base, "dev", "general")
	waitRoomsListed(t, env.server.base, "general")
	phone.open(env.url("general"))
	phone.waitFor("the busy rooms", `document.querySelectorAll("#busy-rooms .chip").length === 1`)
	phone.do(chromedp.SendKeys(chromedp.ID("join-user"), "ana"))
	phone.screenshot("phone-360-join")
	phone.do(chromedp.Click(chromedp.ID("join-submit")))
	phone.waitInRoom("general")
	long := strings.Repeat("supercalifragilistic", 15)
	desk.say("hello from the desk")
	desk.say(long)
	phone.waitMessage(long)

	layout := eval[map[string]float64](phone, `(() => {
		const r = (id) => document.getElementById(id).getBoundingClientRect();
		const t = r("text"), s = r("send-btn");
		const at = document.elementFromPoint(s.left + s.width / 2, s.top + s.height / 2);
		const texts = [...document.querySelectorAll(".messages:not([hidden]) .text")].map(e => e.getBoundingClientRect().right);
		return {
			width: innerWidth, height: innerHeight, scrollWidth: document.documentElement.scrollWidth,
			textLeft: t.left, textRight: t.right, textTop: t.top, textBottom: t.bottom, textWidth: t.width,
			sendLeft: s.left, sendRight: s.right, sendTop: s.top, sendBottom: s.bottom, sendWidth: s.width,
			sendOnTop: at && at.closest("#send-btn") ? 1 : 0,
			widestText: Math.max(...texts),
			sidebarRight: r("sidebar").right,
		};
	})()`)
	if layout["width"] != 360 || layout["scrollWidth"] > 360 {
		t.Errorf("the page is %v wide with %v of content, want 360 and no sideways scrolling", layout["width"], layout["scrollWidth"])
	}
	for _, part := range []string{"text", "send"} {
		if layout[part+"Left"] < 0 || layout[part+"Right"] > 360 || layout[part+"Top"] < 0 || layout[part+"Bottom"] > layout["height"] {
			t.Errorf("%s is not wholly on screen: %v", part, layout)
		}
	}
	if layout["textWidth"] < 200 || layout["sendWidth"] < 32 || layout["sendOnTop"] != 1 {
		t.Errorf("the message box or the send button is too small or covered: %v", layout)
	}
	if layout["widestText"] > 360 {
		t.Errorf("a long word runs off the screen: %v", layout)
	}
	if layout["sidebarRight"] > 0 {
		t.Errorf("the room list covers the room: %v", layout)
	}

	phone.do(chromedp.SendKeys(chromedp.ID("text"), "typed on a phone"), chromedp.Click(chromedp.ID("send-btn")))
	desk.waitMessage("typed on a phone")
	phone.waitMessage("typed on a phone")
	phone.screenshot("phone-360")

	// The drawer opens from the menu button and closes with Escape.
	phone.do(chromedp.Click(chromedp.ID("menu-btn")))
	phone.waitFor("the room list", `document.getElementById("sidebar").getBoundingClientRect().left >= 0 && document.activeElement.classList.contains("room-btn")`)
	phone.screenshot("phone-360-rooms")
	phone.do(chromedp.KeyEvent(kb.Escape))
	phone.waitFor("the room list to close", `!document.getElementById("chat-view").classList.contains("sidebar-open")`)
	phone.darkMode()
	phone.screenshot("phone-360-dark")
}

// TestUIRooms: several rooms at once, unread counts, the room in the URL, busy rooms on the
// join screen.
func TestUIRooms(t *testing.T) {
	env := setupUI(t, transport.Config{})
	carol := dialWS(t, env.server.base)
	carol.join("random", "carol")
	dave := dialWS(t, env.server.base)
	dave.join("random", "dave")
	dave.send(map[string]any{"type": "join", "room": "lobby", "ref": "j2"})
	dave.waitFor("joined lobby", func(o map[string]any) bool { return o["type"] == "joined" })

	waitRoomsListed(t, env.server.base, "lobby")
	alice := env.newPage("alice", 1280, 800)
	alice.open(env.url("random"))
	if room := eval[string](alice, `document.getElementById("join-room").value`); room != "random" {
		t.Errorf("opening /#random offers room %q", room)
	}
	alice.waitFor("the busy rooms, busiest first",
		`[...document.querySelectorAll("#busy-rooms .chip")].map(c => c.dataset.room + ":" + c.querySelector(".count").textContent).join() === "random:2 people,lobby:1 person"`)

	// A busy room is one click away once there is a name.
	alice.do(chromedp.SetValue(chromedp.ID("join-user"), "alice"), chromedp.Click(chromedp.CSS(`#busy-rooms .chip[data-room="lobby"]`)))
	alice.waitInRoom("lobby")
	alice.do(chromedp.SendKeys(chromedp.ID("add-room"), "random\n"))
	alice.waitInRoom("random")
	if s := eval[string](alice, `location.hash`); s != "#random" {
		t.Errorf("the URL fragment is %q, want #random", s)
	}

	// A message in the room not on screen counts as unread there.
	dave.say("lobby", "anyone in the lobby?")
	dave.say("lobby", "hello?")
	alice.waitFor("two unread in lobby",
		`document.querySelector('.room-btn[data-room="lobby"] .badge')?.textContent === "2" && document.title.startsWith("(2) ")`)
	alice.screenshot("desktop-rooms")
	carol.say("random", "on screen, so read")
	alice.waitMessage("on screen, so read")
	// The badges are drawn with the batch, a frame or up to 250 ms after the message is on
	// screen: a third message to lobby, once its badge shows, proves that a later batch was
	// drawn.
	dave.say("lobby", "still there?")
	alice.waitFor("three unread in lobby", `document.querySelector('.room-btn[data-room="lobby"] .badge')?.textContent === "3"`)
	if n := eval[int](alice, `document.querySelectorAll('.room-btn[data-room="random"] .badge').length`); n != 0 {
		t.Error("a message in the room on screen counts as unread")
	}
	alice.do(chromedp.Click(chromedp.CSS(`.room-btn[data-room="lobby"]`)))
	alice.waitInRoom("lobby")
	alice.waitMessage("hello?")
	alice.waitFor("the unread count to clear", `!document.querySelector(".room-btn .badge") && !document.title.startsWith("(")`)

	// Changing the fragment switches rooms; Alt+Down moves to the next one.
	alice.do(chromedp.Evaluate[chromedp.Void](`location.hash = "#random"`))
	alice.waitInRoom("random")
	alice.do(chromedp.Focus(chromedp.ID("text")), chromedp.KeyEvent(kb.ArrowDown, chromedp.KeyModifiers(chromedp.ModifierAlt)))
	alice.waitInRoom("lobby")

	// Leaving a room takes it off the list and out of the server's room.
	alice.do(chromedp.Click(chromedp.ID("leave-btn")))
	alice.waitInRoom("random")
	dave.waitFor("alice to leave lobby", func(o map[string]any) bool {
		return o["type"] == "presence" && o["room"] == "lobby" && o["user"] == "alice" && o["event"] == "leave"
	})
	if rooms := eval[[]string](alice, `[...document.querySelectorAll(".room-btn")].map(b => b.dataset.room)`); !slices.Equal(rooms, []string{"random"}) {
		t.Errorf("rooms after leaving lobby: %q", rooms)
	}

	// A link to a room not joined yet joins it.
	alice.do(chromedp.Evaluate[chromedp.Void](`location.hash = "#fresh"`))
	alice.waitInRoom("fresh")

	// A reload comes back to the same rooms, under the same name, on the room of the URL.
	alice.do(chromedp.Reload())
	alice.waitInRoom("fresh")
	alice.waitFor("both rooms back", `[...document.querySelectorAll(".room-btn")].map(b => b.dataset.room).join() === "random,fresh"`)
	alice.do(chromedp.Click(chromedp.CSS(`.room-btn[data-room="random"]`)))
	alice.waitInRoom("random")
	alice.waitMessage("on screen, so read")
	if me := eval[string](alice, `document.getElementById("me-name").textContent`); me != "alice" {
		t.Errorf("after the reload the page is %q, want alice", me)
	}
}

// TestUIHistoryAndTyping: older messages load on scrolling up, a reader who scrolled up gets
// a "new messages" marker instead of a jump, and a typing line with no news clears by itself.
func TestUIHistoryAndTyping(t *testing.T) {
	env := setupUI(t, transport.Config{Rate: 1000, Burst: 1000})
	carol := dialWS(t, env.server.base)
	carol.join("general", "carol")
	for i := 1; i <= 120; i++ {
		carol.send(map[string]any{"type": "message", "room": "general", "text": fmt.Sprintf("message %d", i), "ref": fmt.Sprint(i)})
	}
	carol.waitFor("the last echo", func(o map[string]any) bool { return o["type"] == "message" && o["ref"] == "120" })

	bob := env.newPage("bob", 1280, 800)
	bob.join(env.server.base, "bob", "general")
	bob.waitMessage("message 120")
	if got := bob.messages(); len(got) != 50 || got[0].Text != "message 71" {
		t.Fatalf("on joining bob shows %d messages from %+v, want the newest 50", len(got), got[0])
	}
	if !eval[bool](bob, atBottomJS) {
		t.Error("the room does not open at its newest message")
	}

	// Scrolling up loads what the server keeps (the newest 100), in order, once.
	bob.do(chromedp.Evaluate[chromedp.Void](`document.querySelector(".messages:not([hidden])").scrollTop = 0`))
	bob.waitMessage("message 21")
	bob.do(chromedp.Evaluate[chromedp.Void](`document.querySelector(".messages:not([hidden])").scrollTop = 0`))
	bob.waitFor("the top of what is kept", `document.querySelector(".messages:not([hidden]) .history-top").textContent.includes("no longer kept")`)
	got := bob.messages()
	if len(got) != 100 {
		t.Fatalf("bob shows %d messages, want 100", len(got))
	}
	for i, m := range got {
		if want := fmt.Sprintf("message %d", i+21); m.Text != want || m.Seq != i+21 {
			t.Fatalf("message %d is %+v, want %q", i, m, want)
		}
	}

	// bob reads old messages: a new one does not move him, and a marker offers it.
	bob.do(chromedp.Evaluate[chromedp.Void](`document.querySelector(".messages:not([hidden])").scrollTop = 200`))
	carol.say("general", "something new")
	bob.waitMessage("something new")
	bob.waitFor("the new messages marker", `!document.getElementById("new-marker").hidden && document.getElementById("new-marker").textContent === "1 new message ↓"`)
	if top := eval[float64](bob, `document.querySelector(".messages:not([hidden])").scrollTop`); top > 400 {
		t.Errorf("the list jumped to %v while bob read older messages", top)
	}
	bob.do(chromedp.Click(chromedp.ID("new-marker")))
	bob.waitFor("the bottom, without the marker",
		`document.getElementById("new-marker").hidden && `+atBottomJS)

	// carol says she types, then nothing: the line goes after a few seconds without news.
	carol.send(map[string]any{"type": "typing", "room": "general", "on": true})
	bob.waitFor("carol's typing", `document.getElementById("typing").textContent === "carol is typing…"`)
	bob.waitFor("carol's typing to expire", `document.getElementById("typing").textContent === ""`)
}

// TestUIRateLimit: a burst of messages beyond the server's rate limit goes out a little
// slower, all of it, in order, and the page says why.
func TestUIRateLimit(t *testing.T) {
	reg := prometheus.NewRegistry()
	env := setupUI(t, transport.Config{Rate: 2, Burst: 2, Metrics: transport.NewMetrics(reg)})
	alice := env.newPage("alice", 1280, 800)
	bob := dialWS(t, env.server.base)
	bob.join("general", "bob")
	alice.join(env.server.base, "alice", "general")

	var want []string
	var keys strings.Builder
	for i := 1; i <= 6; i++ {
		want = append(want, fmt.Sprintf("quick %d", i))
		keys.WriteString(want[i-1] + "\n")
	}
	alice.do(chromedp.SendKeys(chromedp.ID("text"), keys.String()))
	alice.waitFor("the note that sending slows down", `document.getElementById("composer-note").textContent.includes("slower")`)
	for _, text := range want {
		obj := bob.waitFor(text, func(o map[string]any) bool { return o["type"] == "message" })
		if obj["text"] != text {
			t.Fatalf("bob got %q, want %q", obj["text"], text)
		}
	}
	alice.waitFor("every message sent, none failed", fmt.Sprintf(
		`!document.querySelector(".pending-list .msg") && %s.map(m => m.text).join("\n") === %s`, messagesJS, js(strings.Join(want, "\n"))))
	alice.waitFor("the note to go", `document.getElementById("composer-note").textContent === ""`)
	if n := rateLimited(t, reg); n > 1 {
		t.Errorf("the server refused %v messages as rate limited; the page should keep to the limit", n)
	}
}

// rateLimited is how many requests the server refused as rate_limited.
func rateLimited(t *testing.T, reg *prometheus.Registry) float64 {
	t.Helper()
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var n float64
	for _, f := range families {
		if f.GetName() != "shardchat_requests_refused_total" {
			continue
		}
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "code" && l.GetValue() == "rate_limited" {
					n += m.GetCounter().GetValue()
				}
			}
		}
	}
	return n
}

// TestUIManyMessages: a reader at the bottom of a busy room keeps the newest 1000 messages on
// screen, in order, and no more.
func TestUIManyMessages(t *testing.T) {
	env := setupUI(t, transport.Config{Rate: 10000, Burst: 10000})
	bob := env.newPage("bob", 1280, 800)
	bob.join(env.server.base, "bob", "general")
	carol := dialWS(t, env.server.base)
	carol.join("general", "carol")
	for i := 1; i <= 1050; i++ {
		carol.send(map[string]any{"type": "message", "room": "general", "text": fmt.Sprintf("m%d", i), "ref": fmt.Sprint(i)})
	}
	carol.waitFor("the last echo", func(o map[string]any) bool { return o["type"] == "message" && o["ref"] == "1050" })
	bob.waitMessage("m1050")
	got := bob.messages()
	if len(got) != 1000 || got[0].Seq != 51 {
		t.Fatalf("bob shows %d messages from seq %d, want 1000 from 51", len(got), got[0].Seq)
	}
	for i := 1; i < len(got); i++ {
		if got[i].Seq != got[i-1].Seq+1 {
			t.Fatalf("seq %d after %d", got[i].Seq, got[i-1].Seq)
		}
	}
	if !eval[bool](bob, atBottomJS) {
		t.Error("bob is no longer at the newest message")
	}
}

// TestUISignIn: with authentication on, the page takes its token from its own URL, keeps it
// out of the address bar, joins under the token's name, explains a room the token does not
// allow, and says so when the token expires instead of knocking forever.
func TestUISignIn(t *testing.T) {
	secret := []byte("0123456789abcdef0123456789abcdef")
	// The server's clock for checking tokens runs an hour behind, so that it takes a token
	// that ran out seconds ago, and then closes the session at once with 4003: an expiry
	// without waiting for one.
	hourAgo := func() time.Time { return time.Now().Add(-time.Hour) }
	verifier, err := auth.NewVerifier(auth.Config{HMACSecret: secret, Leeway: time.Millisecond, Now: hourAgo})
	if err != nil {
		t.Fatal(err)
	}
	env := setupUI(t, transport.Config{Auth: verifier})
	sign := func(sub string, rooms []string, ttl time.Duration) string {
		token, err := auth.SignHS256(secret, sub, rooms, ttl, hourAgo())
		if err != nil {
			t.Fatal(err)
		}
		return token
	}

	alice := env.newPage("alice", 1280, 800)
	alice.open(env.server.base + "/?token=" + sign("alice", []string{"team-*"}, 2*time.Hour) + "#team-a")
	form := eval[map[string]any](alice, `({
		url: location.href, user: document.getElementById("join-user").value,
		readOnly: document.getElementById("join-user").readOnly, room: document.getElementById("join-room").value,
	})`)
	if strings.Contains(fmt.Sprint(form["url"]), "token") || !strings.HasSuffix(fmt.Sprint(form["url"]), "/#team-a") {
		t.Errorf("the address bar shows %v; want the room link without the token", form["url"])
	}
	if form["user"] != "alice" || form["readOnly"] != true || form["room"] != "team-a" {
		t.Errorf("the join form is %v, want alice (read-only) in team-a", form)
	}
	alice.do(chromedp.Click(chromedp.ID("join-submit")))
	alice.waitInRoom("team-a")
	alice.do(chromedp.SendKeys(chromedp.ID("add-room"), "general\n"))
	alice.waitFor("the refusal next to the room field",
		`!document.getElementById("add-room-error").hidden && document.getElementById("add-room-error").textContent.includes("does not let you into #general")`)
	// A reload keeps the sign-in, though the address bar no longer has it.
	alice.do(chromedp.Reload())
	alice.waitInRoom("team-a")

	// A token that ran out five seconds ago: the server lets the connection in by its clock,
	// then closes it with 4003 at once.
	bob := env.newPage("bob", 1280, 800)
	bob.open(env.server.base + "/?token=" + sign("bob", nil, time.Hour-5*time.Second) + "#team-a")
	bob.do(chromedp.Click(chromedp.ID("join-submit")))
	bob.waitFor("the expired sign-in", `document.body.dataset.conn === "expired" && document.getElementById("join-status").textContent.includes("sign-in has expired")`)
	bob.screenshot("join-signed-out")

	// A token long expired by the page's own clock is not even tried.
	carol := env.newPage("carol", 1280, 800)
	carol.open(env.server.base + "/?token=" + sign("carol", nil, time.Minute) + "#team-a")
	carol.waitFor("the expired sign-in", `document.body.dataset.conn === "expired" && document.getElementById("join-status").textContent.includes("sign-in has expired")`)
}

// TestUIFrameTooBig: a message whose frame the server would refuse (over 16 KiB once written
// as JSON) is refused on the page, with the reason; one that gets past the page all the same
// and makes the server close with 1009 is marked failed, not sent again on every new
// connection, and the page goes on working.
func TestUIFrameTooBig(t *testing.T) {
	alice, bob := aliceAndBob(t)

	// The page's sockets from now on are counted, and a frame with "pad me" in it grows past
	// 16 KiB with white space after the JSON, as a frame the page misjudged would.
	alice.do(chromedp.Evaluate[chromedp.Void](`(() => {
		window.sockets = 0;
		const Native = WebSocket;
		window.WebSocket = class extends Native {
			constructor(...args) { super(...args); window.sockets++; }
		};
		const send = Native.prototype.send;
		Native.prototype.send = function (data) {
			if (typeof data === "string" && data.includes("pad me")) data += " ".repeat(17000);
			return send.call(this, data);
		};
	})()`))

	// 3000 control characters are 3000 bytes of text, under the limit of 4000, but 18000 in
	// JSON.
	alice.do(chromedp.Evaluate[chromedp.Void](`(() => {
		const t = document.getElementById("text");
		t.value = "\u0001".repeat(3000);
		t.dispatchEvent(new Event("input"));
	})()`), chromedp.Click(chromedp.ID("send-btn")))
	alice.waitFor("the reason it cannot be sent",
		`document.getElementById("composer-note").textContent.includes("too big to send") && document.getElementById("composer-note").classList.contains("error")`)
	after := eval[map[string]any](alice, `({
		pending: document.querySelectorAll(".pending-list .msg").length,
		kept: document.getElementById("text").value.length,
		sockets: window.sockets,
		conn: document.body.dataset.conn,
	})`)
	if after["pending"] != 0.0 || after["kept"] != 3000.0 || after["sockets"] != 0.0 || after["conn"] != "open" {
		t.Errorf("after the refused message: %v; want nothing pending, the text still in the box, no new connection", after)
	}
	alice.do(chromedp.Evaluate[chromedp.Void](`(() => {
		const t = document.getElementById("text");
		t.value = "";
		t.dispatchEvent(new Event("input"));
	})()`))

	alice.say("pad me, please")
	alice.waitFor("the message marked failed, and the page back in the room",
		`[...document.querySelectorAll(".pending-list .msg.failed .msg-status")].some(s => s.textContent.includes("too big for the server")) && document.body.dataset.conn === "open"`)
	alice.waitInRoom("general")
	alice.say("after the refusal")
	obj := bob.waitFor("the next message", func(o map[string]any) bool { return o["type"] == "message" && o["user"] == "alice" })
	if obj["text"] != "after the refusal" {
		t.Errorf("bob got %q, want the message after the refused one", obj["text"])
	}
	alice.waitMessage("after the refusal")
	// The page came back once; a page that sends the refused message again goes round and
	// round, a connection each time.
	time.Sleep(time.Second)
	state := eval[map[string]any](alice, `({
		sockets: window.sockets,
		failed: document.querySelectorAll(".pending-list .msg.failed").length,
		pending: document.querySelectorAll(".pending-list .msg").length,
	})`)
	if state["sockets"] != 1.0 || state["failed"] != 1.0 || state["pending"] != 1.0 {
		t.Errorf("after the close: %v; want one new connection and the refused message failed", state)
	}
}

// TestUIUnavailable: while the server answers "unavailable" (its cluster cannot order
// messages), the page says so, not that we go too fast, sends the message again more and more
// slowly, and sends it once it can.
func TestUIUnavailable(t *testing.T) {
	alice, bob := aliceAndBob(t)

	// The first two tries of the message get the server's "unavailable" answer, without
	// reaching it; the times of all tries are kept.
	alice.do(chromedp.Evaluate[chromedp.Void](`(() => {
		window.tries = [];
		const send = WebSocket.prototype.send;
		WebSocket.prototype.send = function (data) {
			const obj = JSON.parse(data);
			if (obj.type === "message" && obj.text === "while the cluster is down") {
				window.tries.push(performance.now());
				if (window.tries.length <= 2) {
					const error = {type: "error", ref: obj.ref, code: "unavailable", message: "the message was not sent"};
					setTimeout(() => this.onmessage({data: JSON.stringify(error)}), 10);
					return;
				}
			}
			return send.call(this, data);
		};
	})()`))
	alice.say("while the cluster is down")
	alice.waitFor("the note that the server cannot send",
		`document.getElementById("composer-note").textContent.includes("cannot send messages right now")`)
	obj := bob.waitFor("the message", func(o map[string]any) bool { return o["type"] == "message" })
	if obj["text"] != "while the cluster is down" {
		t.Errorf("bob got %q", obj["text"])
	}
	alice.waitMessage("while the cluster is down")
	alice.waitFor("the note to go", `document.getElementById("composer-note").textContent === ""`)
	tries := eval[[]float64](alice, `window.tries`)
	if len(tries) != 3 {
		t.Fatalf("the message was tried %d times, want 3", len(tries))
	}
	first, second := tries[1]-tries[0], tries[2]-tries[1]
	if first < 900 || second < 1.5*first {
		t.Errorf("the tries came %.0f ms and then %.0f ms apart; want about a second, then longer", first, second)
	}
	alice.say("back to normal")
	bob.waitFor("the next message", func(o map[string]any) bool { return o["type"] == "message" && o["text"] == "back to normal" })
	alice.waitMessage("back to normal")
	if n := eval[int](alice, `document.querySelectorAll(".pending-list .msg").length`); n != 0 {
		t.Errorf("%d messages still pending", n)
	}
}

// aliceAndBob starts a server with alice on a page and bob on a plain WebSocket, both in
// general.
func aliceAndBob(t *testing.T) (*page, *wsClient) {
	t.Helper()
	env := setupUI(t, transport.Config{})
	alice := env.newPage("alice", 1280, 800)
	bob := dialWS(t, env.server.base)
	bob.join("general", "bob")
	alice.join(env.server.base, "alice", "general")
	return alice, bob
}
