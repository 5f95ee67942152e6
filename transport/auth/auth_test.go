package auth

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

var (
	secret = []byte("0123456789abcdef0123456789abcdef-test-secret")
	now    = time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC)
	clock  = func() time.Time { return now }
)

func pemOf(t *testing.T, pub any) []byte {
	t.Helper()
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
}

func sign(t *testing.T, method jwt.SigningMethod, key any, claims jwt.Claims) string {
	t.Helper()
	s, err := jwt.NewWithClaims(method, claims).SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func claimsFor(sub string, exp time.Time) *Claims {
	c := &Claims{RegisteredClaims: jwt.RegisteredClaims{Subject: sub}}
	if !exp.IsZero() {
		c.ExpiresAt = jwt.NewNumericDate(exp)
	}
	return c
}

func TestVerify(t *testing.T) {
	t.Parallel()
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	ecKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	hs, err := NewVerifier(Config{HMACSecret: secret, Now: clock})
	if err != nil {
		t.Fatal(err)
	}
	rsaPEM := pemOf(t, &rsaKey.PublicKey)
	rs, err := NewVerifier(Config{PublicKeyPEM: rsaPEM, Now: clock})
	if err != nil {
		t.Fatal(err)
	}
	es, err := NewVerifier(Config{PublicKeyPEM: pemOf(t, &ecKey.PublicKey), Now: clock})
	if err != nil {
		t.Fatal(err)
	}
	later := now.Add(time.Hour)
	notBefore := claimsFor("alice", later)
	notBefore.NotBefore = jwt.NewNumericDate(now.Add(10 * time.Minute))
	withinLeeway := claimsFor("alice", now.Add(-10*time.Second))

	cases := []struct {
		name  string
		v     *Verifier
		token string
		want  Reason // zero: valid
	}{
		{"HS256", hs, sign(t, jwt.SigningMethodHS256, secret, claimsFor(" alice ", later)), Reason{}},
		{"RS256", rs, sign(t, jwt.SigningMethodRS256, rsaKey, claimsFor("alice", later)), Reason{}},
		{"ES256", es, sign(t, jwt.SigningMethodES256, ecKey, claimsFor("alice", later)), Reason{}},
		{"expired within the leeway", hs, sign(t, jwt.SigningMethodHS256, secret, withinLeeway), Reason{}},
		{"missing", hs, "", ReasonMissing},
		{"garbage", hs, "not.a.jwt", ReasonMalformed},
		{"wrong secret", hs, sign(t, jwt.SigningMethodHS256, []byte("another secret of at least 32 bytes!!"), claimsFor("alice", later)), ReasonSignature},
		{"expired", hs, sign(t, jwt.SigningMethodHS256, secret, claimsFor("alice", now.Add(-time.Hour))), ReasonExpired},
		{"not yet valid", hs, sign(t, jwt.SigningMethodHS256, secret, notBefore), ReasonNotYetValid},
		{"no exp", hs, sign(t, jwt.SigningMethodHS256, secret, claimsFor("alice", time.Time{})), ReasonNoExpiry},
		{"alg none", hs, sign(t, jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, claimsFor("alice", later)), ReasonAlgorithm},
		{"HS256 with the public key as secret", rs, sign(t, jwt.SigningMethodHS256, rsaPEM, claimsFor("alice", later)), ReasonAlgorithm},
		{"RS256 to an HS256 server", hs, sign(t, jwt.SigningMethodRS256, rsaKey, claimsFor("alice", later)), ReasonAlgorithm},
		{"ES256 signed by another key", es, sign(t, jwt.SigningMethodES256, mustEC(t), claimsFor("alice", later)), ReasonSignature},
		{"sub not a user name", hs, sign(t, jwt.SigningMethodHS256, secret, claimsFor("a\u0007b", later)), ReasonSubject},
		{"no sub", hs, sign(t, jwt.SigningMethodHS256, secret, claimsFor("", later)), ReasonSubject},
	}
	scoped, err := NewVerifier(Config{HMACSecret: secret, Now: clock, Audience: "chat", Issuer: "https://login.example"})
	if err != nil {
		t.Fatal(err)
	}
	issuerOnly, err := NewVerifier(Config{HMACSecret: secret, Now: clock, Issuer: "https://login.example"})
	if err != nil {
		t.Fatal(err)
	}
	scopedToken := func(aud, iss string) string {
		tok, err := SignHS256Token(secret, Token{Sub: "alice", TTL: time.Hour, Audience: aud, Issuer: iss}, now)
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	cases = append(cases, []struct {
		name  string
		v     *Verifier
		token string
		want  Reason
	}{
		{"aud and iss as configured", scoped, scopedToken("chat", "https://login.example"), Reason{}},
		{"aud of another service", scoped, scopedToken("billing", "https://login.example"), ReasonAudience},
		{"no aud", scoped, scopedToken("", "https://login.example"), ReasonAudience},
		{"another issuer", scoped, scopedToken("chat", "https://evil.example"), ReasonIssuer},
		{"no iss", scoped, scopedToken("chat", ""), ReasonIssuer},
		// aud not configured: a token with neither is refused for the issuer it lacks.
		{"no aud and no iss, issuer required", issuerOnly, scopedToken("", ""), ReasonIssuer},
		{"aud and iss ignored when not configured", hs, scopedToken("billing", "https://evil.example"), Reason{}},
		// Several claims missing: the library joins its errors; exp is named first.
		{"no exp and no aud", scoped, sign(t, jwt.SigningMethodHS256, secret, claimsFor("alice", time.Time{})), ReasonNoExpiry},
	}...)
	for _, tc := range cases {
		claims, err := tc.v.Verify(tc.token)
		if tc.want == (Reason{}) {
			if err != nil {
				t.Errorf("%s: refused: %v", tc.name, err)
			} else if claims.Subject != "alice" {
				t.Errorf("%s: sub %q", tc.name, claims.Subject)
			}
			continue
		}
		var r *Refusal
		if !errors.As(err, &r) || r.Reason != tc.want {
			t.Errorf("%s: %v, want %s", tc.name, err, tc.want.Metric)
		}
	}
}

func mustEC(t *testing.T) *ecdsa.PrivateKey {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func TestNewVerifierRefusesWeakKeys(t *testing.T) {
	t.Parallel()
	small, _ := rsa.GenerateKey(rand.Reader, 1024)
	p384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	for name, cfg := range map[string]Config{
		"short secret": {HMACSecret: []byte("short")},
		"no key":       {},
		"both":         {HMACSecret: secret, PublicKeyPEM: pemOf(t, &p384.PublicKey)},
		"RSA 1024":     {PublicKeyPEM: pemOf(t, &small.PublicKey)},
		"P-384":        {PublicKeyPEM: pemOf(t, &p384.PublicKey)},
		"not PEM":      {PublicKeyPEM: []byte("hello")},
	} {
		if _, err := NewVerifier(cfg); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func TestSignAndRooms(t *testing.T) {
	t.Parallel()
	token, err := SignHS256(secret, "alice", []string{"team-*", "lobby"}, time.Hour, now)
	if err != nil {
		t.Fatal(err)
	}
	v, _ := NewVerifier(Config{HMACSecret: secret, Now: clock})
	claims, err := v.Verify(token)
	if err != nil {
		t.Fatal(err)
	}
	for room, want := range map[string]bool{"team-a": true, "team-": true, "lobby": true, "general": false, "lobby2": false, "xteam-a": false} {
		if got := claims.MayJoin(room); got != want {
			t.Errorf("MayJoin(%q) = %v", room, got)
		}
	}
	if !claims.Expiry().Equal(now.Add(time.Hour)) {
		t.Fatalf("exp %v", claims.Expiry())
	}
	anyRoom, _ := SignHS256(secret, "bob", nil, time.Hour, now)
	if c, err := v.Verify(anyRoom); err != nil || !c.MayJoin("anything") {
		t.Fatalf("a token without rooms: %v", err)
	}
	for _, bad := range []struct {
		sub   string
		rooms []string
		ttl   time.Duration
	}{{"", nil, time.Hour}, {"alice", nil, 0}, {"alice", []string{"["}, time.Hour}} {
		if _, err := SignHS256(secret, bad.sub, bad.rooms, bad.ttl, now); err == nil {
			t.Errorf("SignHS256(%q, %v, %v) accepted", bad.sub, bad.rooms, bad.ttl)
		}
	}
}

func TestTokenFromRequest(t *testing.T) {
	t.Parallel()
	cases := []struct {
		query, header, want string
		bad                 bool
	}{
		{"q", "", "q", false},
		{"", "Bearer h", "h", false},
		{"", "bearer   h  ", "h", false},
		{"same", "Bearer same", "same", false},
		{"", "", "", false},
		{"q", "Bearer other", "", true},
		{"", "Basic dXNlcjpwYXNz", "", true},
		{"", "Bearer", "", true},
	}
	for _, tc := range cases {
		got, err := TokenFromRequest(tc.query, tc.header)
		if (err != nil) != tc.bad || got != tc.want {
			t.Errorf("TokenFromRequest(%q, %q) = %q, %v", tc.query, tc.header, got, err)
		}
	}
}

func FuzzTokenFromRequest(f *testing.F) {
	f.Add("", "Bearer abc.def.ghi")
	f.Add("abc", "")
	f.Add("a", "bearer a")
	f.Fuzz(func(t *testing.T, query, header string) {
		token, err := TokenFromRequest(query, header)
		if err == nil && token != query && query != "" {
			t.Fatalf("query token %q became %q", query, token)
		}
	})
}

// FuzzVerify feeds the verifier arbitrary tokens: it never panics and never accepts one that
// was not signed with the key.
func FuzzVerify(f *testing.F) {
	good, _ := SignHS256(secret, "alice", []string{"team-*"}, time.Hour, now)
	f.Add(good)
	f.Add("eyJhbGciOiJub25lIn0.eyJzdWIiOiJhIn0.")
	f.Add("a.b.c")
	v, _ := NewVerifier(Config{HMACSecret: secret, Now: clock})
	f.Fuzz(func(t *testing.T, token string) {
		claims, err := v.Verify(token)
		if err == nil && token != good {
			// A different string may still carry the same signed content (base64 padding
			// variants); it must then decode to the same claims.
			if claims.Subject != "alice" {
				t.Fatalf("accepted a forged token: %q", token)
			}
		}
	})
}
