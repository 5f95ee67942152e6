package static_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chromedp/cdproto/emulation"
	cdppage "github.com/chromedp/cdproto/page"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
	"github.com/coder/websocket"
	"go.uber.org/goleak"

	"github.com/shardchat/shardchat/hub"
	"github.com/shardchat/shardchat/internal/testprog"
	"github.com/shardchat/shardchat/static"
	"github.com/shardchat/shardchat/transport"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// waitTimeout bounds every wait on the page: generous, because a loaded 2-core machine
// running the whole suite under -race can be slow, and a wait ends as soon as its condition
// holds.
const waitTimeout = 20 * time.Second

// chromiumFlags are the flags the UI tests start Chromium with. This machine has no outside
// network, and without them Chromium waits on it.
var chromiumFlags = []string{
	"headless", "no-sandbox", "disable-gpu", "disable-background-networking",
	"disable-component-update", "disable-sync", "no-first-run",
}

// findChromium returns the path of Debian's chromium (or Ubuntu's chromium-browser), skipping
// the test when it is missing, except under CI=true, where it fails (testprog.Need's rule).
func findChromium(t *testing.T) string {
	t.Helper()
	return testprog.Need(t, "chromium", "chromium-browser")
}

// uiEnv is a real shardchat server and a real headless Chromium.
type uiEnv struct {
	t       *testing.T
	server  *testServer
	browser context.Context // the browser's first tab; pages are new browser contexts in it
	cfg     transport.Config
}

// setupUI starts a server with cfg (Hub, Static and Logger filled in) and a browser, and
// stops both when the test ends.
func setupUI(t *testing.T, cfg transport.Config) *uiEnv {
	t.Helper()
	chromium := findChromium(t)
	env := &uiEnv{t: t, cfg: cfg}
	env.server = startServer(t, "127.0.0.1:0", cfg)

	// Registered after TempDir, so that it runs first: Chromium is gone before its profile
	// directory is removed.
	profile := t.TempDir()
	opts := []chromedp.ExecAllocatorOption{chromedp.ExecPath(chromium), chromedp.UserDataDir(profile)}
	for _, f := range chromiumFlags {
		opts = append(opts, chromedp.Flag(f, true))
	}
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	var done atomic.Bool
	logf := func(format string, args ...any) {
		if !done.Load() {
			t.Logf("chromium: "+format, args...)
		}
	}
	browser, cancelBrowser := chromedp.NewContext(allocCtx, chromedp.WithErrorf(logf))
	t.Cleanup(func() {
		cancelBrowser()
		cancelAlloc()
		done.Store(true)
	})
	if err := chromedp.Do(browser); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	env.browser = browser
	return env
}

// url is the address of the server's page, with the room in the fragment when given.
func (e *uiEnv) url(room string) string {
	if room == "" {
		return e.server.base + "/"
	}
	return e.server.base + "/#" + room
}

// testServer is a shardchat server on a loopback address.
type testServer struct {
	t    *testing.T
	base string // http://host:port
	addr string
	hub  *hub.Hub
	srv  *transport.Server
	http *httptest.Server
	once sync.Once
}

// startServer starts a server on addr ("127.0.0.1:0" for any free port) and stops it when
// the test ends. Starting one on the address of a stopped one is a server restart.
func startServer(t *testing.T, addr string, cfg transport.Config) *testServer {
	t.Helper()
	log := slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}))
	h, err := hub.New(hub.Config{Shards: 2, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	cfg.Hub = h
	cfg.Logger = log
	cfg.Static = static.FS()
	srv, err := transport.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	// The old listener's port may take a moment to come free after a stop.
	var ln net.Listener
	deadline := time.Now().Add(5 * time.Second)
	for {
		ln, err = net.Listen("tcp", addr)
		if err == nil || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err != nil {
		t.Fatalf("listen on %s: %v", addr, err)
	}
	hs := httptest.NewUnstartedServer(srv.Handler())
	hs.Listener.Close()
	hs.Listener = ln
	hs.Start()
	s := &testServer{t: t, base: hs.URL, addr: ln.Addr().String(), hub: h, srv: srv, http: hs}
	t.Cleanup(s.stop)
	return s
}

// stop shuts the server down as SIGTERM does: sessions get 1012.
func (s *testServer) stop() {
	s.once.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := s.srv.Shutdown(ctx); err != nil {
			s.t.Errorf("shutdown: %v", err)
		}
		s.http.Close()
		if err := s.hub.Close(); err != nil {
			s.t.Errorf("hub close: %v", err)
		}
	})
}

