package cimd

import (
	"crypto/x509"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
)

// docServer is an https document server that answers each path as the
// test configured it and counts requests per path.
type docServer struct {
	*httptest.Server
	mu    sync.Mutex
	pages map[string]page
	hits  map[string]int
}

type page struct {
	status  int
	header  http.Header
	body    []byte
	handler http.HandlerFunc // overrides the rest when set
}

func newDocServer(t *testing.T) *docServer {
	t.Helper()
	s := &docServer{pages: map[string]page{}, hits: map[string]int{}}
	s.Server = httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		p, ok := s.pages[r.URL.Path]
		s.hits[r.URL.Path]++
		s.mu.Unlock()
		if !ok {
			http.NotFound(w, r)
			return
		}
		if p.handler != nil {
			p.handler(w, r)
			return
		}
		for k, v := range p.header {
			w.Header()[k] = v
		}
		if p.status == 0 {
			p.status = http.StatusOK
		}
		w.WriteHeader(p.status)
		_, _ = w.Write(p.body)
	}))
	t.Cleanup(s.Close)
	return s
}

// roots is the pool that trusts the server's test certificate.
func (s *docServer) roots() *x509.CertPool {
	return s.Client().Transport.(*http.Transport).TLSClientConfig.RootCAs
}

func (s *docServer) set(path string, p page) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.pages[path] = p
}

// setDoc serves doc as JSON with the given Cache-Control.
func (s *docServer) setDoc(t *testing.T, path string, doc map[string]any, cacheControl string) {
	t.Helper()
	b, err := json.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	h := http.Header{"Content-Type": {"application/json"}}
	if cacheControl != "" {
		h.Set("Cache-Control", cacheControl)
	}
	s.set(path, page{header: h, body: b})
}

func (s *docServer) hitsOf(path string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.hits[path]
}

func (s *docServer) totalHits() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, h := range s.hits {
		n += h
	}
	return n
}

// validDoc is a valid document for id.
func validDoc(id string) map[string]any {
	return map[string]any{
		"client_id":                  id,
		"client_name":                "Example MCP Client",
		"redirect_uris":              []string{"http://127.0.0.1/callback", "https://app.example.com/oauth/callback"},
		"grant_types":                []string{"authorization_code", "refresh_token"},
		"response_types":             []string{"code"},
		"token_endpoint_auth_method": "none",
	}
}
