package clientauth

import (
	"fmt"
	"testing"

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
		m.put(fmt.Sprint(i), mac)
		if len(m.m) > maxMemoSecrets {
			t.Fatalf("memo holds %d entries, bound is %d", len(m.m), maxMemoSecrets)
		}
	}
}
