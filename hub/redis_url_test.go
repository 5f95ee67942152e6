package hub

import (
	"slices"
	"strings"
	"testing"
)

// TestParseRedisURL: the forms --redis-url takes (one address, several seed addresses for
// Redis Cluster, credentials, a database, TLS), and errors that say what to fix without
// showing the password.
func TestParseRedisURL(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, url  string
		addrs      []string
		user, pass string
		db         int
		tls        bool
		err        string // a part of the error; "" for none
	}{
		{name: "one host", url: "redis://127.0.0.1:6379", addrs: []string{"127.0.0.1:6379"}},
		{name: "credentials and a database", url: "redis://app:s3cret@10.0.0.5:6380/2", addrs: []string{"10.0.0.5:6380"}, user: "app", pass: "s3cret", db: 2},
		{name: "a percent-encoded password", url: "redis://app:p%23s%2Fs%40@h1:6379", addrs: []string{"h1:6379"}, user: "app", pass: "p#s/s@"},
		{name: "TLS", url: "rediss://cache.example.com:6380", addrs: []string{"cache.example.com:6380"}, tls: true},
		{name: "cluster seeds", url: "redis://h1:7000,h2:7001,h3:7002", addrs: []string{"h1:7000", "h2:7001", "h3:7002"}},
		{name: "cluster seeds with credentials and a query", url: "redis://app:s3cret@h1:7000,h2:7001/0?dial_timeout=2s", addrs: []string{"h1:7000", "h2:7001"}, user: "app", pass: "s3cret"},
		{name: "cluster seeds without ports, TLS", url: "rediss://h1,h2", addrs: []string{"h1:6379", "h2:6379"}, tls: true},
		{name: "IPv6 cluster seeds", url: "redis://[::1]:7000,[::2]:7001,[::3]", addrs: []string{"[::1]:7000", "[::2]:7001", "[::3]:6379"}},
		{name: "an empty seed", url: "redis://h1:7000,,h2:7001", err: "an empty address"},
		{name: "a seed with a bad port", url: "redis://h1:7000,h2:notaport", err: `seed address "h2:notaport"`},
		{name: "a seed with two ports", url: "redis://h1:7000,h2:7001:9", err: "is not host:port"},
		{name: "an IPv6 seed without brackets", url: "redis://h1,fe80::1:7000", err: "is not host:port"},
		{name: "a seed with garbage after its brackets", url: "redis://h1:7000,[::2]x", err: "is not host:port"},
		{name: "a seed with a space", url: "redis://h1:7000, h2:7001", err: "is not host:port"},
		{name: "empty", url: "", err: "redis URL is empty"},
		{name: "another scheme", url: "http://h1:6379", err: "invalid URL scheme: http"},
		{name: "a bad port, password hidden", url: "redis://app:s3cret@h1:notaport", err: "check the host, the port"},
		{name: "a bad database, password hidden", url: "redis://app:s3cret@h1:6379/x", err: "check the host, the port and the database"},
		{name: "a bad port, no credentials: the reason", url: "redis://h1:notaport", err: `invalid port ":notaport"`},
		{name: "no scheme, password hidden", url: "app:s3cret@h1:6379", err: "it does not parse"},
		// An unescaped / ? or # in a password would have a parser read the rest as a path, a
		// query or a fragment: a wrong host, or the password in its error. None of it shows.
		{name: "an unescaped # in the password", url: "redis://app:s3#cret@h1:6379", err: "percent-encode"},
		{name: "a # after a port-like password", url: "redis://app:1#s3cret@h1:6379", err: "percent-encode"},
		{name: "a / after a port-like password", url: "redis://app:6379/s3cret@h1:6379", err: "percent-encode"},
		{name: "a / after an empty password", url: "redis://app:/s3cret@h1", err: "percent-encode"},
		{name: "a ? after a port-like password", url: "redis://app:6379?dial_timeout=s3cret@h1", err: "percent-encode"},
		{name: "seeds after a / in the password", url: "redis://app:1/s3cret@h1:7000,h2:7001", err: "percent-encode"},
		{name: "an @ in a query value", url: "redis://h1:6379/0?client_name=a@b", err: "percent-encode"},
		{name: "a comma after the database, password hidden", url: "redis://app:s3cret@h1:6379/x,h2:1", err: "it does not parse"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			opt, err := parseRedisURL(tc.url)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("parseRedisURL(%q) = %v, want an error with %q", tc.url, err, tc.err)
				}
				if strings.Contains(err.Error(), "s3cret") {
					t.Errorf("the error shows the password: %v", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("parseRedisURL(%q): %v", tc.url, err)
			}
			if !slices.Equal(opt.InitAddress, tc.addrs) || opt.Username != tc.user || opt.Password != tc.pass || opt.SelectDB != tc.db || (opt.TLSConfig != nil) != tc.tls {
				t.Errorf("parseRedisURL(%q) = addresses %v, user %q, password %q, db %d, TLS %v; want %v, %q, %q, %d, %v",
					tc.url, opt.InitAddress, opt.Username, opt.Password, opt.SelectDB, opt.TLSConfig != nil, tc.addrs, tc.user, tc.pass, tc.db, tc.tls)
			}
		})
	}
}

