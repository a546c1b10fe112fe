package storetest

import (
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/authd/authd/internal/store"
)

// At most one active key; activation retires the previous one in the same
// step; keys come back byte for byte, oldest first.
func testSigningKeys(t *testing.T, s store.Store) {
	ctx := t.Context()
	list := func() []store.SigningKey {
		t.Helper()
		keys, err := s.ListSigningKeys(ctx)
		must(t, err, "ListSigningKeys")
		return keys
	}
	if keys := list(); len(keys) != 0 {
		t.Fatalf("ListSigningKeys of an empty store: %s", show(keys))
	}

	k1 := newSigningKey(store.KeyActive, t0)
	must(t, s.CreateSigningKey(ctx, k1), "CreateSigningKey (active)")
	second := newSigningKey(store.KeyActive, t0.Add(time.Minute))
	wantErr(t, s.CreateSigningKey(ctx, second), store.ErrConflict, "CreateSigningKey of a second active key")
	k2 := newSigningKey(store.KeyNext, t0.Add(time.Hour))
	must(t, s.CreateSigningKey(ctx, k2), "CreateSigningKey (next)")
	dup := newSigningKey(store.KeyNext, t0)
	dup.ID = k1.ID
	wantErr(t, s.CreateSigningKey(ctx, dup), store.ErrConflict, "CreateSigningKey with a duplicate kid")

	keys := list()
	if len(keys) != 2 {
		t.Fatalf("ListSigningKeys: got %d keys, want 2: %s", len(keys), show(keys))
	}
	equal(t, "ListSigningKeys[0]", keys[0], k1)
	equal(t, "ListSigningKeys[1]", keys[1], k2)

	now, retireExpiry := t0.Add(day), t0.Add(2*day)
	must(t, s.ActivateSigningKey(ctx, k2.ID, now, retireExpiry), "ActivateSigningKey")
	wantK1 := k1
	wantK1.State = store.KeyRetired
	wantK1.RetiredAt = ptr(now)
	wantK1.ExpiresAt = ptr(retireExpiry)
	wantK2 := k2
	wantK2.State = store.KeyActive
	wantK2.ActivatedAt = ptr(now)
	keys = list()
	if len(keys) != 2 {
		t.Fatalf("ListSigningKeys after activation: %s", show(keys))
	}
	equal(t, "previous key after ActivateSigningKey", keys[0], wantK1)
	equal(t, "new key after ActivateSigningKey", keys[1], wantK2)

	// Racing replicas activating the same key: the second is a no-op.
	must(t, s.ActivateSigningKey(ctx, k2.ID, now.Add(time.Hour), retireExpiry.Add(time.Hour)), "ActivateSigningKey of the active key")
	keys = list()
	equal(t, "retired key after re-activating the active key", keys[0], wantK1)
	equal(t, "active key after re-activating it", keys[1], wantK2)

	wantErr(t, s.ActivateSigningKey(ctx, k1.ID, now, retireExpiry), store.ErrConflict, "ActivateSigningKey of a retired key")
	wantErr(t, s.ActivateSigningKey(ctx, "no-such-kid", now, retireExpiry), store.ErrNotFound, "ActivateSigningKey of an unknown kid")
	keys = list()
	equal(t, "retired key after the refused activations", keys[0], wantK1)
	equal(t, "active key after the refused activations", keys[1], wantK2)

	// Still exactly one active key: creating another active one conflicts.
	wantErr(t, s.CreateSigningKey(ctx, second), store.ErrConflict, "CreateSigningKey of a second active key after rotation")

	// Scribbling over what went in or came out changes nothing stored.
	checkCopies(t, "signing key", &k2, func() store.SigningKey { return list()[1] })
	checkCopies(t, "signing keys from ListSigningKeys", nil, list)
}

// Metadata documents are upserted by URL and returned byte for byte.
func testMetadataDocuments(t *testing.T, s store.Store) {
	ctx := t.Context()
	url := "https://app.example/" + uuid.NewString() + "/client.json"
	_, err := s.GetMetadataDocument(ctx, url)
	wantErr(t, err, store.ErrNotFound, "GetMetadataDocument before Put")

	d := store.MetadataDocument{
		URL:       url,
		Document:  []byte("{\n  \"client_id\": \"" + url + "\",  \"redirect_uris\": [\"https://app.example/cb\"]\n}"),
		ETag:      `W/"abc"`,
		FetchedAt: t0,
		ExpiresAt: t0.Add(time.Hour),
	}
	must(t, s.PutMetadataDocument(ctx, d), "PutMetadataDocument")
	got, err := s.GetMetadataDocument(ctx, url)
	must(t, err, "GetMetadataDocument")
	equal(t, "GetMetadataDocument", got, d)

	d2 := d
	d2.Document = []byte(`{"client_id":"` + url + `"}`)
	d2.ETag = ""
	d2.FetchedAt = t0.Add(2 * time.Hour)
	d2.ExpiresAt = t0.Add(3 * time.Hour)
	must(t, s.PutMetadataDocument(ctx, d2), "PutMetadataDocument (replace)")
	got, err = s.GetMetadataDocument(ctx, url)
	must(t, err, "GetMetadataDocument")
	equal(t, "GetMetadataDocument after replacing it", got, d2)

	other := d
	other.URL = "https://other.example/" + uuid.NewString() + "/client.json"
	must(t, s.PutMetadataDocument(ctx, other), "PutMetadataDocument (other URL)")
	got, err = s.GetMetadataDocument(ctx, url)
	must(t, err, "GetMetadataDocument")
	equal(t, "a document after another URL was stored", got, d2)
}
