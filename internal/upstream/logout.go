package upstream

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
)

// LogoutEvent is the member of a logout token's events claim that makes
// it one (OpenID Connect Back-Channel Logout 1.0 §2.4).
const LogoutEvent = "http://schemas.openid.net/event/backchannel-logout"

// Logout is a verified logout token: the provider says the user (Subject)
// or one of their sessions at the provider (SessionID) signed out.
type Logout struct {
	Subject   string // "" when the token names only a session
	SessionID string
	JTI       string
	Expiry    time.Time
}

// LogoutVerifier is a connector whose provider may send back-channel
// logout tokens (type oidc with oidc.backchannel_logout set).
type LogoutVerifier interface {
	Connector
	// BackChannelLogout is the configured action: sessions or grants.
	BackChannelLogout() string
	// VerifyLogoutToken validates a logout token per §2.6; a refusal is
	// an error whose text says why (for the provider's operator).
	VerifyLogoutToken(ctx context.Context, raw string) (Logout, error)
}

// Bounds on a logout token's times. The provider's clock may run ahead by
// logoutSkew; a token may live at most maxLogoutLifetime, which bounds how
// long its jti must be remembered to refuse a replay.
const (
	logoutSkew        = time.Minute
	maxLogoutLifetime = 24 * time.Hour
)

// BackChannelLogout implements LogoutVerifier ("" when off).
func (c *oidcConnector) BackChannelLogout() string {
	if c.cfg.Type != TypeOIDC || c.cfg.OIDC.BackChannelLogout == BackChannelLogoutOff {
		return ""
	}
	return c.cfg.OIDC.BackChannelLogout
}

// VerifyLogoutToken validates raw as OpenID Connect Back-Channel Logout
// 1.0 §2.6 asks: signature against the provider's JWKS, iss and aud (our
// client id) and exp with the verifier that checks ID tokens; iat not in
// the future; a jti; an events claim with the logout event; sub or sid;
// no nonce (an ID token is not a logout token, §4.1); and, when the token
// is explicitly typed, the type logout+jwt. Replays are the caller's to
// refuse, by jti.
func (c *oidcConnector) VerifyLogoutToken(ctx context.Context, raw string) (Logout, error) {
	if c.BackChannelLogout() == "" {
		return Logout{}, errors.New("back-channel logout is not enabled for this upstream")
	}
	if err := checkLogoutType(raw); err != nil {
		return Logout{}, err
	}
	d, err := c.discover(ctx)
	if err != nil {
		return Logout{}, err
	}
	tok, err := d.verifier.Verify(oidc.ClientContext(ctx, c.hc), raw)
	if err != nil {
		return Logout{}, fmt.Errorf("logout token: %w", err)
	}
	var claims struct {
		Sub    *string                    `json:"sub"`
		Sid    *string                    `json:"sid"`
		JTI    string                     `json:"jti"`
		IAT    *json.Number               `json:"iat"`
		Events map[string]json.RawMessage `json:"events"`
		Nonce  json.RawMessage            `json:"nonce"`
	}
	if err := tok.Claims(&claims); err != nil {
		return Logout{}, fmt.Errorf("logout token claims: %w", err)
	}
	now := c.now()
	switch ev, ok := claims.Events[LogoutEvent]; {
	case !ok:
		return Logout{}, fmt.Errorf("logout token: events has no %s member", LogoutEvent)
	case !strings.HasPrefix(strings.TrimSpace(string(ev)), "{"):
		return Logout{}, errors.New("logout token: the logout event's value is not a JSON object")
	case claims.Nonce != nil:
		return Logout{}, errors.New("logout token: carries a nonce (an ID token is not a logout token)")
	case claims.JTI == "":
		return Logout{}, errors.New("logout token: no jti")
	case len(claims.JTI) > 256:
		return Logout{}, errors.New("logout token: jti longer than 256 characters")
	case (claims.Sub == nil || *claims.Sub == "") && (claims.Sid == nil || *claims.Sid == ""):
		return Logout{}, errors.New("logout token: neither sub nor sid")
	case claims.IAT == nil || tok.IssuedAt.IsZero():
		return Logout{}, errors.New("logout token: no iat")
	case tok.IssuedAt.After(now.Add(logoutSkew)):
		return Logout{}, errors.New("logout token: issued in the future (iat)")
	case tok.Expiry.After(now.Add(maxLogoutLifetime)):
		return Logout{}, fmt.Errorf("logout token: expires more than %s from now", maxLogoutLifetime)
	}
	l := Logout{JTI: claims.JTI, Expiry: tok.Expiry}
	if claims.Sub != nil {
		l.Subject = *claims.Sub
	}
	if claims.Sid != nil {
		l.SessionID = *claims.Sid
	}
	return l, nil
}

// checkLogoutType refuses a token whose JOSE header types it as something
// else than a logout token (§2.4 recommends typ logout+jwt; untyped and
// plain JWT tokens remain acceptable).
func checkLogoutType(raw string) error {
	h, _, ok := strings.Cut(raw, ".")
	if !ok {
		return errors.New("logout token: not a JWT")
	}
	b, err := base64.RawURLEncoding.DecodeString(h)
	if err != nil {
		return errors.New("logout token: malformed header")
	}
	var hdr struct {
		Typ string `json:"typ"`
	}
	if err := json.Unmarshal(b, &hdr); err != nil {
		return errors.New("logout token: malformed header")
	}
	switch strings.ToLower(strings.TrimPrefix(strings.ToLower(hdr.Typ), "application/")) {
	case "", "jwt", "logout+jwt":
		return nil
	}
	return fmt.Errorf("logout token: typ %q is not logout+jwt", clip(hdr.Typ))
}
