package bench

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"syscall"
	"time"

	"github.com/coder/websocket"

	"github.com/shardchat/shardchat/transport/wire"
)

// httpClients returns one HTTP client per source address (or one with none), each dialing
// from its address, so that sockets spread over more ephemeral ports than one address has.
// control, when set, is applied to every socket (a test hook).
func httpClients(sourceIPs []string, control func(network, address string, c syscall.RawConn) error) []*http.Client {
	if len(sourceIPs) == 0 {
		sourceIPs = []string{""}
	}
	var out []*http.Client
	for _, ip := range sourceIPs {
		d := &net.Dialer{Timeout: defaultConnectTimeout, KeepAlive: -1, Control: control}
		if ip != "" {
			d.LocalAddr = &net.TCPAddr{IP: net.ParseIP(ip)}
		}
		out = append(out, &http.Client{Transport: &upgradeTransport{
			dial: d.DialContext,
			other: &http.Transport{
				DialContext:       d.DialContext,
				DisableKeepAlives: true, // a wss upgrade takes its connection for good; scrapes are few
				Proxy:             nil,  // load goes straight to the target, never through a proxy
			},
		}})
	}
	return out
}

// probe connects once to url and waits for welcome, to tell an unreachable or refusing target
// in one line before the run starts.
func probe(ctx context.Context, url string, hc *http.Client, timeout time.Duration) (wire.Limits, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	conn, resp, err := websocket.Dial(ctx, url, &websocket.DialOptions{HTTPClient: hc})
	if err != nil {
		return wire.Limits{}, fmt.Errorf("cannot reach %s: %s", url, dialReason(resp, err))
	}
	defer func() { _ = conn.CloseNow() }()
	conn.SetReadLimit(maxServerFrame)
	frame, err := readFrame(ctx, conn)
	if err != nil {
		return wire.Limits{}, fmt.Errorf("%s accepted the upgrade but sent no welcome: %s", url, shortError(err))
	}
	events, err := wire.DecodeFrame(nil, frame)
	if err != nil || len(events) == 0 || events[0].Type != wire.TypeWelcome || events[0].Limits == nil {
		return wire.Limits{}, fmt.Errorf("%s is not a shardchat server: its first object is not a welcome with limits", url)
	}
	_ = conn.Close(websocket.StatusNormalClosure, "probe done")
	return *events[0].Limits, nil
}
