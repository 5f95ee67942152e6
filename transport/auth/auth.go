// Package auth checks the signed tokens (JWTs) that clients present when authentication is
// on: who the user is (sub), which rooms they may join (rooms), and until when (exp). It also
// signs HS256 tokens, for the `shardchat token` command.
package auth

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"path"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/shardchat/shardchat/transport/wire"
)

// Claims are the claims shardchat reads from a token.
type Claims struct {
	// Rooms lists the rooms the user may join: names, or patterns with * (path.Match syntax).
	// Absent: any room.
	Rooms []string `json:"rooms,omitempty"`
	jwt.RegisteredClaims
}

// MayJoin reports whether the claims allow joining room.
func (c *Claims) MayJoin(room string) bool {
	if c.Rooms == nil {
		return true
	}
	for _, p := range c.Rooms {
		if ok, _ := path.Match(p, room); ok {
			return true
		}
	}
	return false
}

// Expiry is when the token stops being valid.
func (c *Claims) Expiry() time.Time { return c.ExpiresAt.Time }

// Config configures a Verifier. Exactly one of HMACSecret and PublicKeyPEM must be set.
type Config struct {
	// HMACSecret verifies HS256 tokens.
	HMACSecret []byte
	// PublicKeyPEM verifies RS256 (an RSA key) or ES256 (an ECDSA P-256 key) tokens.
	PublicKeyPEM []byte
	// Leeway is the clock skew allowed on exp and nbf. Default 30s.
	Leeway time.Duration
	// Audience, when set, must be among the token's aud: a key shared by several services
	// then cannot open this one with tokens minted for another.
	Audience string
	// Issuer, when set, must be the token's iss.
	Issuer string
	// Now is the clock. Default time.Now.
	Now func() time.Time
}

// Verifier checks tokens against one key, with its algorithm pinned: a token signed with any
// other algorithm, "none" included, is refused. It is safe for concurrent use.
type Verifier struct {
	parser *jwt.Parser
	key    any
	alg    string
	leeway time.Duration
	// Whether aud and iss are required (configured): a missing one is named only then.
	needAudience, needIssuer bool
}

