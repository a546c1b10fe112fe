package upstream_test

import (
	"testing"
	"time"

	"github.com/authd/authd/internal/upstream"
	"github.com/authd/authd/internal/upstream/upstreamtest"
)

func intPtr(n int) *int { return &n }

// A forced login and max_age reach the provider (OpenID Connect Core
// §3.1.2.1): prompt=login, or select_account at Google, which has no
// prompt=login; max_age as sent. Without them, neither parameter is sent.
func TestOIDCForceLoginAndMaxAgeSent(t *testing.T) {
	for _, tc := range []struct{ typ, prompt string }{
		{upstream.TypeOIDC, "login"},
		{upstream.TypeGoogle, "select_account"},
	} {
		t.Run(tc.typ, func(t *testing.T) {
			op := upstreamtest.NewOIDC(t)
			op.AddUser(alice)
			conn := connect(t, op.Config("idp", tc.typ), op.Client())

			f := newFlow()
			f.forceLogin, f.maxAge = true, intPtr(300)
			if _, err := conn.HandleCallback(t.Context(), authorize(t, conn, op.Client(), f, ""), f.options("")); err != nil {
				t.Fatalf("HandleCallback: %v", err)
			}
			if _, err := login(t, conn, op.Client(), ""); err != nil {
				t.Fatalf("login without options: %v", err)
			}
			reqs := op.AuthorizeRequests()
			if q := reqs[0]; q.Get("prompt") != tc.prompt || q.Get("max_age") != "300" {
				t.Errorf("forced: prompt=%q max_age=%q, want %q and 300", q.Get("prompt"), q.Get("max_age"), tc.prompt)
			}
			if q := reqs[1]; q.Has("prompt") || q.Has("max_age") {
				t.Errorf("not forced: prompt=%q max_age=%q sent", q.Get("prompt"), q.Get("max_age"))
			}
		})
	}
}

// auth_time comes back in Identity; with max_age it must be there and
// recent enough (a minute of clock skew allowed), else the login fails.
func TestOIDCMaxAgeChecksAuthTime(t *testing.T) {
	now := time.Date(2031, 3, 4, 5, 6, 7, 0, time.UTC) // both clocks: exp is checked against it too
	op := upstreamtest.NewOIDC(t)
	op.Now = func() time.Time { return now }
	op.AddUser(alice)
	c := op.Config("corp", upstream.TypeOIDC)
	c.Now = op.Now
	conn := connect(t, c, op.Client())

	for _, tc := range []struct {
		name     string
		maxAge   *int
		authTime time.Time // zero: the fake's now
		omit     bool      // no auth_time in the ID token
		ok       bool
	}{
		{"fresh", intPtr(300), now.Add(-10 * time.Second), false, true},
		{"max_age=0, just signed in", intPtr(0), time.Time{}, false, true},
		{"within the skew", intPtr(300), now.Add(-300*time.Second - 59*time.Second), false, true},
		{"older than max_age", intPtr(300), now.Add(-300*time.Second - 61*time.Second), false, false},
		{"max_age=0, old session", intPtr(0), now.Add(-time.Hour), false, false},
		{"auth_time missing", intPtr(300), time.Time{}, true, false},
		{"no max_age, old session", nil, now.Add(-24 * time.Hour), false, true},
		{"no max_age, auth_time missing", nil, time.Time{}, true, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			op.SetAuthTime(tc.authTime)
			op.SetFaults(upstreamtest.Faults{NoAuthTime: tc.omit})
			f := newFlow()
			f.maxAge = tc.maxAge
			id, err := conn.HandleCallback(t.Context(), authorize(t, conn, op.Client(), f, ""), f.options(""))
			if !tc.ok {
				ue := wantError(t, id, err, upstream.CodeUpstreamError)
				if ue.Err == nil {
					t.Error("no cause for the log")
				}
				return
			}
			if err != nil {
				t.Fatalf("HandleCallback: %v", err)
			}
			want := tc.authTime
			switch {
			case tc.omit:
				want = time.Time{}
			case want.IsZero():
				want = now
			}
			if !id.AuthTime.Equal(want) {
				t.Errorf("AuthTime = %v, want %v", id.AuthTime, want)
			}
		})
	}
}

// GitHub's only prompt is the account chooser; it has no max_age and no
// auth_time.
func TestGitHubForceLoginSelectsAccount(t *testing.T) {
	gh := upstreamtest.NewGitHub(t)
	gh.AddUser(octocat)
	conn := connect(t, gh.Config("github"), gh.Client())

	f := newFlow()
	f.forceLogin, f.maxAge = true, intPtr(0)
	id, err := conn.HandleCallback(t.Context(), authorize(t, conn, gh.Client(), f, ""), f.options(""))
	if err != nil {
		t.Fatalf("HandleCallback: %v", err)
	}
	if !id.AuthTime.IsZero() {
		t.Errorf("AuthTime = %v, want zero (GitHub does not tell)", id.AuthTime)
	}
	if _, err := login(t, conn, gh.Client(), ""); err != nil {
		t.Fatal(err)
	}
	reqs := gh.AuthorizeRequests()
	if q := reqs[0]; q.Get("prompt") != "select_account" || q.Has("max_age") {
		t.Errorf("forced: prompt=%q max_age=%q, want select_account and none", q.Get("prompt"), q.Get("max_age"))
	}
	if q := reqs[1]; q.Has("prompt") {
		t.Errorf("not forced: prompt=%q sent", q.Get("prompt"))
	}
}
