package bench

import (
	"net"
	"net/http"
	"testing"
)

// TestSourceIPs holds --source-ips to its word: the sockets of a client come from the
// loopback address it was given, not the default one.
func TestSourceIPs(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	remotes := make(chan string, 2)
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		remotes <- r.RemoteAddr
	})}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	t.Cleanup(func() {
		_ = srv.Close()
		<-served
	})

	clients := httpClients([]string{"127.0.0.2", "127.0.0.3"}, nil)
	for i, want := range []string{"127.0.0.2", "127.0.0.3"} {
		resp, err := clients[i].Get("http://" + ln.Addr().String() + "/")
		if err != nil {
			t.Fatalf("from %s: %v", want, err)
		}
		_ = resp.Body.Close()
		host, _, _ := net.SplitHostPort(<-remotes)
		if host != want {
			t.Errorf("client %d came from %s, want %s", i, host, want)
		}
	}
}