// NewVerifier returns a verifier for cfg's key.
func NewVerifier(cfg Config) (*Verifier, error) {
	if cfg.Leeway <= 0 {
		cfg.Leeway = 30 * time.Second
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	v := &Verifier{leeway: cfg.Leeway, needAudience: cfg.Audience != "", needIssuer: cfg.Issuer != ""}
	switch {
	case len(cfg.HMACSecret) > 0 && len(cfg.PublicKeyPEM) > 0:
		return nil, errors.New("give an HMAC secret or a public key, not both")
	case len(cfg.HMACSecret) > 0:
		if len(cfg.HMACSecret) < 32 {
			return nil, fmt.Errorf("the HMAC secret has %d bytes; use at least 32 random bytes", len(cfg.HMACSecret))
		}
		v.key, v.alg = cfg.HMACSecret, jwt.SigningMethodHS256.Alg()
	case len(cfg.PublicKeyPEM) > 0:
		key, alg, err := parsePublicKey(cfg.PublicKeyPEM)
		if err != nil {
			return nil, err
		}
		v.key, v.alg = key, alg
	default:
		return nil, errors.New("no key: give an HMAC secret or a public key")
	}
	opts := []jwt.ParserOption{
		jwt.WithValidMethods([]string{v.alg}),
		jwt.WithExpirationRequired(),
		jwt.WithLeeway(cfg.Leeway),
		jwt.WithTimeFunc(cfg.Now),
	}
	if cfg.Audience != "" {
		opts = append(opts, jwt.WithAudience(cfg.Audience))
	}
	if cfg.Issuer != "" {
		opts = append(opts, jwt.WithIssuer(cfg.Issuer))
	}
	v.parser = jwt.NewParser(opts...)
	return v, nil
}

// Deadline is when a session of claims must end: their exp, plus the clock skew allowed
// (a token accepted within the leeway is not cut at once).
func (v *Verifier) Deadline(c *Claims) time.Time { return c.Expiry().Add(v.leeway) }

// Algorithm is the one algorithm the verifier accepts.
func (v *Verifier) Algorithm() string { return v.alg }

func parsePublicKey(pemBytes []byte) (any, string, error) {
	block, _ := pem.Decode(pemBytes)
	if block == nil {
		return nil, "", errors.New("the public key file holds no PEM block")
	}
	key, err := x509.ParsePKIXPublicKey(block.Bytes)
	if err != nil {
		if rsaKey, rerr := x509.ParsePKCS1PublicKey(block.Bytes); rerr == nil {
			return rsaKey, jwt.SigningMethodRS256.Alg(), nil
		}
		return nil, "", fmt.Errorf("parse the public key: %w", err)
	}
	switch k := key.(type) {
	case *rsa.PublicKey:
		if k.N.BitLen() < 2048 {
			return nil, "", fmt.Errorf("the RSA key has %d bits; use at least 2048", k.N.BitLen())
		}
		return k, jwt.SigningMethodRS256.Alg(), nil
	case *ecdsa.PublicKey:
		if k.Curve != elliptic.P256() {
			return nil, "", errors.New("the ECDSA key must be on P-256 (ES256)")
		}
		return k, jwt.SigningMethodES256.Alg(), nil
	}
	return nil, "", fmt.Errorf("a public key of type %T is not supported; use RSA (RS256) or ECDSA P-256 (ES256)", key)
}

// Reason is why a token was refused: a short, bounded word for metrics, and a sentence for
// the client.
type Reason struct {
	Metric  string
	Message string
}

// Refusal is a token that was refused.
type Refusal struct {
	Reason
	Err error
}

// Error returns the reason's sentence, which is what the client is told.
func (r *Refusal) Error() string { return r.Message }

// Unwrap returns the error of the token library, when there was one.
func (r *Refusal) Unwrap() error { return r.Err }

// The reasons a token is refused.
var (
	ReasonMissing     = Reason{"token_missing", "a token is required: pass ?token= or an Authorization: Bearer header"}
	ReasonMalformed   = Reason{"token_malformed", "the token is not a well-formed JWT"}
	ReasonAlgorithm   = Reason{"token_algorithm", "the token is not signed with the algorithm this server accepts"}
	ReasonSignature   = Reason{"token_signature", "the token's signature is not valid"}
	ReasonExpired     = Reason{"token_expired", "the token has expired"}
	ReasonNotYetValid = Reason{"token_not_yet_valid", "the token is not valid yet"}
	ReasonNoExpiry    = Reason{"token_no_exp", "the token has no exp claim; tokens must expire"}
	ReasonSubject     = Reason{"token_subject", "the token's sub is not a valid user name"}
	ReasonAudience    = Reason{"token_audience", "the token is not for this server: its aud does not name it"}
	ReasonIssuer      = Reason{"token_issuer", "the token's iss is not the issuer this server trusts"}
	ReasonClaims      = Reason{"token_claims", "the token's claims are not valid"}
)

// Reasons lists every reason, for pre-creating metric series.
func Reasons() []Reason {
	return []Reason{ReasonMissing, ReasonMalformed, ReasonAlgorithm, ReasonSignature, ReasonExpired, ReasonNotYetValid, ReasonNoExpiry, ReasonSubject, ReasonAudience, ReasonIssuer, ReasonClaims}
}

// Verify checks a token and returns its claims, with Subject normalized as a user name, or a
// *Refusal saying why not.
func (v *Verifier) Verify(token string) (*Claims, error) {
	if token == "" {
		return nil, &Refusal{Reason: ReasonMissing}
	}
	var claims Claims
	_, err := v.parser.ParseWithClaims(token, &claims, func(t *jwt.Token) (any, error) { return v.key, nil })
	if err != nil {
		return nil, &Refusal{Reason: v.reasonOf(err, &claims), Err: err}
	}
	user, ok := wire.NormalizeUser(claims.Subject)
	if !ok {
		return nil, &Refusal{Reason: ReasonSubject}
	}
	claims.Subject = user
	return &claims, nil
}

func (v *Verifier) reasonOf(err error, claims *Claims) Reason {
	switch {
	case errors.Is(err, jwt.ErrTokenMalformed):
		return ReasonMalformed
	case errors.Is(err, jwt.ErrTokenSignatureInvalid):
		if strings.Contains(err.Error(), "signing method") {
			return ReasonAlgorithm
		}
		return ReasonSignature
	case errors.Is(err, jwt.ErrTokenUnverifiable):
		return ReasonAlgorithm
	case errors.Is(err, jwt.ErrTokenExpired):
		return ReasonExpired
	case errors.Is(err, jwt.ErrTokenNotValidYet), errors.Is(err, jwt.ErrTokenUsedBeforeIssued):
		return ReasonNotYetValid
	case errors.Is(err, jwt.ErrTokenInvalidAudience):
		return ReasonAudience
	case errors.Is(err, jwt.ErrTokenInvalidIssuer):
		return ReasonIssuer
	case errors.Is(err, jwt.ErrTokenRequiredClaimMissing):
		// The library names the claim only in its message; the claims themselves say which
		// is missing (the parser fills them before it validates).
		switch {
		case claims.ExpiresAt == nil:
			return ReasonNoExpiry
		case v.needAudience && len(claims.Audience) == 0:
			return ReasonAudience
		case v.needIssuer && claims.Issuer == "":
			return ReasonIssuer
		}
	}
	return ReasonClaims
}

// SignHS256 makes an HS256 token for sub, allowed into rooms (nil: any), valid for ttl from now.
func SignHS256(secret []byte, sub string, rooms []string, ttl time.Duration, now time.Time) (string, error) {
	return SignHS256Token(secret, Token{Sub: sub, Rooms: rooms, TTL: ttl}, now)
}

// Token is what SignHS256Token puts in a token.
type Token struct {
	Sub      string        // the user name
	Rooms    []string      // the rooms the user may join, names or patterns; nil: any
	TTL      time.Duration // how long the token is valid
	Audience string        // aud, when the servers check it
	Issuer   string        // iss, when the servers check it
}

// SignHS256Token makes an HS256 token of tok, valid from now.
func SignHS256Token(secret []byte, tok Token, now time.Time) (string, error) {
	sub, rooms, ttl := tok.Sub, tok.Rooms, tok.TTL
	if _, ok := wire.NormalizeUser(sub); !ok {
		return "", fmt.Errorf("sub %q is not a valid user name (1 to %d characters, no control characters)", sub, wire.MaxUser)
	}
	if ttl <= 0 {
		return "", errors.New("the token's ttl must be above 0")
	}
	if len(secret) < 32 {
		return "", fmt.Errorf("the secret has %d bytes; use at least 32 random bytes", len(secret))
	}
	for _, p := range rooms {
		if _, err := path.Match(p, ""); err != nil {
			return "", fmt.Errorf("room pattern %q: %w", p, err)
		}
	}
	claims := Claims{Rooms: rooms, RegisteredClaims: jwt.RegisteredClaims{
		Issuer:    tok.Issuer,
		Subject:   sub,
		IssuedAt:  jwt.NewNumericDate(now),
		NotBefore: jwt.NewNumericDate(now),
		ExpiresAt: jwt.NewNumericDate(now.Add(ttl)),
	}}
	if tok.Audience != "" {
		claims.Audience = jwt.ClaimStrings{tok.Audience}
	}
	return jwt.NewWithClaims(jwt.SigningMethodHS256, claims).SignedString(secret)
}

// TokenFromRequest returns the token of a request: the token query parameter (browsers cannot
// set headers on a WebSocket) or an Authorization: Bearer header. Both at once must agree.
func TokenFromRequest(query, authorization string) (string, error) {
	bearer := ""
	if authorization != "" {
		scheme, rest, ok := strings.Cut(strings.TrimSpace(authorization), " ")
		if !ok || !strings.EqualFold(scheme, "Bearer") {
			return "", &Refusal{Reason: ReasonMalformed, Err: errors.New("the Authorization header is not Bearer")}
		}
		bearer = strings.TrimSpace(rest)
	}
	switch {
	case query != "" && bearer != "" && query != bearer:
		return "", &Refusal{Reason: ReasonMalformed, Err: errors.New("two different tokens")}
	case query != "":
		return query, nil
	}
	return bearer, nil
}
