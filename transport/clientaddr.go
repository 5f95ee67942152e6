package transport

import (
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"strings"
)

// proxies resolves a request's client address. X-Forwarded-For is read only when the direct
// peer is a trusted proxy, and then from the right: each trusted proxy appends the address it
// got the request from, so the first address from the right that is not a trusted proxy is
// the client. A client cannot spoof its address by sending the header itself: the first
// proxy appends the client's real address after whatever the client wrote.
type proxies []netip.Prefix

// parseProxies reads CIDRs (or single addresses) of trusted proxies.
func parseProxies(list []string) (proxies, error) {
	var ps proxies
	for _, s := range list {
		s = strings.TrimSpace(s)
		if s == "" {
			continue
		}
		if !strings.Contains(s, "/") {
			addr, err := netip.ParseAddr(s)
			if err != nil {
				return nil, fmt.Errorf("trusted proxy %q: want a CIDR such as 10.0.0.0/8 or an address", s)
			}
			ps = append(ps, netip.PrefixFrom(addr.Unmap(), addr.Unmap().BitLen()))
			continue
		}
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return nil, fmt.Errorf("trusted proxy %q: want a CIDR such as 10.0.0.0/8 or an address", s)
		}
		ps = append(ps, p.Masked())
	}
	return ps, nil
}

func (ps proxies) trusted(a netip.Addr) bool {
	a = a.Unmap()
	for _, p := range ps {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// clientAddr returns the address of the client behind r.
func (ps proxies) clientAddr(r *http.Request) netip.Addr {
	peer := remoteAddr(r.RemoteAddr)
	if !peer.IsValid() || len(ps) == 0 || !ps.trusted(peer) {
		return peer
	}
	return ps.fromForwarded(peer, r.Header.Values("X-Forwarded-For"))
}

// fromForwarded walks X-Forwarded-For from the right and returns the first address that is
// not a trusted proxy; peer when the header is absent or unreadable.
func (ps proxies) fromForwarded(peer netip.Addr, headers []string) netip.Addr {
	client := peer
	for i := len(headers) - 1; i >= 0; i-- {
		hops := strings.Split(headers[i], ",")
		for j := len(hops) - 1; j >= 0; j-- {
			addr, err := netip.ParseAddr(strings.TrimSpace(hops[j]))
			if err != nil {
				return client // garbage from further left cannot be trusted
			}
			client = addr.Unmap()
			if !ps.trusted(client) {
				return client
			}
		}
	}
	return client
}

// remoteAddr parses an http.Request RemoteAddr ("ip:port").
func remoteAddr(s string) netip.Addr {
	if ap, err := netip.ParseAddrPort(s); err == nil {
		return ap.Addr().Unmap()
	}
	host, _, err := net.SplitHostPort(s)
	if err != nil {
		host = s
	}
	addr, _ := netip.ParseAddr(host)
	return addr.Unmap()
}