// page is one person's browser: a tab in a browser context of its own, so that two pages
// share no storage.
type page struct {
	t    *testing.T
	env  *uiEnv
	name string
	ctx  context.Context

	dismissers sync.WaitGroup // goroutines that close dialogs

	mu       sync.Mutex
	jsErrors []string // uncaught exceptions and console.error calls
	dialogs  []string // alert, confirm and prompt dialogs that opened
}

// newPage opens a tab of width×height pixels in a fresh browser context. Every page fails
// its test when its script throws or opens a dialog.
func (e *uiEnv) newPage(name string, width, height int64, opts ...chromedp.EmulateViewportOption) *page {
	e.t.Helper()
	p := &page{t: e.t, env: e, name: name}
	ctx, cancel := chromedp.NewContext(e.browser, chromedp.WithNewBrowserContext(), chromedp.WithListener(p.listen))
	e.t.Cleanup(cancel)
	p.ctx = ctx
	if err := chromedp.Do(ctx); err != nil {
		e.t.Fatalf("%s: open a tab: %v", name, err)
	}
	p.do(chromedp.EmulateViewport(width, height, opts...))
	e.t.Cleanup(func() {
		p.dismissers.Wait()
		p.mu.Lock()
		defer p.mu.Unlock()
		for _, msg := range p.jsErrors {
			e.t.Errorf("%s: script error: %s", name, msg)
		}
		for _, msg := range p.dialogs {
			e.t.Errorf("%s: a dialog opened: %q", name, msg)
		}
	})
	return p
}

// listen runs on the tab's event loop: it only records.
func (p *page) listen(ev any) {
	p.mu.Lock()
	defer p.mu.Unlock()
	switch ev := ev.(type) {
	case *runtime.EventExceptionThrown:
		msg := ev.ExceptionDetails.Text
		if ev.ExceptionDetails.Exception != nil {
			msg += " " + ev.ExceptionDetails.Exception.Description
		}
		p.jsErrors = append(p.jsErrors, msg)
	case *runtime.EventConsoleAPICalled:
		if ev.Type == runtime.ConsoleAPICalledTypeError {
			var parts []string
			for _, arg := range ev.Args {
				parts = append(parts, string(arg.Value)+arg.Description)
			}
			p.jsErrors = append(p.jsErrors, "console.error: "+strings.Join(parts, " "))
		}
	case *cdppage.EventJavascriptDialogOpening:
		p.dialogs = append(p.dialogs, ev.Message)
		// A dialog blocks the page; close it so that the test goes on to fail clearly.
		// The listener may not send commands itself.
		p.dismissers.Go(func() {
			ctx, cancel := context.WithTimeout(p.ctx, 5*time.Second)
			defer cancel()
			_, _ = chromedp.Call(ctx, cdppage.HandleJavaScriptDialog, cdppage.HandleJavaScriptDialogParams{Accept: false})
		})
	}
}

// dialogCount is how many dialogs the page opened.
func (p *page) dialogCount() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.dialogs)
}

// do runs actions with a deadline and fails the test on an error.
func (p *page) do(actions ...chromedp.Action[chromedp.Void]) {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, waitTimeout)
	defer cancel()
	if err := chromedp.Do(ctx, actions...); err != nil {
		p.t.Fatalf("%s: %v\n%s", p.name, err, p.dump())
	}
}

// eval evaluates a JavaScript expression in the page and decodes its value.
func eval[T any](p *page, expr string) T {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, waitTimeout)
	defer cancel()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](expr))
	if err != nil {
		p.t.Fatalf("%s: evaluate %s: %v", p.name, expr, err)
	}
	return v
}

// waitFor polls a JavaScript condition until it holds, failing the test with what after
// waitTimeout.
func (p *page) waitFor(what, cond string) {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, waitTimeout+5*time.Second)
	defer cancel()
	_, err := chromedp.Run(ctx, chromedp.Poll[chromedp.Void](cond,
		chromedp.WithPollingInterval(50*time.Millisecond), chromedp.WithPollingTimeout(waitTimeout)))
	if err != nil {
		p.t.Fatalf("%s: waiting for %s: %v\n%s", p.name, what, err, p.dump())
	}
}

// dump is the page's visible text, to explain a failure.
func (p *page) dump() string {
	ctx, cancel := context.WithTimeout(p.ctx, 3*time.Second)
	defer cancel()
	text, err := chromedp.Run(ctx, chromedp.Evaluate[string](`document.body.dataset.conn + "\n" + document.body.innerText.slice(0, 3000)`))
	if err != nil {
		return "(no page text: " + err.Error() + ")"
	}
	return "--- page of " + p.name + " ---\n" + text
}

