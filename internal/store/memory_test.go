package store_test

import (
	"testing"

	"github.com/authd/authd/internal/store"
	"github.com/authd/authd/internal/store/storetest"
)

func TestMemoryConformance(t *testing.T) {
	t.Parallel()
	storetest.Run(t, func(*testing.T) store.Store { return store.NewMemory() })
}
