package clientauth

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/authd/authd/internal/oauth"
)

func TestSecretMemo(t *testing.T) {
	a := &Authenticator{}
	// The cheapest bcrypt cost keeps the test fast; the memo does not
	// care about the cost.
	bcryptHash := func(secret string) string {
		h, err := bcrypt.GenerateFromPassword([]byte(secret), bcrypt.MinCost)
		if err != nil {
			t.Fatal(err)
		}
		return string(h)
	}
	hash := bcryptHash("chosen secret")
	if a.verifySecret("c1", hash, "wrong") {
		t.Fatal("wrong secret accepted")
	}
	if len(a.verified.m) != 0 {
		t.Fatal("a failed check was remembered")
	}
	if !a.verifySecret("c1", hash, "chosen secret") {
		t.Fatal("right secret rejected")
	}
	// Once the secret is known, the memo decides alone, also for a secret
	// bcrypt would accept (it ignores bytes past the 72nd).
	long := bcryptHash(strings.Repeat("x", 72))
	if !a.verifySecret("c9", long, strings.Repeat("x", 72)) || a.verifySecret("c9", long, strings.Repeat("x", 73)) {
		t.Fatal("the memo does not decide alone")
	}
	a.verified.m = nil
	for i := range 2 { // the second time from the memo
		if !a.verifySecret("c1", hash, "chosen secret") {
			t.Fatalf("right secret rejected (attempt %d)", i+1)
		}
	}
	if len(a.verified.m) != 1 {
		t.Fatalf("memo holds %d entries, want 1", len(a.verified.m))
	}
	// A remembered success helps neither another secret, nor another
	// client with the same hash, nor the client once its hash changed.
	if a.verifySecret("c1", hash, "chosen secreT") {
		t.Fatal("wrong secret accepted after a success")
	}
	if a.verifySecret("c2", hash, "chosen secret") != true {
		t.Fatal("another client with the same hash: its own bcrypt check must pass")
	}
	newHash := bcryptHash("new secret")
	if a.verifySecret("c1", newHash, "chosen secret") {
		t.Fatal("old secret accepted after the hash changed")
	}
	// Generated (SHA-256) secrets bypass the memo.
	gen := oauth.NewToken(oauth.PrefixClientSecret)
	before := len(a.verified.m)
	if !a.verifySecret("c3", oauth.HashSecret(gen), gen) || len(a.verified.m) != before {
		t.Fatal("SHA-256 secret: wrong result or remembered")
	}
	if a.verifySecret("unknown", "", gen) {
		t.Fatal("unknown client accepted")
	}
}

func TestSecretMemoBounded(t *testing.T) {
	var m secretMemo
	mac := m.mac("s")
	for i := range maxMemoSecrets + 5 {
		m.put(fmt.Sprint(i), mac, false)
		if len(m.m) > maxMemoSecrets {
			t.Fatalf("memo holds %d entries, bound is %d", len(m.m), maxMemoSecrets)
		}
	}
}

// TestPinnedSecretNeedsNoBcrypt: a configured secret pinned at start-up
// is checked with one HMAC, right or wrong, so a wrong guess costs no
// bcrypt (and takes no longer than a guess at an unknown id).
func TestPinnedSecretNeedsNoBcrypt(t *testing.T) {
	a := &Authenticator{}
	// The cheapest cost keeps the test fast; a wrong guess at a pinned
	// client must still cost far less than that bcrypt comparison.
	hash, err := bcrypt.GenerateFromPassword([]byte("operator chosen secret"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	if a.Pin("rs", string(hash), "not the secret") {
		t.Fatal("a wrong secret was pinned")
	}
	if !a.Pin("rs", string(hash), "operator chosen secret") {
		t.Fatal("the right secret was not pinned")
	}
	var direct []time.Duration
	for range 5 {
		start := time.Now()
		_ = bcrypt.CompareHashAndPassword(hash, []byte("a guess"))
		direct = append(direct, time.Since(start))
	}
	slices.Sort(direct)
	bcryptCost := direct[len(direct)/2]
	var wrong []time.Duration
	for i := range 9 {
		start := time.Now()
		if a.verifySecret("rs", string(hash), fmt.Sprint("guess ", i)) {
			t.Fatal("wrong secret accepted")
		}
		wrong = append(wrong, time.Since(start))
	}
	if !a.verifySecret("rs", string(hash), "operator chosen secret") {
		t.Fatal("pinned secret rejected")
	}
	slices.Sort(wrong)
	if median := wrong[len(wrong)/2]; median > bcryptCost/10 {
		t.Fatalf("a wrong guess at a pinned client takes %v, a bcrypt comparison %v: it still runs bcrypt", median, bcryptCost)
	}
	if a.verifySecret("other", string(hash), "operator chosen secret") != true {
		t.Fatal("the pin leaks to another client id")
	}
}