// js quotes s as a JavaScript string literal.
func js(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

// open loads the page at url and waits for the join form.
func (p *page) open(url string) {
	p.t.Helper()
	p.do(chromedp.Navigate(url), chromedp.WaitVisible(chromedp.ID("join-user")))
}

// join opens the page on room and joins it as user, from the join form.
func (p *page) join(base, user, room string) {
	p.t.Helper()
	p.open(base + "/#" + room)
	p.do(chromedp.SetValue(chromedp.ID("join-user"), user), chromedp.Click(chromedp.ID("join-submit")))
	p.waitInRoom(room)
}

// waitInRoom waits until the page shows room, connected.
func (p *page) waitInRoom(room string) {
	p.t.Helper()
	p.waitFor("room "+room+", connected", fmt.Sprintf(
		`!document.getElementById("chat-view").hidden && document.getElementById("room-title").textContent === %s && document.body.dataset.conn === "open"`,
		js(room)))
}

// say types text into the message box and presses Enter.
func (p *page) say(text string) {
	p.t.Helper()
	p.do(chromedp.SendKeys(chromedp.ID("text"), text+"\n"))
}

// messagesJS lists the messages that the room on screen shows: ordered by the server, not
// the ones still on their way.
const messagesJS = `[...document.querySelectorAll(".messages:not([hidden]) .list .msg")].map(m => ({seq: +m.dataset.seq, user: m.dataset.user, text: m.querySelector(".text").textContent, own: m.classList.contains("own")}))`

// peopleJS is the page's online list: the names, joined with commas.
const peopleJS = `[...document.querySelectorAll("#people-list li")].map(li => li.dataset.user).join()`

// atBottomJS tells whether the room on screen is scrolled to its newest message.
const atBottomJS = `(() => { const s = document.querySelector(".messages:not([hidden])"); return s.scrollHeight - s.scrollTop - s.clientHeight < 5; })()`

// shownMessage is a message as the page shows it.
type shownMessage struct {
	Seq  int    `json:"seq"`
	User string `json:"user"`
	Text string `json:"text"`
	Own  bool   `json:"own"`
}

func (p *page) messages() []shownMessage {
	p.t.Helper()
	return eval[[]shownMessage](p, messagesJS)
}

// waitMessage waits until the room on screen shows a message with text.
func (p *page) waitMessage(text string) {
	p.t.Helper()
	p.waitFor("message "+js(text), fmt.Sprintf(`%s.some(m => m.text === %s)`, messagesJS, js(text)))
}

// screenshot saves a screenshot of the page as name.png in the screenshot directory
// ($SHARDCHAT_UI_SCREENSHOTS, or shardchat-ui in the temporary directory) and logs its path.
func (p *page) screenshot(name string) string {
	p.t.Helper()
	dir := os.Getenv("SHARDCHAT_UI_SCREENSHOTS")
	if dir == "" {
		dir = filepath.Join(os.TempDir(), "shardchat-ui")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		p.t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(p.ctx, waitTimeout)
	defer cancel()
	png, err := chromedp.Run(ctx, chromedp.CaptureScreenshot())
	if err != nil {
		p.t.Fatalf("%s: screenshot: %v", p.name, err)
	}
	path := filepath.Join(dir, name+".png")
	if err := os.WriteFile(path, png, 0o644); err != nil {
		p.t.Fatal(err)
	}
	p.t.Logf("screenshot of %s: %s", p.name, path)
	return path
}

// darkMode makes the page see prefers-color-scheme: dark.
func (p *page) darkMode() {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, waitTimeout)
	defer cancel()
	_, err := chromedp.Call(ctx, emulation.SetEmulatedMedia, emulation.SetEmulatedMediaParams{
		Features: []*emulation.MediaFeature{{Name: "prefers-color-scheme", Value: "dark"}},
	})
	if err != nil {
		p.t.Fatalf("%s: dark mode: %v", p.name, err)
	}
}

// wsClient is a plain protocol client, for a third person or for filling a room quickly.
type wsClient struct {
	t    *testing.T
	conn *websocket.Conn
	objs chan map[string]any
	done chan struct{}
	err  error // why the connection ended; set before objs closes
}

func dialWS(t *testing.T, base string) *wsClient {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	conn, _, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(base, "http")+"/ws", nil)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	conn.SetReadLimit(-1)
	c := &wsClient{t: t, conn: conn, objs: make(chan map[string]any, 10000), done: make(chan struct{})}
	go func() {
		defer close(c.done)
		defer close(c.objs)
		for {
			_, frame, err := conn.Read(context.Background())
			if err != nil {
				c.err = err
				return
			}
			for _, line := range strings.Split(string(frame), "\n") {
				var obj map[string]any
				if json.Unmarshal([]byte(line), &obj) == nil {
					c.objs <- obj
				}
			}
		}
	}()
	t.Cleanup(func() {
		_ = conn.CloseNow()
		<-c.done
	})
	return c
}

