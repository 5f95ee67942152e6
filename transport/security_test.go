package transport

import (
	"context"
	"io"
	"net/http"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/shardchat/shardchat/shard"
	"github.com/shardchat/shardchat/transport/auth"
	"github.com/shardchat/shardchat/transport/wire"
)

var testSecret = []byte("a test secret that is long enough, 32+ bytes")

func verifier(t testing.TB) *auth.Verifier {
	t.Helper()
	v, err := auth.NewVerifier(auth.Config{HMACSecret: testSecret, Leeway: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func token(t testing.TB, sub string, rooms []string, ttl time.Duration) string {
	t.Helper()
	tok, err := auth.SignHS256(testSecret, sub, rooms, ttl, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// dialWith dials with a query and headers, and returns the client or the refusal.
func (e *testEnv) dialWith(query string, h http.Header) (*client, *http.Response, error) {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	conn, resp, err := websocket.Dial(ctx, e.url+query, &websocket.DialOptions{HTTPHeader: h})
	if err != nil {
		return nil, resp, err
	}
	conn.SetReadLimit(-1)
	c := &client{t: e.t, conn: conn, events: make(chan wire.Event, 100000), done: make(chan error, 1)}
	c.startReading()
	if ev := c.next(); ev.Type != wire.TypeWelcome {
		e.t.Fatalf("first object %+v", ev)
	}
	return c, resp, nil
}

func TestAuthAtUpgrade(t *testing.T) {
	t.Parallel()
	env := setupTest(t, Config{Auth: verifier(t)}, shard.Config{})
	expired, _ := auth.SignHS256(testSecret, "alice", nil, time.Second, time.Now().Add(-time.Hour))
	cases := []struct {
		name   string
		query  string
		header string
		reason auth.Reason // zero: accepted
	}{
		{"query", "?token=" + token(t, "alice", nil, time.Hour), "", auth.Reason{}},
		{"bearer header", "", "Bearer " + token(t, "alice", nil, time.Hour), auth.Reason{}},
		{"no token", "", "", auth.ReasonMissing},
		{"expired", "?token=" + expired, "", auth.ReasonExpired},
		{"garbage", "?token=abc", "", auth.ReasonMalformed},
		{"basic auth", "", "Basic YTpi", auth.ReasonMalformed},
	}
	for _, tc := range cases {
		h := http.Header{}
		if tc.header != "" {
			h.Set("Authorization", tc.header)
		}
		before := testutil.ToFloat64(env.metrics.upgradesRefused.WithLabelValues(tc.reason.Metric))
		c, resp, err := env.dialWith(tc.query, h)
		if tc.reason == (auth.Reason{}) {
			if err != nil {
				t.Errorf("%s: refused: %v", tc.name, err)
				continue
			}
			_ = c.conn.CloseNow()
			continue
		}
		if err == nil {
			t.Errorf("%s: accepted", tc.name)
			continue
		}
		if resp == nil || resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("%s: %v, want 401", tc.name, err)
			continue
		}
		if after := testutil.ToFloat64(env.metrics.upgradesRefused.WithLabelValues(tc.reason.Metric)); after != before+1 {
			t.Errorf("%s: refusal not counted as %s", tc.name, tc.reason.Metric)
		}
	}
	// The reason is one line a person can read.
	resp, err := http.Get(env.http.URL + "/ws?token=abc")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized || strings.TrimSpace(string(body)) != auth.ReasonMalformed.Message {
		t.Fatalf("GET /ws with a bad token: %d %q", resp.StatusCode, body)
	}
}

func TestAuthRooms(t *testing.T) {
	t.Parallel()
	env := setupTest(t, Config{Auth: verifier(t)}, shard.Config{})
	c, _, err := env.dialWith("?token="+token(t, "alice", []string{"team-*"}, time.Hour), nil)
	if err != nil {
		t.Fatal(err)
	}
	if j := c.join("team-a", ""); j.User != "alice" {
		t.Fatalf("joined as %q, want the token's sub", j.User)
	}
	c.send(wire.ClientRequest{Type: wire.TypeJoin, Room: "general", Ref: "g"})
	c.expectError(wire.CodeUnauthorized, "g")
	c.send(wire.ClientRequest{Type: wire.TypeJoin, Room: "team-b", User: "mallory", Ref: "m"})
	c.expectError(wire.CodeUnauthorized, "m")
	c.join("team-b", "alice") // naming oneself is fine
}

func TestAuthExpiryAndRecovery(t *testing.T) {
	t.Parallel()
	env := setupTest(t, Config{Auth: verifier(t)}, shard.Config{})
	other, _, err := env.dialWith("?token="+token(t, "bob", nil, time.Hour), nil)
	if err != nil {
		t.Fatal(err)
	}
	other.join("r", "")
	short, _, err := env.dialWith("?token="+token(t, "alice", nil, 2*time.Second), nil)
	if err != nil {
		t.Fatal(err)
	}
	j := short.join("r", "")
	short.expectClose(wire.CloseTokenExpired)
	waitFor(t, func() bool { return closedCount(env.metrics, wire.CloseTokenExpired) == 1 })

	other.send(wire.ClientRequest{Type: wire.TypeMessage, Room: "r", Text: "while you were away"})
	other.nextOf(wire.TypeMessage)
	waitFor(t, func() bool { // alice's old seat is gone
		other.send(wire.ClientRequest{Type: wire.TypeUsers, Room: "r"})
		return len(other.nextOf(wire.TypeUsers).Users) == 1
	})
	fresh, _, err := env.dialWith("?token="+token(t, "alice", nil, time.Hour), nil)
	if err != nil {
		t.Fatal(err)
	}
	fresh.send(wire.ClientRequest{Type: wire.TypeJoin, Room: "r", Since: &wire.Since{Epoch: j.Epoch, Seq: j.Seq}})
	got := fresh.nextOf(wire.TypeJoined)
	if !got.Recovered || len(got.History) != 1 || got.History[0].Text != "while you were away" {
		t.Fatalf("recovery after a fresh token: %+v", got)
	}
}

func TestPerAddressLimits(t *testing.T) {
	t.Parallel()
	t.Run("connections", func(t *testing.T) {
		t.Parallel()
		env := setupTest(t, Config{MaxConnsPerIP: 2}, shard.Config{})
		a := env.dial()
		env.dial()
		_, resp, err := websocket.Dial(context.Background(), env.url, nil)
		if err == nil || resp == nil || resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("Retry-After") == "" {
			t.Fatalf("third connection from one address: %v %v, want 429 with Retry-After", err, resp)
		}
		if n := testutil.ToFloat64(env.metrics.upgradesRefused.WithLabelValues(refuseIPConns)); n != 1 {
			t.Fatalf("refused{ip_conns} = %v", n)
		}
		_ = a.conn.Close(websocket.StatusNormalClosure, "")
		waitFor(t, func() bool {
			c, _, err := websocket.Dial(context.Background(), env.url, nil)
			if err == nil {
				_ = c.CloseNow()
			}
			return err == nil
		})
	})
	t.Run("connect rate", func(t *testing.T) {
		t.Parallel()
		env := setupTest(t, Config{ConnectRatePerIP: 0.5, ConnectBurstPerIP: 2}, shard.Config{})
		env.dial()
		env.dial()
		_, resp, err := websocket.Dial(context.Background(), env.url, nil)
		if err == nil || resp == nil || resp.StatusCode != http.StatusTooManyRequests {
			t.Fatalf("third connection within a second: %v %v, want 429", err, resp)
		}
		if ra := resp.Header.Get("Retry-After"); ra != "2" {
			t.Fatalf("Retry-After %q, want 2 (seconds to the next token at 0.5/s)", ra)
		}
	})
	t.Run("bad tokens spend the bucket", func(t *testing.T) {
		t.Parallel()
		env := setupTest(t, Config{Auth: verifier(t), MaxConnsPerIP: 1, ConnectRatePerIP: 0.5, ConnectBurstPerIP: 2}, shard.Config{})
		for i, want := range []int{http.StatusUnauthorized, http.StatusUnauthorized, http.StatusTooManyRequests} {
			_, resp, err := env.dialWith("?token=not-a-token", nil)
			if err == nil || resp == nil || resp.StatusCode != want {
				t.Fatalf("bad token %d: %v %v, want HTTP %d", i, err, resp, want)
			}
		}
		// The refused tokens gave their connection slots back: only the rate refused.
		if n := testutil.ToFloat64(env.metrics.upgradesRefused.WithLabelValues(refuseIPRate)); n != 1 {
			t.Fatalf("refused{ip_rate} = %v, want 1", n)
		}
	})
	t.Run("forwarded for", func(t *testing.T) {
		t.Parallel()
		for _, tc := range []struct {
			trusted []string
			second  bool // whether a second connection with another X-Forwarded-For gets in
		}{{nil, false}, {[]string{"127.0.0.0/8"}, true}} {
			env := setupTest(t, Config{MaxConnsPerIP: 1, TrustedProxies: tc.trusted}, shard.Config{})
			h1 := http.Header{"X-Forwarded-For": {"203.0.113.7"}}
			if _, _, err := env.dialWith("", h1); err != nil {
				t.Fatal(err)
			}
			h2 := http.Header{"X-Forwarded-For": {"203.0.113.8"}}
			_, _, err := env.dialWith("", h2)
			if (err == nil) != tc.second {
				t.Fatalf("trusted %v: second client behind the proxy: %v", tc.trusted, err)
			}
		}
	})
}

func TestClientAddress(t *testing.T) {
	t.Parallel()
	ps, err := parseProxies([]string{"10.0.0.0/8", "192.168.1.1", "fd00::/8"})
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		peer string
		xff  []string
		want string
	}{
		{"203.0.113.1:5000", []string{"1.2.3.4"}, "203.0.113.1"},             // untrusted peer: header ignored
		{"10.0.0.5:5000", nil, "10.0.0.5"},                                   // trusted, no header
		{"10.0.0.5:5000", []string{"1.2.3.4"}, "1.2.3.4"},                    // one proxy
		{"10.0.0.5:5000", []string{"6.6.6.6, 1.2.3.4, 10.1.1.1"}, "1.2.3.4"}, // spoofed left part skipped
		{"10.0.0.5:5000", []string{"6.6.6.6", "1.2.3.4"}, "1.2.3.4"},         // several headers
		{"192.168.1.1:80", []string{"garbage, 1.2.3.4"}, "1.2.3.4"},
		{"192.168.1.1:80", []string{"1.2.3.4, garbage"}, "192.168.1.1"}, // unreadable: stop at the peer
		{"10.0.0.5:5000", []string{"10.0.0.9, 10.0.0.8"}, "10.0.0.9"},   // all proxies: the leftmost
		{"[fd00::1]:443", []string{"2001:db8::5"}, "2001:db8::5"},
		{"[::ffff:10.0.0.5]:1", []string{"::ffff:1.2.3.4"}, "1.2.3.4"},
	}
	for _, tc := range cases {
		r := &http.Request{RemoteAddr: tc.peer, Header: http.Header{"X-Forwarded-For": tc.xff}}
		if got := ps.clientAddr(r); got.String() != tc.want {
			t.Errorf("peer %s, X-Forwarded-For %q: %s, want %s", tc.peer, tc.xff, got, tc.want)
		}
	}
	if _, err := parseProxies([]string{"10.0.0.0/33"}); err == nil {
		t.Fatal("a bad CIDR was accepted")
	}
}

// FuzzClientAddress: whatever X-Forwarded-For holds, the client address is the peer or one of
// the addresses in the header, and an untrusted peer is never overridden.
func FuzzClientAddress(f *testing.F) {
	f.Add("10.0.0.5:5000", "1.2.3.4, 10.1.1.1")
	f.Add("203.0.113.1:80", "::1")
	f.Add("[fd00::1]:1", ",,, ,")
	ps, _ := parseProxies([]string{"10.0.0.0/8", "fd00::/8"})
	f.Fuzz(func(t *testing.T, peer, xff string) {
		r := &http.Request{RemoteAddr: peer, Header: http.Header{"X-Forwarded-For": {xff}}}
		got := ps.clientAddr(r)
		p := remoteAddr(peer)
		if !p.IsValid() || !ps.trusted(p) {
			if got != p {
				t.Fatalf("untrusted peer %q overridden by %q", peer, got)
			}
			return
		}
		if got == p {
			return
		}
		for _, hop := range strings.Split(xff, ",") {
			if a, err := netip.ParseAddr(strings.TrimSpace(hop)); err == nil && a.Unmap() == got {
				return
			}
		}
		t.Fatalf("client %s is neither the peer %s nor in %q", got, peer, xff)
	})
}

func TestRoomsAPIWithAuth(t *testing.T) {
	t.Parallel()
	env := setupTest(t, Config{Auth: verifier(t)}, shard.Config{})
	for _, who := range []struct{ user, room string }{{"a", "team-a"}, {"b", "secret"}} {
		c, _, err := env.dialWith("?token="+token(t, who.user, nil, time.Hour), nil)
		if err != nil {
			t.Fatal(err)
		}
		c.join(who.room, "")
	}
	get := func(query string) (int, string) {
		resp, err := http.Get(env.http.URL + "/api/rooms" + query)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(body)
	}
	if code, _ := get(""); code != http.StatusUnauthorized {
		t.Fatalf("/api/rooms without a token: %d, want 401", code)
	}
	code, body := get("?token=" + token(t, "viewer", []string{"team-*"}, time.Hour))
	if code != http.StatusOK || !strings.Contains(body, `"team-a"`) || strings.Contains(body, "secret") {
		t.Fatalf("/api/rooms for a team token: %d %s", code, body)
	}
}
