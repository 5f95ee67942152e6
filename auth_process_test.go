package main

import (
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/coder/websocket"

	"github.com/shardchat/shardchat/transport/wire"
)

// TestTokenCommand: `shardchat token` makes a token that `shardchat serve` with the same
// secret file accepts, for the rooms it names.
func TestTokenCommand(t *testing.T) {
	secretFile := filepath.Join(t.TempDir(), "secret")
	if err := os.WriteFile(secretFile, []byte("a secret of at least thirty-two bytes, for the test\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(binary(t), "token", "--secret-file", secretFile, "--sub", "alice", "--rooms", "team-*", "--ttl", "1h").Output()
	if err != nil {
		t.Fatalf("shardchat token: %v", err)
	}
	tok := strings.TrimSpace(string(out))
	if strings.Count(tok, ".") != 2 {
		t.Fatalf("not a JWT: %q", tok)
	}

	host := startServe(t, "--auth-hmac-secret-file", secretFile)
	resp, err := http.Get("http://" + host.addr + "/ws")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("no token: %d, want 401", resp.StatusCode)
	}
	c := dialWS(t, "ws://"+host.addr+"/ws?token="+tok)
	c.send(wire.ClientRequest{Type: wire.TypeJoin, Room: "team-red"})
	if j := c.nextOf(wire.TypeJoined); j.User != "alice" {
		t.Fatalf("joined as %q", j.User)
	}
	c.send(wire.ClientRequest{Type: wire.TypeJoin, Room: "general", Ref: "g"})
	if e := c.nextOf(wire.TypeError); e.Code != wire.CodeUnauthorized {
		t.Fatalf("join outside the token's rooms: %+v", e)
	}
	_ = c.conn.Close(websocket.StatusNormalClosure, "")
}

// TestTokenAudienceAndIssuer: a server run with --auth-audience and --auth-issuer takes the
// tokens `shardchat token --aud --iss` makes for it, and refuses one minted for another service.
func TestTokenAudienceAndIssuer(t *testing.T) {
	secretFile := filepath.Join(t.TempDir(), "secret")
	if err := os.WriteFile(secretFile, []byte("a secret of at least thirty-two bytes, for the test\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	mint := func(aud string) string {
		t.Helper()
		out, err := exec.Command(binary(t), "token", "--secret-file", secretFile, "--sub", "alice", "--aud", aud, "--iss", "login").Output()
		if err != nil {
			t.Fatalf("shardchat token --aud %s: %v", aud, err)
		}
		return strings.TrimSpace(string(out))
	}
	host := startServe(t, "--auth-hmac-secret-file", secretFile, "--auth-audience", "chat", "--auth-issuer", "login")
	resp, err := http.Get("http://" + host.addr + "/ws?token=" + mint("billing"))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized || !strings.Contains(string(body), "aud") {
		t.Fatalf("a token for another service: %d %q, want 401 naming aud", resp.StatusCode, body)
	}
	c := dialWS(t, "ws://"+host.addr+"/ws?token="+mint("chat"))
	c.send(wire.ClientRequest{Type: wire.TypeJoin, Room: "r"})
	if j := c.nextOf(wire.TypeJoined); j.User != "alice" {
		t.Fatalf("joined as %q", j.User)
	}
	_ = c.conn.Close(websocket.StatusNormalClosure, "")
}