// TestRedactURL: a password never reaches a log line, whether or not the URL parses.
func TestRedactURL(t *testing.T) {
	t.Parallel()
	for _, raw := range []string{
		"redis://app:s3cret@h1:6379",
		"redis://app:s3cret@h1:7000,h2:7001", // url.Parse refuses the port list
		"rediss://:s3cret@h1:6380/1",
		"redis://app:s3#cret@h1:6379", // url.Parse sees a fragment, and no password
		"app:s3cret@h1:6379",          // no scheme
	} {
		got := redactURL(raw)
		if strings.Contains(got, "s3cret") || !strings.Contains(got, "h1") {
			t.Errorf("redactURL(%q) = %q, want the host without the password", raw, got)
		}
	}
	if got := redactURL("redis://h1:6379"); got != "redis://h1:6379" {
		t.Errorf("redactURL of a URL without a password = %q, want it unchanged", got)
	}
}

// FuzzParseRedisURL: whatever the password and whatever follows it in a --redis-url,
// parsing never panics, and neither an error nor the redacted URL shows the password, whole
// or in part: the markers at its two ends catch a piece of it cut at a special character.
// TestCutRedisURL: where a Redis URL's parts end, read by hand; they add up to the URL.
func TestCutRedisURL(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ raw, scheme, creds, hosts, tail string }{
		{"redis://h1:6379", "redis://", "", "h1:6379", ""},
		{"redis://app:s3cret@h1:7000,h2:7001/0?x=1", "redis://", "app:s3cret@", "h1:7000,h2:7001", "/0?x=1"},
		{"rediss://a:p/w@d@h1?x=1", "rediss://", "a:p/w@d@", "h1", "?x=1"},
		{"app:s3cret@h1:6379", "", "app:s3cret@", "h1:6379", ""},
		{"a@b://c", "", "a@", "b:", "//c"}, // "://" after an @ is not a scheme's
		{"", "", "", "", ""},
	} {
		scheme, creds, hosts, tail := cutRedisURL(tc.raw)
		if scheme != tc.scheme || creds != tc.creds || hosts != tc.hosts || tail != tc.tail {
			t.Errorf("cutRedisURL(%q) = %q %q %q %q, want %q %q %q %q", tc.raw, scheme, creds, hosts, tail, tc.scheme, tc.creds, tc.hosts, tc.tail)
		}
	}
}

func FuzzParseRedisURL(f *testing.F) {
	for _, s := range []string{"h1:6379", "h1:7000,h2:7001/0?dial_timeout=2s", "h1:notaport", "[::1]:6379/2", "h1:6379/x", "%zz", "h1:1,h2:x", "x@h1:1"} {
		f.Add("s3cret", s)
	}
	for _, p := range []string{"pa#ss/wo?rd", "p@ss", "@/", "1#x", "6379/x", "6379?dial_timeout=x", ""} {
		f.Add(p, "h1:6379")
	}
	f.Fuzz(func(t *testing.T, password, rest string) {
		const start, end = "PWSTART", "PWEND"
		if strings.Contains(rest, start) || strings.Contains(rest, end) {
			t.Skip("the rest holds a marker")
		}
		raw := "redis://app:" + start + password + end + "@" + rest
		if _, err := parseRedisURL(raw); err != nil && (strings.Contains(err.Error(), start) || strings.Contains(err.Error(), end)) {
			t.Fatalf("parseRedisURL(%q) = %v: the password shows", raw, err)
		}
		if got := redactURL(raw); strings.Contains(got, start) || strings.Contains(got, end) {
			t.Fatalf("redactURL(%q) = %q: the password shows", raw, got)
		}
		if scheme, creds, hosts, tail := cutRedisURL(raw); scheme+creds+hosts+tail != raw {
			t.Fatalf("cutRedisURL(%q) = %q %q %q %q: not the URL's parts", raw, scheme, creds, hosts, tail)
		}
	})
}