func (c *wsClient) send(obj map[string]any) {
	c.t.Helper()
	b, _ := json.Marshal(obj)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := c.conn.Write(ctx, websocket.MessageText, b); err != nil {
		c.t.Fatalf("write: %v", err)
	}
}

// waitFor reads objects until one satisfies ok.
func (c *wsClient) waitFor(what string, ok func(map[string]any) bool) map[string]any {
	c.t.Helper()
	timeout := time.After(waitTimeout)
	for {
		select {
		case obj, open := <-c.objs:
			if !open {
				c.t.Fatalf("connection ended while waiting for %s: %v", what, c.err)
			}
			if obj["type"] == "error" {
				c.t.Fatalf("error while waiting for %s: %v", what, obj)
			}
			if ok(obj) {
				return obj
			}
		case <-timeout:
			c.t.Fatalf("no %s within %s", what, waitTimeout)
		}
	}
}

func (c *wsClient) join(room, user string) {
	c.t.Helper()
	c.send(map[string]any{"type": "join", "room": room, "user": user, "ref": "j"})
	c.waitFor("joined "+room, func(o map[string]any) bool { return o["type"] == "joined" && o["room"] == room })
}

// say sends a message and waits for its echo.
func (c *wsClient) say(room, text string) {
	c.t.Helper()
	ref := fmt.Sprintf("r%d", time.Now().UnixNano())
	c.send(map[string]any{"type": "message", "room": room, "text": text, "ref": ref})
	c.waitFor("echo of "+text, func(o map[string]any) bool { return o["type"] == "message" && o["ref"] == ref })
}

// cutProxy forwards TCP connections to a server until it is cut: then it drops every
// connection it carries and refuses new ones until restored. A page loaded through it
// loses its connection the way a phone going through a tunnel does.
type cutProxy struct {
	t      *testing.T
	ln     net.Listener
	target string
	wg     sync.WaitGroup

	mu    sync.Mutex
	down  bool
	conns map[net.Conn]struct{}
}

func newCutProxy(t *testing.T, target string) *cutProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &cutProxy{t: t, ln: ln, target: target, conns: make(map[net.Conn]struct{})}
	p.wg.Go(p.accept)
	t.Cleanup(func() {
		ln.Close()
		p.cut()
		p.wg.Wait()
	})
	return p
}

// base is the proxy's http:// address.
func (p *cutProxy) base() string { return "http://" + p.ln.Addr().String() }

func (p *cutProxy) accept() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		if p.down {
			p.mu.Unlock()
			c.Close()
			continue
		}
		p.conns[c] = struct{}{}
		p.mu.Unlock()
		p.wg.Go(func() { p.pipe(c) })
	}
}

func (p *cutProxy) pipe(c net.Conn) {
	defer p.forget(c)
	up, err := net.Dial("tcp", p.target)
	if err != nil {
		return
	}
	p.mu.Lock()
	if p.down {
		p.mu.Unlock()
		up.Close()
		return
	}
	p.conns[up] = struct{}{}
	p.mu.Unlock()
	defer p.forget(up)
	var wg sync.WaitGroup
	wg.Go(func() {
		_, _ = io.Copy(up, c)
		up.Close()
	})
	_, _ = io.Copy(c, up)
	c.Close()
	wg.Wait()
}

func (p *cutProxy) forget(c net.Conn) {
	c.Close()
	p.mu.Lock()
	delete(p.conns, c)
	p.mu.Unlock()
}

// cut drops every connection and refuses new ones.
func (p *cutProxy) cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.down = true
	for c := range p.conns {
		c.Close()
	}
}

// restore lets connections through again.
func (p *cutProxy) restore() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.down = false
}

// roomInfo is a room as GET /api/rooms lists it.
type roomInfo struct {
	Room    string `json:"room"`
	Members int    `json:"members"`
}

// getRooms reads GET /api/rooms.
func getRooms(t *testing.T, base string) []roomInfo {
	t.Helper()
	res, err := http.Get(base + "/api/rooms")
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	var body struct {
		Rooms []roomInfo `json:"rooms"`
	}
	if err := json.NewDecoder(res.Body).Decode(&body); err != nil {
		t.Fatal(errors.Join(errors.New("decode /api/rooms"), err))
	}
	return body.Rooms
}

// waitRoomsListed waits until GET /api/rooms, which the server recomputes at most once a
// second, lists room.
func waitRoomsListed(t *testing.T, base, room string) {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for {
		rooms := getRooms(t, base)
		if slices.ContainsFunc(rooms, func(r roomInfo) bool { return r.Room == room }) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("GET /api/rooms does not list %s: %+v", room, rooms)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
